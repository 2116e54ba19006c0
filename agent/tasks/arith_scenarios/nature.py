"""Plant and animal scenarios: garden, farm, aquarium and pet food."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import Draft, scenario

_CROPS = (
    ("tomato plants", "tomatoes"),
    ("pepper plants", "peppers"),
    ("strawberry plants", "strawberries"),
    ("cucumber plants", "cucumbers"),
)


@scenario("garden")
def _garden(g: Draft, k: int) -> None:
    p = g.person()
    plants, crop = g.pick(_CROPS)
    rows, per = g.randint(3, 9), g.randint(4, 12)
    g.say(
        f"{p.name} plants {g.num(rows)} rows of {plants} in {p.his} garden, "
        f"with {g.num(per)} plants in each row."
    )
    total = g.calc(rows, "*", per)
    g.line(f"{p.He} plants {total} {plants}.")
    if k == 1:
        g.ask(f"How many {plants} does {p.he} plant?", total)
        return
    dead = g.randint(2, total.value // 3)
    g.say(g.pick([f"Rabbits eat {dead} of the plants.", f"Sadly, {g.num(dead)} of the plants die."]))
    left = g.calc(total.value, "-", dead)
    g.line(f"{left} plants are left.")
    if k == 2:
        g.ask(f"How many {plants} are left?", left)
        return
    each = g.randint(2, 6)
    g.say(f"Each of the remaining plants gives {g.num(each)} {crop}.")
    picked = g.calc(left.value, "*", each)
    g.line(f"{p.He} picks {picked} {crop}.")
    g.ask(f"How many {crop} does {p.name} pick?", picked)


@scenario("farm")
def _farm(g: Draft, k: int) -> None:
    p = g.person()
    farmer = f"Farmer {p.name}"
    if k == 1:
        if g.chance(0.5):
            e, d = g.randint(10, 40), g.randint(3, 14)
            g.say(f"The hens on {farmer}'s farm lay {e} eggs every day.")
            total = g.calc(e, "*", d)
            g.line(f"They lay {total} eggs.")
            g.ask(f"How many eggs do they lay in {g.num(d)} days?", total)
        else:
            c = g.randint(5, 40)
            g.say(f"{farmer} has {c} chickens.")
            total = g.calc(c, "*", 2)
            g.line(f"Each chicken has 2 legs, so there are {total} legs.")
            g.ask("How many legs do the chickens have in all?", total)
        return
    if k == 2:
        if g.chance(0.5):
            c, b = g.randint(10, 60), g.randint(3, 20)
            s = g.randint(2, c + b - 1)
            g.say(f"{farmer} has {c} cows. {p.He} buys {b} more cows at the market and later sells {s} cows.")
            more = g.calc(c, "+", b)
            g.line(f"After buying, {p.he} has {more} cows.")
            left = g.calc(more.value, "-", s)
            g.line(f"After selling, {p.he} has {left} cows.")
            g.ask(f"How many cows does {farmer} have now?", left)
        else:
            e = g.pick([12, 18, 24, 30, 36])
            d = g.randint(2, 7) if e % 12 == 0 else 2 * g.randint(1, 3)
            g.say(f"{farmer} collects {e} eggs each day for {g.num(d)} days.")
            g.say(f"{p.He} puts them in cartons that hold a dozen eggs each.")
            total = g.calc(e, "*", d)
            g.line(f"{p.He} collects {total} eggs.")
            cartons = g.calc(total.value, "/", 12)
            g.line(f"{p.He} fills {cartons} cartons.")
            g.ask(f"How many cartons does {p.he} fill?", cartons)
        return
    c, gt = g.randint(5, 30), g.randint(3, 20)
    g.say(f"{farmer} has {c} chickens and {gt} goats.")
    cl = g.calc(c, "*", 2)
    g.line(f"The chickens have {cl} legs.")
    gl = g.calc(gt, "*", 4)
    g.line(f"The goats have {gl} legs.")
    total = g.calc(cl.value, "+", gl.value)
    g.line(f"All the animals have {total} legs.")
    g.ask("How many legs do all the animals have together?", total)


@scenario("aquarium")
def _aquarium(g: Draft, k: int) -> None:
    p = g.person()
    f = g.randint(4, 20)
    if k == 1:
        b = g.randint(2, 15)
        g.say(f"{p.name} has {f} goldfish in {p.his} aquarium. {p.He} buys {g.num(b)} more at the pet store.")
        total = g.calc(f, "+", b)
        g.line(f"{p.He} has {total} goldfish.")
        g.ask(f"How many goldfish does {p.he} have now?", total)
        return
    word, m = g.pick([("twice as many", 2), ("three times as many", 3), ("four times as many", 4)])
    g.say(f"{p.name} has {f} goldfish and {word} guppies.")
    gup = g.calc(f, "*", m)
    g.line(f"{p.He} has {gup} guppies.")
    total = g.calc(f, "+", gup.value)
    g.line(f"{p.He} has {total} fish in all.")
    if k == 2:
        g.ask(f"How many fish does {p.he} have in all?", total)
        return
    tanks = g.divisor(total.value, 2, 6)
    g.say(f"{p.He} puts the same number of fish into each of {g.num(tanks)} tanks.")
    each = g.calc(total.value, "/", tanks)
    g.line(f"Each tank gets {each} fish.")
    g.ask("How many fish go into each tank?", each)


@scenario("pet_food")
def _pet_food(g: Draft, k: int) -> None:
    p = g.person()
    pet = g.pick(["dog", "cat", "rabbit"])
    c = g.randint(2, 4)
    if k == 3:
        n, w = g.randint(2, 4), g.randint(2, 5)
        g.say(f"{p.name} has {g.num(n)} {pet}s. Each {pet} eats {g.num(c)} cups of food a day.")
        day = g.calc(n, "*", c)
        g.line(f"The {pet}s eat {day} cups a day.")
        days = g.calc(w, "*", 7)
        g.line(f"{g.num(w).capitalize()} weeks is {days} days.")
        total = g.calc(day.value, "*", days.value)
        g.line(f"They eat {total} cups of food.")
        g.ask(f"How many cups of food do the {pet}s eat in {g.num(w)} weeks?", total)
        return
    if k == 1:
        bag = c * g.randint(10, 40)
        g.say(f"A bag of {pet} food holds {bag} cups. {p.name}'s {pet} eats {g.num(c)} cups a day.")
        days = g.calc(bag, "/", c)
        g.line(f"The bag lasts {days} days.")
        g.ask("How many days will the bag last?", days)
        return
    n = g.randint(2, 4)
    bag = n * c * g.randint(5, 20)
    g.say(f"{p.name} has {g.num(n)} {pet}s, and each one eats {g.num(c)} cups of food a day.")
    g.say(f"A bag of food holds {bag} cups.")
    day = g.calc(n, "*", c)
    g.line(f"The {pet}s eat {day} cups a day.")
    days = g.calc(bag, "/", day.value)
    g.line(f"The bag lasts {days} days.")
    g.ask("How many days will one bag last?", days)
