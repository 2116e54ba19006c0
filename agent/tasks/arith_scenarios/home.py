"""Home, family and game scenarios: water tank, routine, ages, sharing, packing, party, marbles, sports."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import _WORDS, Draft, scenario


@scenario("water_tank")
def _water_tank(g: Draft, k: int) -> None:
    p = g.person()
    unit = g.pick(["liters", "gallons"])
    if k == 1:
        r = g.randint(5, 30)
        cap = r * g.randint(4, 40)
        g.say(f"A water tank holds {cap} {unit}. A hose fills it at {r} {unit} per minute.")
        t = g.calc(cap, "/", r)
        g.line(f"It takes {t} minutes.")
        g.ask("How many minutes does it take to fill the empty tank?", t)
        return
    a, r, m = g.randint(20, 300), g.randint(5, 25), g.randint(3, 20)
    g.say(f"A rain barrel in {p.name}'s yard has {a} {unit} of water in it.")
    g.say(f"{p.He} adds {r} {unit} per minute with a hose for {m} minutes.")
    added = g.calc(r, "*", m)
    g.line(f"{p.He} adds {added} {unit}.")
    now = g.calc(a, "+", added.value)
    g.line(f"The barrel then holds {now} {unit}.")
    if k == 2:
        g.ask(f"How many {unit} of water are in the barrel now?", now)
        return
    used = g.randint(10, now.value - 1)
    g.say(f"Later {p.he} uses {used} {unit} to water the garden.")
    left = g.calc(now.value, "-", used)
    g.line(f"{left} {unit} are left.")
    g.ask(f"How many {unit} are left in the barrel?", left)


_ACTIVITIES = ("practices the piano", "jogs", "reads", "plays chess online", "practices soccer drills")


@scenario("routine")
def _routine(g: Draft, k: int) -> None:
    p = g.person()
    act = g.pick((*_ACTIVITIES, f"walks {p.his} dog"))
    m = g.randint(10, 60, 5)
    if k == 1:
        g.say(f"{p.name} {act} for {m} minutes every day.")
        week = g.calc(m, "*", 7)
        g.line(f"In a week {p.he} spends {week} minutes.")
        g.ask(f"How many minutes does {p.he} spend in one week?", week)
        return
    g.say(f"{p.name} {act} for {m} minutes each day from Monday to Friday.")
    weekdays = g.calc(m, "*", 5)
    g.line(f"On weekdays {p.he} spends {weekdays} minutes.")
    if k == 2:
        s = g.randint(20, 90, 5)
        g.say(f"On Saturday {p.he} {act.split(' ')[0]} for {s} minutes, and on Sunday {p.he} rests.")
        total = g.calc(weekdays.value, "+", s)
        g.line(f"For the whole week that is {total} minutes.")
        g.ask(f"How many minutes does {p.he} spend in total that week?", total)
        return
    w = g.randint(20, 90, 5)
    g.say(f"On Saturday and on Sunday {p.he} {act.split(' ')[0]} for {w} minutes each day.")
    weekend = g.calc(w, "*", 2)
    g.line(f"On the weekend {p.he} spends {weekend} minutes.")
    total = g.calc(weekdays.value, "+", weekend.value)
    g.line(f"For the whole week that is {total} minutes.")
    g.ask(f"What is the total number of minutes {p.he} spends in a week?", total)


@scenario("ages")
def _ages(g: Draft, k: int) -> None:
    p = g.person()
    a = g.randint(6, 14)
    g.say(f"{p.name} is {a} years old.")
    if k == 1:
        rel, op, d = g.pick(
            [
                ("mother", "+", g.randint(22, 35)),
                ("cousin", "+", g.randint(2, 9)),
                ("sister", "-", g.randint(2, 5)),
            ]
        )
        word = "older" if op == "+" else "younger"
        g.say(f"{p.His} {rel} is {g.num(d)} years {word} than {p.him}.")
        age = g.calc(a, op, d)
        g.line(f"{p.His} {rel} is {age} years old.")
        g.ask(f"How old is {p.his} {rel}?", age)
        return
    if k == 2:
        b, c = g.randint(2, a - 2), g.randint(2, 10)
        g.say(f"{p.His} brother is {g.num(b)} years younger than {p.him}.")
        bro = g.calc(a, "-", b)
        g.line(f"{p.His} brother is {bro} years old.")
        later = g.calc(bro.value, "+", c)
        g.line(f"In {c} years he will be {later}.")
        g.ask(f"How old will {p.his} brother be in {g.num(c)} years?", later)
        return
    m, d = g.randint(3, 5), g.randint(20, 35)
    g.say(f"{p.His} father is {_WORDS[m]} times as old as {p.he} is.")
    g.say(f"{p.His} grandfather is {d} years older than {p.his} father.")
    dad = g.calc(a, "*", m)
    g.line(f"{p.His} father is {dad} years old.")
    grand = g.calc(dad.value, "+", d)
    g.line(f"{p.His} grandfather is {grand} years old.")
    gap = g.calc(grand.value, "-", a)
    g.line(f"The grandfather is {gap} years older than {p.name}.")
    g.ask(f"How many years older than {p.name} is {p.his} grandfather?", gap)


_SHARE_ITEMS = ("stickers", "crayons", "candies", "pencils", "grapes", "beads")


@scenario("sharing")
def _sharing(g: Draft, k: int) -> None:
    p = g.person()
    item = g.pick(_SHARE_ITEMS)
    f = g.randint(2, 8)
    if k == 1:
        n = f * g.randint(3, 15)
        g.say(f"{p.name} has {n} {item}. {p.He} shares them equally among {g.num(f)} friends.")
        each = g.calc(n, "/", f)
        g.line(f"Each friend gets {each} {item}.")
        g.ask(f"How many {item} does each friend get?", each)
        return
    if k == 2:
        n = g.randint(20, 120)
        g.say(f"{p.name} has {n} {item}.")
    else:
        packs, per = g.randint(2, 6), g.pick([6, 8, 10, 12, 15, 20])
        g.say(f"{p.name} buys {g.num(packs)} packs of {item} with {per} {item} in each pack.")
        bought = g.calc(packs, "*", per)
        g.line(f"{p.He} has {bought} {item}.")
        n = bought.value
    keep = g.take_leaving_multiple(n, f)
    g.say(f"{p.He} keeps {keep} for {p.him}self and shares the rest equally among {g.num(f)} friends.")
    rest = g.calc(n, "-", keep)
    g.line(f"{p.He} shares {rest} {item}.")
    each = g.calc(rest.value, "/", f)
    g.line(f"Each friend gets {each} {item}.")
    g.ask(f"How many {item} does each friend get?", each)


@scenario("packing")
def _packing(g: Draft, k: int) -> None:
    item, box = g.pick(
        [
            ("toy robots", "boxes"),
            ("jars of jam", "boxes"),
            ("cans of soup", "cases"),
            ("books", "cartons"),
            ("apples", "bags"),
        ]
    )
    if k == 1:
        if g.chance(0.5):
            b = g.pick([4, 6, 8, 10, 12, 20, 25])
            n = b * g.randint(5, 40)
            g.say(f"A factory makes {n} {item} in one day. It packs them in {box} of {b}.")
            full = g.calc(n, "/", b)
            g.line(f"It fills {full} {box}.")
            g.ask(f"How many {box} does it fill?", full)
        else:
            c, b = g.randint(3, 30), g.pick([6, 12, 24, 30])
            g.say(f"A store gets {c} {box} with {g.count(b, item)} in each.")
            total = g.calc(c, "*", b)
            g.line(f"The store gets {total} {item}.")
            g.ask(f"How many {item} does the store get?", total)
        return
    c, per = g.randint(3, 12), g.pick([12, 18, 20, 24, 30, 36, 40])
    g.say(f"A warehouse has {c} large crates with {per} {item} in each crate.")
    total = g.calc(c, "*", per)
    g.line(f"There are {total} {item}.")
    if k == 2:
        b = g.divisor(total.value, 3, 12)
        g.say(f"The {item} are repacked into small {box} of {g.num(b)}.")
        small = g.calc(total.value, "/", b)
        g.line(f"That makes {small} small {box}.")
        g.ask(f"How many small {box} are filled?", small)
        return
    b = g.pick([4, 5, 6, 8, 10])
    bad = (total.value % b or b) + b * g.randint(0 if total.value % b > 1 else 1, 2)
    g.say(f"During a check, {bad} of them are found damaged and thrown away.")
    g.say(f"The rest are packed into {box} of {g.num(b)}.")
    good = g.calc(total.value, "-", bad)
    g.line(f"{good} {item} are left to pack.")
    small = g.calc(good.value, "/", b)
    g.line(f"They fill {small} {box}.")
    g.ask(f"How many {box} are filled?", small)


@scenario("party")
def _party(g: Draft, k: int) -> None:
    p = g.person()
    packs, per = g.randint(2, 8), g.pick([10, 12, 15, 20, 25])
    g.say(
        f"For {p.his} party, {p.name} buys {g.num(packs)} packs of balloons with {per} balloons in each pack."
    )
    total = g.calc(packs, "*", per)
    g.line(f"{p.He} has {total} balloons.")
    if k == 1:
        g.ask(f"How many balloons does {p.he} buy?", total)
        return
    bunch = g.pick([3, 4, 5, 6])
    popped = g.take_leaving_multiple(total.value, bunch) if k == 3 else g.randint(2, total.value // 3)
    g.say(f"While {p.he} blows them up, {popped} balloons pop.")
    left = g.calc(total.value, "-", popped)
    g.line(f"{left} balloons are left.")
    if k == 2:
        g.ask("How many balloons are left?", left)
        return
    g.say(f"{p.He} ties the rest together in bunches of {g.num(bunch)}.")
    bunches = g.calc(left.value, "/", bunch)
    g.line(f"{p.He} makes {bunches} bunches.")
    g.ask(f"How many bunches can {p.he} make?", bunches)


@scenario("marbles")
def _marbles(g: Draft, k: int) -> None:
    p = g.person()
    a = g.randint(20, 90)
    lost, won = g.randint(3, a // 2), g.randint(3, 30)
    if k == 3 and (a - lost + won) % 2:
        won += 1  # so that half of the marbles is a whole number
    g.say(f"{p.name} has {a} marbles.")
    if k == 1:
        if g.chance(0.5):
            g.say(f"{p.He} loses {lost} marbles in a game at recess.")
            now = g.calc(a, "-", lost)
        else:
            g.say(f"{p.He} wins {won} marbles in a game at recess.")
            now = g.calc(a, "+", won)
        g.line(f"{p.He} now has {now} marbles.")
        g.ask(f"How many marbles does {p.he} have now?", now)
        return
    g.say(f"{p.He} loses {lost} marbles in the first game and wins {won} marbles in the second game.")
    after = g.calc(a, "-", lost)
    g.line(f"After the first game {p.he} has {after} marbles.")
    now = g.calc(after.value, "+", won)
    g.line(f"After the second game {p.he} has {now} marbles.")
    if k == 2:
        g.ask(f"How many marbles does {p.he} have after both games?", now)
        return
    g.say(f"Then {p.he} gives half of {p.his} marbles to {p.his} little brother.")
    half = g.calc(now.value, "/", 2)
    g.line(f"{p.He} gives away half and keeps {half} marbles.")
    g.ask(f"How many marbles does {p.he} have left?", half)


@scenario("sports")
def _sports(g: Draft, k: int) -> None:
    p = g.person()
    if k == 1:
        if g.chance(0.5):
            team = g.pick(["The Tigers", "The Eagles", "The Sharks", "The Rockets", "The school team"])
            a, b = g.randint(15, 60), g.randint(15, 60)
            g.say(f"{team} scored {a} points in the first half and {b} points in the second half.")
            total = g.calc(a, "+", b)
            g.line(f"They scored {total} points.")
            g.ask("How many points did they score in the whole game?", total)
        else:
            q = g.person()
            a, b = g.randint(10, 30), g.randint(2, 15)
            g.say(f"In a basketball game, {p.name} scored {a + b} points and {q.name} scored {a} points.")
            diff = g.calc(a + b, "-", a)
            g.line(f"{p.name} scored {diff} more points.")
            g.ask(f"How many more points did {p.name} score than {q.name}?", diff)
        return
    t = g.randint(2, 12)
    if k == 2:
        f = g.randint(2, 9)
        g.say(f"In a basketball game, {p.name} made {g.num(t)} two-point shots and {g.num(f)} free throws.")
        g.say("Each free throw is worth 1 point.")
        two = g.calc(t, "*", 2)
        g.line(f"The two-point shots are worth {two} points.")
        total = g.calc(two.value, "+", f)
        g.line(f"{p.He} scored {total} points.")
        g.ask(f"How many points did {p.name} score?", total)
        return
    h = g.randint(2, 8)
    g.say(f"In a basketball game, {p.name} made {g.num(t)} two-point shots and {g.num(h)} three-point shots.")
    two = g.calc(t, "*", 2)
    g.line(f"The two-point shots are worth {two} points.")
    three = g.calc(h, "*", 3)
    g.line(f"The three-point shots are worth {three} points.")
    total = g.calc(two.value, "+", three.value)
    g.line(f"{p.He} scored {total} points in all.")
    g.ask(f"How many points did {p.name} score in all?", total)
