"""Scenario templates for the generated arithmetic word problems (``agent.tasks.arith``).

Each scenario is a small function ``(g, k)`` that writes one grade-school word problem needing
exactly ``k`` arithmetic steps (1 to 3) into a ``Draft``: the story sentences, the question, the
reference solution lines (each with one ``a op b = c``) and the integer answer. ``Draft`` owns the
random source, the vocabulary (names, number words) and the checks every step must pass (whole,
non-negative, moderate results); a scenario that draws numbers that do not fit raises ``Reject``
and the caller draws again.

Deliberately left out: fractions, decimals, percentages, units that need conversion tables and
multi-sentence reasoning traps. The numbers are kept small enough for a 135M model to add in its
head; the point is the language around them, which should read like GSM8K.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["MAX_VALUE", "NAMES", "SCENARIOS", "Draft", "Expr", "Person", "Reject"]

T = TypeVar("T")

MAX_VALUE = 5000
"""No intermediate result or answer exceeds this."""

_FEMALE = (
    "Emma Olivia Ava Sofia Mia Aisha Priya Mei Hana Yuki Keisha Zara Lucia Valentina Katya Fatima "
    "Amara Nia Leila Grace Chloe Rosa Ines Maya Ananya Elsa Ruby Layla Ana Ingrid Adaeze Jasmine "
    "Lena Julia Sara Tanya"
).split()
_MALE = (
    "Liam Noah Mateo Ethan Lucas Omar Arjun Wei Kenji Jamal Darius Diego Carlos Ivan Yusuf Kwame "
    "Chidi Ali Samuel Ben Tomas Jin Rohan Hugo Finn Marcus Tariq Pedro Nikolai Kofi Malik Hiro "
    "Oscar Leo Max David"
).split()
_SURNAMES = "Garcia Chen Okafor Patel Kim Novak Rossi Nguyen Haddad Silva Murphy Cohen Tanaka Mensah".split()
_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


@dataclass(frozen=True, slots=True)
class Person:
    """A named person and the pronouns that go with them."""

    name: str
    he: str

    @property
    def He(self) -> str:
        return self.he.capitalize()

    @property
    def his(self) -> str:
        return "her" if self.he == "she" else "his"

    @property
    def His(self) -> str:
        return self.his.capitalize()

    @property
    def him(self) -> str:
        return "her" if self.he == "she" else "him"


NAMES: tuple[Person, ...] = tuple(Person(n, "she") for n in _FEMALE) + tuple(Person(n, "he") for n in _MALE)


class Reject(Exception):
    """The numbers drawn do not make a valid problem (negative, inexact, too large); draw again."""


@dataclass(frozen=True, slots=True)
class Expr:
    """One arithmetic step ``a op b = value``; ``str()`` writes it the way solutions do."""

    a: int
    op: str
    b: int
    value: int

    def __str__(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.value}"


@dataclass
class Draft:
    """A problem being written: story, question, solution lines and answer."""

    rng: random.Random
    body: list[str] = field(default_factory=list)
    question: str = ""
    lines: list[str] = field(default_factory=list)
    answer: int | None = None
    people: list[Person] = field(default_factory=list)
    n_steps: int = 0

    # --- drawing -------------------------------------------------------------------------------
    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def randint(self, lo: int, hi: int, step: int = 1) -> int:
        """A whole number in [lo, hi] (a multiple of ``step`` when lo is)."""
        if hi < lo:
            raise Reject(f"empty range {lo}..{hi}")
        return self.rng.randrange(lo, hi + 1, step)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def person(self) -> Person:
        """A person not yet in this problem."""
        used = {p.name for p in self.people}
        p = self.pick([p for p in NAMES if p.name not in used])
        self.people.append(p)
        return p

    def teacher(self) -> str:
        return f"{self.pick(['Ms.', 'Mr.', 'Mrs.'])} {self.pick(_SURNAMES)}"

    def divisor(self, n: int, lo: int, hi: int) -> int:
        """A divisor of ``n`` in [lo, hi]."""
        options = [d for d in range(lo, hi + 1) if n % d == 0]
        if not options:
            raise Reject(f"no divisor of {n} in {lo}..{hi}")
        return self.pick(options)

    def take_leaving_multiple(self, total: int, d: int) -> int:
        """An amount (2 or more) to take from ``total`` that leaves a positive multiple of ``d``.

        What is left is about half of ``total`` or more.
        """
        q = self.randint(max(1, total // (2 * d)), (total - 2) // d)
        return total - q * d

    # --- writing -------------------------------------------------------------------------------
    def num(self, n: int) -> str:
        """``n`` in digits, or sometimes in words when it is small (as real problems write it)."""
        if 2 <= n <= 10 and self.chance(0.3):
            return _WORDS[n]
        return str(n)

    def count(self, n: int, noun: str) -> str:
        """``n noun``, sometimes "a dozen noun"."""
        if n == 12 and self.chance(0.5):
            return f"a dozen {noun}"
        return f"{self.num(n)} {noun}"

    def say(self, sentence: str) -> None:
        self.body.append(sentence)

    def calc(self, a: int, op: str, b: int) -> Expr:
        """Do one step; reject results that are negative, fractional, zero-divided or too large."""
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            value = a * b
        elif op == "/":
            if b == 0 or a % b:
                raise Reject(f"{a} / {b} is not whole")
            value = a // b
        else:
            raise ValueError(f"unknown operator {op!r}")
        if value < 2 or value > MAX_VALUE:  # 0 and 1 make awkward problems ("1 boxes")
            raise Reject(f"{a} {op} {b} = {value} is out of range")
        self.n_steps += 1
        return Expr(a, op, b, value)

    def line(self, text: str) -> None:
        self.lines.append(text)

    def ask(self, question: str, answer: Expr) -> None:
        self.question = question
        self.answer = answer.value


Scenario = Callable[[Draft, int], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return register


# --- money ---------------------------------------------------------------------------------------

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


# --- food ----------------------------------------------------------------------------------------


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


# --- school and books ----------------------------------------------------------------------------


@scenario("classroom")
def _classroom(g: Draft, k: int) -> None:
    t = g.teacher()
    if k == 1 and g.chance(0.5):
        size = g.pick([4, 5, 6])
        s = size * g.randint(4, 7)
        he = "he" if t.startswith("Mr.") else "she"
        g.say(f"{t} has {s} students in {'his' if he == 'he' else 'her'} class.")
        groups = g.calc(s, "/", size)
        g.line(f"There are {groups} groups.")
        g.ask(f"If {he} puts the students into groups of {g.num(size)}, how many groups are there?", groups)
        return
    if k == 3:
        girls, boys, c = g.randint(9, 16), g.randint(9, 16), g.randint(2, 5)
        g.say(f"A school has {g.num(c)} fourth-grade classes. Each class has {girls} girls and {boys} boys.")
        one = g.calc(girls, "+", boys)
        g.line(f"Each class has {one} students.")
        all_ = g.calc(one.value, "*", c)
        g.line(f"The fourth grade has {all_} students.")
        team = g.divisor(all_.value, 3, 12)
        g.say(f"For field day, all the fourth graders are split into teams of {g.num(team)}.")
        teams = g.calc(all_.value, "/", team)
        g.line(f"There are {teams} teams.")
        g.ask("How many teams are there?", teams)
        return
    girls, boys = g.randint(8, 17), g.randint(8, 17)
    g.say(f"In {t}'s class there are {girls} girls and {boys} boys.")
    total = g.calc(girls, "+", boys)
    g.line(f"There are {total} students in the class.")
    if k == 1:
        g.ask(g.pick(["How many students are in the class?", "What is the total number of students?"]), total)
        return
    each = g.randint(2, 5)
    thing = g.pick(["pencils", "stickers", "worksheets"])
    g.say(f"{t} gives each student {g.num(each)} {thing}.")
    handed = g.calc(total.value, "*", each)
    g.line(f"{t} hands out {handed} {thing}.")
    g.ask(f"How many {thing} does {t} hand out in all?", handed)


@scenario("reading")
def _reading(g: Draft, k: int) -> None:
    p = g.person()
    book = g.pick(["a mystery novel", "a book about space", "a fantasy book", "a biography", "a comic novel"])
    if k == 1:
        pages = g.randint(80, 400)
        read = g.randint(10, pages - 10)
        g.say(f"{p.name} is reading {book} that has {pages} pages. {p.He} has read {read} pages so far.")
        left = g.calc(pages, "-", read)
        g.line(f"{p.He} has {left} pages left.")
        g.ask(f"How many pages does {p.he} still have to read?", left)
        return
    if k == 2 and g.chance(0.5):
        d, n = g.randint(8, 30), g.randint(3, 7)
        pages = d * n + g.randint(10, 120)
        g.say(f"{p.name} is reading {book} that has {pages} pages.")
        g.say(f"{p.He} reads {d} pages every day for {g.num(n)} days.")
        done = g.calc(d, "*", n)
        g.line(f"{p.He} reads {done} pages.")
        left = g.calc(pages, "-", done.value)
        g.line(f"{left} pages are left.")
        g.ask(f"How many pages does {p.he} have left to read?", left)
        return
    if k == 2:
        d, days, read = g.randint(10, 30), g.randint(3, 9), g.randint(20, 150)
        pages = read + d * days
        g.say(f"{book[0].upper() + book[1:]} has {pages} pages. {p.name} has already read {read} pages.")
        g.say(f"{p.He} plans to read {d} pages a day.")
        left = g.calc(pages, "-", read)
        g.line(f"{p.He} has {left} pages left.")
        days_e = g.calc(left.value, "/", d)
        g.line(f"That takes {days_e} days.")
        g.ask(f"How many days will it take {p.him} to finish the book?", days_e)
        return
    a = g.randint(10, 40)
    pages = 3 * a + g.randint(10, 150)
    g.say(f"{p.name}'s book has {pages} pages. On Monday {p.he} read {a} pages.")
    g.say(f"On Tuesday {p.he} read twice as many pages as on Monday.")
    tue = g.calc(a, "*", 2)
    g.line(f"On Tuesday {p.he} read {tue} pages.")
    both = g.calc(a, "+", tue.value)
    g.line(f"Over the two days {p.he} read {both} pages.")
    left = g.calc(pages, "-", both.value)
    g.line(f"{left} pages are left.")
    g.ask(f"How many pages does {p.he} still need to read to finish the book?", left)


@scenario("library")
def _library(g: Draft, k: int) -> None:
    place = g.pick(["The town library", "The school library", "A small library", "The class library"])
    if k == 3:
        sh, per = g.randint(4, 12), g.randint(15, 40)
        g.say(f"{place} has {g.num(sh)} shelves with {per} books on each shelf.")
        shelved = g.calc(sh, "*", per)
        g.line(f"The library has {shelved} books.")
        books = shelved.value
    else:
        books = g.randint(100, 900)
        g.say(f"{place} had {books} books on Monday morning.")
    out = g.randint(10, min(90, books - 1))
    if k == 1:
        new = g.randint(10, 80)
        if g.chance(0.5):
            g.say(f"It received {new} new books as a donation.")
            total = g.calc(books, "+", new)
            g.line(f"Now it has {total} books.")
            g.ask("How many books does the library have now?", total)
        else:
            left = g.calc(books, "-", out)
            g.line(f"{left} books are still on the shelves.")
            g.ask(f"If {out} books are checked out, how many books are still on the shelves?", left)
        return
    back = g.randint(3, out)
    g.say(f"During the day, {out} books were checked out and {back} books were returned.")
    after = g.calc(books, "-", out)
    g.line(f"After the checkouts there are {after} books.")
    now = g.calc(after.value, "+", back)
    g.line(f"After the returns there are {now} books.")
    g.ask("How many books are in the library at the end of the day?", now)


@scenario("field_trip")
def _field_trip(g: Draft, k: int) -> None:
    place = g.pick(["the aquarium", "a farm", "the history museum", "the planetarium"])
    cap = g.pick([6, 7, 8, 10, 12, 15])
    total = cap * g.randint(3, 9)
    if k == 1:
        g.say(f"A group of {total} students is going on a field trip to {place}.")
        g.say(f"Each van can carry {cap} students.")
        vans = g.calc(total, "/", cap)
        g.line(f"They need {vans} vans.")
        g.ask("How many vans are needed?", vans)
        return
    teachers = g.randint(2, min(8, total - 10))
    students = total - teachers
    g.say(f"There are {students} students and {g.num(teachers)} teachers going on a field trip to {place}.")
    g.say(f"Each bus holds {cap} people, and every bus is filled.")
    people = g.calc(students, "+", teachers)
    g.line(f"There are {people} people.")
    buses = g.calc(people.value, "/", cap)
    g.line(f"They need {buses} buses.")
    if k == 2:
        g.ask("How many buses do they need?", buses)
        return
    cost = g.randint(50, 200, 10)
    g.say(f"Renting one bus costs ${cost}.")
    paid = g.calc(buses.value, "*", cost)
    g.line(f"Renting the buses costs {paid} dollars.")
    g.ask("How much does it cost to rent the buses?", paid)


_COLLECTIONS = ("stamps", "baseball cards", "seashells", "stickers", "postcards", "trading cards")


@scenario("collecting")
def _collecting(g: Draft, k: int) -> None:
    p = g.person()
    item = g.pick(_COLLECTIONS)
    if k == 1:
        a, b = g.randint(20, 200), g.randint(5, 60)
        if g.chance(0.5):
            g.say(f"{p.name} has {a} {item} in {p.his} collection. {p.He} gets {b} more at a swap meet.")
            total = g.calc(a, "+", b)
            g.line(f"{p.He} now has {total} {item}.")
            g.ask(f"How many {item} does {p.he} have now?", total)
        else:
            q = g.person()
            g.say(f"{p.name} has {a + b} {item}. {q.name} has {a} {item}.")
            diff = g.calc(a + b, "-", a)
            g.line(f"{p.name} has {diff} more.")
            g.ask(f"How many more {item} does {p.name} have than {q.name}?", diff)
        return
    if k == 2:
        q = g.person()
        a = g.randint(10, 90)
        twice, op, m = g.pick(
            [("twice as many", "*", 2), ("three times as many", "*", 3), ("half as many", "/", 2)]
        )
        if op == "/" and a % 2:
            a += 1
        g.say(f"{p.name} has {a} {item}. {q.name} has {twice} {item} as {p.name}.")
        other = g.calc(a, op, m)
        g.line(f"{q.name} has {other} {item}.")
        both = g.calc(a, "+", other.value)
        g.line(f"Together they have {both} {item}.")
        g.ask(
            g.pick([f"How many {item} do they have together?", f"What is the total number of {item}?"]), both
        )
        return
    a, packs, per = g.randint(20, 150), g.randint(2, 6), g.pick([5, 8, 10, 12, 20])
    g.say(f"{p.name} has {a} {item}. {p.He} buys {g.num(packs)} packs with {per} {item} in each pack.")
    cousin = g.randint(5, 30)
    g.say(f"Then {p.he} gives {cousin} {item} to {p.his} cousin.")
    bought = g.calc(packs, "*", per)
    g.line(f"{p.He} buys {bought} {item}.")
    more = g.calc(a, "+", bought.value)
    g.line(f"{p.He} then has {more} {item}.")
    left = g.calc(more.value, "-", cousin)
    g.line(f"After giving some away, {p.he} has {left} {item}.")
    g.ask(f"How many {item} does {p.he} have now?", left)


# --- plants and animals --------------------------------------------------------------------------

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


# --- getting around ------------------------------------------------------------------------------


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


# --- home, family and games ----------------------------------------------------------------------


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
