"""Food scenarios: baking, recipe, pizza, fruit stand and candy."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import Draft, scenario


@scenario("baking")
def _baking(g: Draft, k: int) -> None:
    p = g.person()
    good = g.pick(["cookies", "muffins", "cupcakes", "brownies", "dinner rolls"])
    if k == 1 and g.chance(0.5):
        a, b = g.randint(12, 40), g.randint(8, 30)
        g.say(f"{p.name} bakes {a} {good} in the morning and {b} {good} in the afternoon.")
        total = g.calc(a, "+", b)
        g.line(f"{p.He} bakes {total} {good}.")
        g.ask(
            g.pick([f"How many {good} does {p.he} bake in all?", f"What is the total number of {good}?"]),
            total,
        )
        return
    trays, per = g.randint(2, 6), g.pick([6, 8, 9, 10, 12])
    g.say(f"{p.name} bakes {g.num(trays)} trays of {good} with {g.count(per, good)} on each tray.")
    total = g.calc(trays, "*", per)
    g.line(f"{p.He} bakes {total} {good}.")
    if k == 1:
        g.ask(f"How many {good} does {p.he} bake?", total)
    elif k == 2:
        gone = g.randint(3, total.value - 2)
        verb = g.pick(
            ["sells {n} of them", "gives {n} of them to the neighbors", "takes {n} of them to school"]
        )
        left = g.calc(total.value, "-", gone)
        g.line(f"{p.He} has {left} {good} left.")
        if g.chance(0.5):
            g.say(f"{p.He} {verb.format(n=gone)}.")
            g.ask(f"How many {good} does {p.he} have left?", left)
        else:
            g.ask(f"If {p.he} {verb.format(n=gone)}, how many {good} are left?", left)
    else:
        box = g.pick([4, 6])
        eaten = g.take_leaving_multiple(total.value, box)
        g.say(f"{p.His} family eats {eaten} of them, and {p.he} packs the rest into boxes of {g.num(box)}.")
        left = g.calc(total.value, "-", eaten)
        g.line(f"{left} {good} are left to pack.")
        boxes = g.calc(left.value, "/", box)
        g.line(f"{p.He} fills {boxes} boxes.")
        g.ask(f"How many boxes does {p.he} fill?", boxes)


@scenario("recipe")
def _recipe(g: Draft, k: int) -> None:
    p = g.person()
    if k == 1:
        c, b = g.randint(2, 5), g.randint(2, 9)
        food = g.pick(["loaf of bread", "cake", "batch of pancakes", "pie"])
        g.say(f"A recipe needs {g.num(c)} cups of flour for one {food}.")
        total = g.calc(c, "*", b)
        g.line(f"{p.name} needs {total} cups of flour.")
        plural = {"loaf of bread": "loaves of bread", "batch of pancakes": "batches of pancakes"}.get(
            food, food + "s"
        )
        g.ask(f"How many cups of flour does {p.name} need to make {g.num(b)} {plural}?", total)
        return
    food, what = g.pick([("pancakes", "eggs"), ("cookies", "cups of sugar"), ("waffles", "cups of milk")])
    e, s = g.randint(2, 4), g.pick([8, 10, 12, 15, 20])
    batches = g.randint(2, 6)
    g.say(f"A recipe uses {g.num(e)} {what} to make {s} {food}.")
    g.say(f"{p.name} wants to make {s * batches} {food} for a party.")
    nb = g.calc(s * batches, "/", s)
    g.line(f"{p.He} needs to make {nb} batches.")
    need = g.calc(nb.value, "*", e)
    g.line(f"{p.He} needs {need} {what}.")
    if k == 2:
        g.ask(f"How many {what} does {p.he} need?", need)
        return
    have = g.randint(2, need.value - 1)
    g.say(f"{p.He} already has {g.num(have)} {what}.")
    more = g.calc(need.value, "-", have)
    g.line(f"{p.He} must get {more} more {what}.")
    g.ask(f"How many more {what} does {p.he} need to buy?", more)


@scenario("pizza")
def _pizza(g: Draft, k: int) -> None:
    p = g.person()
    n, s = g.randint(2, 7), g.pick([6, 8, 10, 12])
    event = g.pick(["a birthday party", "a movie night", "the team dinner", "a sleepover"])
    g.say(f"{p.name} orders {g.num(n)} pizzas for {event}. Each pizza is cut into {g.num(s)} slices.")
    total = g.calc(n, "*", s)
    g.line(f"There are {total} slices.")
    if k == 1:
        g.ask(g.pick(["How many slices of pizza are there?", "What is the total number of slices?"]), total)
        return
    if k == 2:
        eaten = g.randint(3, total.value - 1)
        g.say(f"The guests eat {eaten} slices.")
        left = g.calc(total.value, "-", eaten)
        g.line(f"{left} slices are left.")
        g.ask("How many slices are left over?", left)
        return
    f = g.randint(3, 8)
    keep = g.take_leaving_multiple(total.value, f)
    g.say(f"{p.He} saves {keep} slices for later and shares the rest equally among {g.num(f)} friends.")
    rest = g.calc(total.value, "-", keep)
    g.line(f"{rest} slices are shared.")
    each = g.calc(rest.value, "/", f)
    g.line(f"Each friend gets {each} slices.")
    g.ask("How many slices does each friend get?", each)


@scenario("fruit_stand")
def _fruit_stand(g: Draft, k: int) -> None:
    fruit = g.pick(["apples", "oranges", "peaches", "mangoes", "lemons", "pears"])
    owner = g.person()
    if k == 3:
        c, e = g.randint(3, 9), g.pick([20, 24, 25, 30, 40])
        g.say(
            f"{owner.name}'s fruit stand starts the day with {g.num(c)} crates of {fruit}, {e} in each crate."
        )
        crates = g.calc(c, "*", e)
        g.line(f"The stand has {crates} {fruit}.")
        stock = crates.value
    else:
        stock = g.randint(40, 200)
        g.say(f"{owner.name}'s fruit stand has {stock} {fruit}.")
    b = g.randint(5, stock // 2)
    if k == 1:
        left = g.calc(stock, "-", b)
        g.line(f"{left} {fruit} are left.")
        g.ask(f"If {owner.he} sells {b} {fruit}, how many {fruit} are left?", left)
        return
    c2 = g.randint(5, stock - b - 1)
    g.say(f"{owner.He} sells {b} {fruit} in the morning and {c2} in the afternoon.")
    after = g.calc(stock, "-", b)
    g.line(f"After the morning, {after} {fruit} are left.")
    left = g.calc(after.value, "-", c2)
    g.line(f"After the afternoon, {left} {fruit} are left.")
    g.ask(f"How many {fruit} are left at the end of the day?", left)


@scenario("candy")
def _candy(g: Draft, k: int) -> None:
    p = g.person()
    a = g.randint(30, 120)
    g.say(f"{p.name} collected {a} pieces of candy on Halloween.")
    if k == 1:
        if g.chance(0.5):
            b = g.randint(10, 90)
            g.say(f"{p.His} brother collected {b} pieces.")
            both = g.calc(a, "+", b)
            g.line(f"Together they have {both} pieces.")
            g.ask("How many pieces of candy do they have together?", both)
        else:
            b = g.randint(5, a - 5)
            left = g.calc(a, "-", b)
            g.line(f"{p.He} has {left} pieces left.")
            g.ask(f"If {p.he} eats {b} pieces, how many pieces does {p.he} have left?", left)
        return
    if k == 2:
        e, s = g.randint(3, 20), g.randint(3, 20)
        g.say(f"{p.He} ate {e} pieces and gave {s} pieces to {p.his} little sister.")
        after = g.calc(a, "-", e)
        g.line(f"After eating some, {p.he} has {after} pieces.")
        left = g.calc(after.value, "-", s)
        g.line(f"After giving some away, {p.he} has {left} pieces.")
        g.ask(f"How many pieces of candy does {p.he} have now?", left)
        return
    b = g.randint(20, 100)
    per_day = g.randint(3, 8)
    total = a + b
    give = g.take_leaving_multiple(total, per_day)
    g.say(f"{p.His} brother collected {b} pieces, and they put all the candy in one bowl.")
    g.say(f"They give {give} pieces to a neighbor and then eat {g.num(per_day)} pieces a day.")
    both = g.calc(a, "+", b)
    g.line(f"Together they collected {both} pieces.")
    left = g.calc(both.value, "-", give)
    g.line(f"After giving some away, {left} pieces are left.")
    days = g.calc(left.value, "/", per_day)
    g.line(f"The candy lasts {days} days.")
    g.ask("How many days will the candy last?", days)
