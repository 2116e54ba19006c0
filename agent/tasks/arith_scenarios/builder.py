"""The machinery every scenario uses: ``Person``, ``Reject``, ``Expr``, ``Draft``, the vocabulary
(names, surnames, number words), the ``MAX_VALUE`` bound and the ``SCENARIOS`` registry with its
``@scenario`` decorator.

``Draft`` owns the random source, the vocabulary and the checks every step must pass (whole,
non-negative, moderate results); a scenario that draws numbers that do not fit raises ``Reject``
and the caller draws again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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
