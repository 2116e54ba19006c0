"""School and book scenarios: classroom, reading, library, field trip and collecting."""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import Draft, scenario


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
