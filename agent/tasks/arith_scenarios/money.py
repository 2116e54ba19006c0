"""Money scenarios: shopping, savings, earning, fundraising and tickets."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import Draft, Reject, scenario

_SHOP_ITEMS = (
    ("notebooks", 2, 6),
    ("pens", 1, 4),
    ("toy cars", 3, 9),
    ("comic books", 3, 8),
    ("pairs of socks", 2, 7),
    ("T-shirts", 8, 15),
    ("packs of gum", 1, 3),
    ("bags of chips", 2, 5),
    ("picture frames", 6, 14),
)
_SHOP_EXTRAS = (
    ("a backpack", 15, 40),
    ("a lunch box", 6, 15),
    ("a board game", 12, 30),
    ("a scarf", 8, 20),
    ("a water bottle", 5, 12),
)


@scenario("shopping")
def _shopping(g: Draft, k: int) -> None:
    p = g.person()
    item, lo, hi = g.pick(_SHOP_ITEMS)
    n, price = g.randint(2, 9), g.randint(lo, hi)
    store = g.pick(["At the mall", "At the store", "At a yard sale", "On Saturday"])
    wallet = k == 3 and g.chance(0.5)  # then the story opens with the money in the wallet
    who = p.he if wallet else p.name
    g.say(f"{store}, {who} {g.pick(['buys', 'picks out'])} {g.num(n)} {item} that cost ${price} each.")
    cost = g.calc(n, "*", price)
    g.line(f"The {item} cost {cost} dollars.")
    if k == 1:
        g.ask(g.pick([f"How much money does {p.he} spend?", f"How much does {p.name} pay?"]), cost)
        return
    extra, elo, ehi = g.pick(_SHOP_EXTRAS)
    e = g.randint(elo, ehi)
    g.say(f"{p.He} also buys {extra} for ${e}.")
    total = g.calc(cost.value, "+", e)
    g.line(f"Altogether {p.he} spends {total} dollars.")
    if k == 2:
        g.ask(g.pick([f"How much money did {p.he} spend in total?", "What is the total cost?"]), total)
        return
    if not wallet:
        bill = next((b for b in (20, 50, 100) if b > total.value), None)
        if bill is None:
            raise Reject("no bill large enough")
        g.say(f"{p.He} pays with a ${bill} bill.")
        left = g.calc(bill, "-", total.value)
        g.line(f"{p.His} change is {left} dollars.")
        g.ask(f"How much change does {p.he} get?", left)
    else:
        money = g.randint(total.value + 2, total.value + 60)
        g.body.insert(0, f"{p.name} has ${money} in {p.his} wallet.")
        left = g.calc(money, "-", total.value)
        g.line(f"{p.He} has {left} dollars left.")
        g.ask(f"How much money does {p.name} have left?", left)


@scenario("savings")
def _savings(g: Draft, k: int) -> None:
    p = g.person()
    thing = g.pick(["a bike", "a video game", "a guitar", "a pair of skates", "a telescope", "a tablet"])
    if k == 1:
        w, n = g.randint(3, 20), g.randint(3, 12)
        g.say(f"{p.name} saves ${w} every week.")
        total = g.calc(w, "*", n)
        g.line(f"In {n} weeks {p.he} saves {total} dollars.")
        g.ask(f"How much money will {p.he} have saved after {g.num(n)} weeks?", total)
        return
    s, w = g.randint(10, 80), g.randint(4, 25)
    g.say(f"{p.name} has ${s} in {p.his} piggy bank.")
    if k == 2 and g.chance(0.5):
        weeks = g.randint(3, 10)
        cost = s + w * weeks
        g.say(f"{p.He} wants to buy {thing} that costs ${cost}, and {p.he} saves ${w} each week.")
        need = g.calc(cost, "-", s)
        g.line(f"{p.He} still needs {need} dollars.")
        t = g.calc(need.value, "/", w)
        g.line(f"It takes {t} weeks to save that much.")
        g.ask(f"How many weeks will it take {p.him} to have enough money?", t)
        return
    n = g.randint(3, 10)
    g.say(f"{p.He} {g.pick(['adds', 'puts in'])} ${w} every week for {g.num(n)} weeks.")
    saved = g.calc(w, "*", n)
    g.line(f"{p.He} saves {saved} dollars in those weeks.")
    total = g.calc(s, "+", saved.value)
    g.line(f"{p.He} then has {total} dollars.")
    if k == 2:
        g.ask("How much money is in the piggy bank at the end?", total)
        return
    cost = g.randint(total.value + 5, total.value + 90)
    g.say(f"{p.He} wants to buy {thing} that costs ${cost}.")
    more = g.calc(cost, "-", total.value)
    g.line(f"{p.He} needs {more} more dollars.")
    g.ask(f"How much more money does {p.he} need?", more)


_JOBS = (  # (what they do, with {n}; how they are paid, with {w})
    ("babysits for {n} hours", "earns ${w} an hour babysitting"),
    ("mows {n} lawns", "earns ${w} for each lawn {he} mows"),
    ("washes {n} cars", "gets ${w} for every car {he} washes"),
    ("walks {n} dogs", "is paid ${w} for each dog {he} walks"),
    ("tutors for {n} hours", "charges ${w} an hour for tutoring"),
)


@scenario("earning")
def _earning(g: Draft, k: int) -> None:
    p = g.person()
    work, rate = g.pick(_JOBS)
    w = g.randint(5, 15)
    g.say(f"{p.name} {rate.format(w=w, he=p.he)}.")
    if k == 3:
        h1, h2 = g.randint(2, 6), g.randint(2, 6)
        g.say(
            f"On Saturday {p.he} {work.format(n=g.num(h1))}, and on Sunday {p.he} {work.format(n=g.num(h2))}."
        )
        both = g.calc(h1, "+", h2)
        g.line(f"Over the weekend {p.he} {work.format(n=both)}.")
        pay = g.calc(both.value, "*", w)
        g.line(f"{p.He} earns {pay} dollars.")
    else:
        n = g.randint(2, 9)
        g.say(f"This week {p.he} {work.format(n=g.num(n))}.")
        pay = g.calc(n, "*", w)
        g.line(f"{p.He} earns {pay} dollars.")
        if k == 1:
            g.ask(
                g.pick([f"How much money does {p.he} earn this week?", f"How much does {p.name} make?"]), pay
            )
            return
    spent = g.randint(3, pay.value - 1)
    buy = g.pick(["a book", "a movie ticket", "a gift for " + p.his + " mom", "new headphones"])
    g.say(f"{p.He} spends ${spent} on {buy}.")
    left = g.calc(pay.value, "-", spent)
    g.line(f"{p.He} has {left} dollars left.")
    g.ask(f"How much of the money does {p.he} have left?", left)


@scenario("fundraising")
def _fundraising(g: Draft, k: int) -> None:
    group = g.pick(["The school band", "The soccer team", "The fourth-grade class", "The art club"])
    if k == 1:
        n, price = g.randint(20, 150), g.randint(2, 10)
        g.say(f"{group} sells {n} raffle tickets for ${price} each.")
        total = g.calc(n, "*", price)
        g.line(f"The tickets bring in {total} dollars.")
        g.ask(g.pick(["How much money does the group raise?", "How much money do the tickets raise?"]), total)
        return
    c, pc = g.randint(12, 60), g.randint(1, 4)
    g.say(f"{group} has a bake sale and sells {c} cupcakes for ${pc} each.")
    cup = g.calc(c, "*", pc)
    g.line(f"The cupcakes raise {cup} dollars.")
    if k == 2:
        s = g.randint(5, cup.value - 1)
        g.say(f"The ingredients cost ${s}.")
        profit = g.calc(cup.value, "-", s)
        g.line(f"After paying for ingredients, {profit} dollars are left.")
        g.ask("How much money did they make after paying for the ingredients?", profit)
        return
    m, pm = g.randint(10, 50), g.randint(1, 3)
    g.say(f"They also sell {m} cookies for ${pm} each.")
    cook = g.calc(m, "*", pm)
    g.line(f"The cookies raise {cook} dollars.")
    total = g.calc(cup.value, "+", cook.value)
    g.line(f"In total they raise {total} dollars.")
    g.ask("What is the total amount of money raised at the bake sale?", total)


@scenario("tickets")
def _tickets(g: Draft, k: int) -> None:
    p = g.person()
    place = g.pick(["the zoo", "the movies", "the science museum", "the water park", "the county fair"])
    if k == 3:
        a, c = g.randint(9, 25), g.randint(4, 12)
        x, y = g.randint(2, 4), g.randint(2, 5)
        g.say(f"Tickets to {place} cost ${a} for adults and ${c} for children.")
        g.say(f"{p.name} buys tickets for {g.num(x)} adults and {g.num(y)} children.")
        adults = g.calc(x, "*", a)
        g.line(f"The adult tickets cost {adults} dollars.")
        kids = g.calc(y, "*", c)
        g.line(f"The children's tickets cost {kids} dollars.")
        total = g.calc(adults.value, "+", kids.value)
        g.line(f"All the tickets cost {total} dollars.")
        g.ask(f"How much does {p.name} pay for the tickets?", total)
        return
    n, price = g.randint(2, 8), g.randint(6, 20)
    g.say(f"{p.name} takes {p.his} friends to {place}. {p.He} buys {g.num(n)} tickets at ${price} each.")
    cost = g.calc(n, "*", price)
    g.line(f"The tickets cost {cost} dollars.")
    if k == 1:
        g.ask(f"How much money does {p.he} spend on tickets?", cost)
        return
    snack = g.randint(4, 15)
    g.say(f"{p.He} also spends ${snack} on {g.pick(['popcorn', 'snacks', 'drinks'])}.")
    total = g.calc(cost.value, "+", snack)
    g.line(f"{p.He} spends {total} dollars in total.")
    g.ask(f"How much money did {p.he} spend in total?", total)
