"""Getting-around scenarios: travel, road trip, bus, laps and parking."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import Draft, scenario


@scenario("travel")
def _travel(g: Draft, k: int) -> None:
    p = g.person()
    unit = g.pick(["miles", "kilometers"])
    if k == 1:
        if g.chance(0.5):
            s, h = g.randint(30, 80, 5), g.randint(2, 6)
            vehicle = g.pick(["A train", "A bus", "A truck", "A ferry"])
            g.say(f"{vehicle} travels at {s} {unit} per hour.")
            d = g.calc(s, "*", h)
            g.line(f"It travels {d} {unit}.")
            g.ask(f"How far does it travel in {g.num(h)} hours?", d)
        else:
            s, h = g.randint(8, 20), g.randint(2, 6)
            g.say(f"{p.name} rides {p.his} bike {s * h} {unit} at a steady {s} {unit} per hour.")
            t = g.calc(s * h, "/", s)
            g.line(f"The ride takes {t} hours.")
            g.ask("How many hours does the ride take?", t)
        return
    s1, h1 = g.randint(40, 70, 5), g.randint(2, 5)
    g.say(f"{p.name} drives for {g.num(h1)} hours at {s1} {unit} per hour.")
    d1 = g.calc(s1, "*", h1)
    g.line(f"First {p.he} drives {d1} {unit}.")
    if k == 2:
        extra = g.randint(10, 90)
        g.say(f"Then {p.he} drives another {extra} {unit} to reach {p.his} aunt's house.")
        total = g.calc(d1.value, "+", extra)
        g.line(f"In all {p.he} drives {total} {unit}.")
        g.ask(f"How many {unit} does {p.he} drive in all?", total)
        return
    s2, h2 = g.randint(20, 45, 5), g.randint(1, 3)
    g.say(f"After that, {p.he} drives {h2} more {'hour' if h2 == 1 else 'hours'} at {s2} {unit} per hour.")
    d2 = g.calc(s2, "*", h2)
    g.line(f"Then {p.he} drives {d2} {unit}.")
    total = g.calc(d1.value, "+", d2.value)
    g.line(f"The whole trip is {total} {unit}.")
    g.ask(f"How many {unit} does {p.he} drive altogether?", total)


@scenario("road_trip")
def _road_trip(g: Draft, k: int) -> None:
    p = g.person()
    a = g.randint(40, 250)
    if k == 1:
        b = g.randint(40, 250)
        g.say(
            f"{p.name}'s family drives {a} miles on the first day of a trip and {b} miles on the second day."
        )
        total = g.calc(a, "+", b)
        g.line(f"They drive {total} miles.")
        g.ask("How many miles do they drive in the two days?", total)
        return
    trip = 3 * a + g.randint(20, 300)  # the whole drive, asked about when k == 3
    if k == 3:
        g.say(f"The drive to the beach is {trip} miles. {p.name}'s family drives {a} miles on the first day.")
    else:
        g.say(f"On a road trip, {p.name}'s family drives {a} miles on the first day.")
    g.say("On the second day they drive twice as far.")
    day2 = g.calc(a, "*", 2)
    g.line(f"On the second day they drive {day2} miles.")
    both = g.calc(a, "+", day2.value)
    g.line(f"In two days they drive {both} miles.")
    if k == 2:
        g.ask("How many miles do they drive in the first two days?", both)
        return
    left = g.calc(trip, "-", both.value)
    g.line(f"They still have {left} miles to go.")
    g.ask("How many miles do they have left to drive?", left)


@scenario("bus")
def _bus(g: Draft, k: int) -> None:
    vehicle = g.pick(["bus", "train", "tram", "school bus"])
    a = g.randint(12, 60)
    g.say(f"A {vehicle} leaves the station with {a} passengers.")
    off = g.randint(2, a - 4)
    if k == 1:
        left = g.calc(a, "-", off)
        g.line(f"{left} passengers are still on the {vehicle}.")
        g.ask(
            f"If {off} people get off at the first stop, how many passengers are on the {vehicle} now?", left
        )
        return
    on = g.randint(2, 25)
    if k == 3 and (a - off + on) % 2:
        on += 1  # so that half of the passengers is a whole number
    g.say(f"At the first stop, {g.num(off)} people get off and {g.num(on)} people get on.")
    after = g.calc(a, "-", off)
    g.line(f"After people get off, {after} passengers are left.")
    now = g.calc(after.value, "+", on)
    g.line(f"After people get on, there are {now} passengers.")
    if k == 2:
        g.ask(f"How many passengers are on the {vehicle} after the first stop?", now)
        return
    g.say("At the second stop, half of the passengers get off.")
    half = g.calc(now.value, "/", 2)
    g.line(f"Half of them get off, so {half} passengers stay on.")
    g.ask(f"How many passengers are on the {vehicle} after the second stop?", half)


@scenario("laps")
def _laps(g: Draft, k: int) -> None:
    p = g.person()
    where, length = g.pick([("track", 400), ("track", 200), ("pool", 25), ("pool", 50)])
    verb, noun = ("runs", "meters") if where == "track" else ("swims", "meters")
    n = g.randint(2, 12) if length < 400 else g.randint(2, 6)
    g.say(f"The {where} at {p.name}'s school is {length} meters long.")
    if k == 3:
        n2 = g.randint(2, 12) if length < 400 else g.randint(2, 6)
        goal_extra = g.randint(1, 10) * length
        goal = (n + n2) * length + goal_extra
        g.say(f"{p.He} {verb} {g.num(n)} laps on Monday and {g.num(n2)} laps on Wednesday.")
        g.say(f"{p.His} goal for the week is {goal} {noun}.")
        laps = g.calc(n, "+", n2)
        g.line(f"{p.He} {verb} {laps} laps.")
        dist = g.calc(laps.value, "*", length)
        g.line(f"That is {dist} {noun}.")
        more = g.calc(goal, "-", dist.value)
        g.line(f"{p.He} still needs {more} {noun}.")
        g.ask(f"How many more {noun} does {p.he} need to reach {p.his} goal?", more)
        return
    g.say(f"{p.name} {verb} {g.num(n)} laps.")
    dist = g.calc(n, "*", length)
    g.line(f"{p.He} {verb} {dist} {noun}.")
    if k == 1:
        g.ask(f"How many {noun} does {p.he} {verb[:-1]} in all?", dist)
        return
    cool = g.randint(100, 800, 50) if where == "track" else g.randint(20, 200, 10)
    g.say(f"Then {p.he} walks {cool} meters to cool down.")
    total = g.calc(dist.value, "+", cool)
    g.line(f"Altogether {p.he} covers {total} meters.")
    g.ask(f"How many meters does {p.he} cover altogether?", total)


@scenario("parking")
def _parking(g: Draft, k: int) -> None:
    where = g.pick(["The parking lot at the mall", "A parking garage", "The lot behind the stadium"])
    r, s = g.randint(4, 15), g.randint(8, 25)
    g.say(f"{where} has {r} rows with {s} parking spaces in each row.")
    total = g.calc(r, "*", s)
    g.line(f"There are {total} spaces.")
    if k == 1:
        g.ask("How many parking spaces are there in total?", total)
        return
    c = g.randint(total.value // 3, total.value - 5)
    g.say(f"On Saturday morning {c} cars are parked there.")
    empty = g.calc(total.value, "-", c)
    g.line(f"{empty} spaces are empty.")
    if k == 2:
        g.ask("How many spaces are empty?", empty)
        return
    more = g.randint(2, empty.value - 1)
    g.say(f"At noon, {more} more cars arrive and park.")
    now = g.calc(empty.value, "-", more)
    g.line(f"Then {now} spaces are still empty.")
    g.ask("How many empty spaces are left at noon?", now)
