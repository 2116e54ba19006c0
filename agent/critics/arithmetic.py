"""A model-free critic: recompute the arithmetic a solution states and score the steps by it.

``check_claims`` finds written claims of the form ``a op b [op c ...] = r`` (operators ``+ - − –
* x × · ⋅ / ÷`` and LaTeX ``\\times \\cdot \\div``; numbers such as ``12``, ``1,250``, ``0.5``,
``$3``), evaluates the left side exactly (``*`` and ``/`` before ``+`` and ``-``, left to right) and
compares it with the stated result. Nothing is ever ``eval``-ed: numbers and operators are parsed
here. A result written with decimals may be rounded or truncated to its last written digit
("10 / 3 = 3.33" holds); a whole-number result must be exact ("10 / 3 = 3" does not hold).

Chains such as ``3 * 4 = 12 / 2 = 6`` are read as running computations: a stated result that is
followed by more arithmetic ("= 12 / 2") is not compared with the left side, because writers use
"=" both for "equals" and for "and then"; the arithmetic that follows is checked as its own claim
("12 / 2 = 6"). A claim never spans a line break.

Left out on purpose, to keep false alarms rare: parentheses, powers, percentages, variables
("2x + 3 = 7" is no claim), units between numbers, words ("equals", "times"), and approximate
signs (≈). A text without claims scores as "missing", never as right or wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import get_args

from agent.critics.base import Critic, CriticRole, CriticScore
from agent.errors import ConfigError

__all__ = [
    "P_CAP",
    "P_NO_CLAIM",
    "P_RIGHT",
    "P_WRONG",
    "ArithmeticCritic",
    "CheckedCritic",
    "Claim",
    "check_claims",
    "parse_numeral",
]

P_RIGHT = 0.9
"""Score when every checked claim holds: arithmetic right is evidence, not proof, of a right step."""
P_WRONG = 0.1
"""Score when any claim is wrong: a miscalculation almost always spoils the answer."""
P_NO_CLAIM = 0.5
"""Score when there is nothing to check (the score then says ``missing=True``)."""

_NUM = r"\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_OP = r"(?:\\times|\\cdot|\\div|[-+*/xX×÷·⋅−–])"
_SP = r"[ \t]*"  # a claim never spans lines: a line break ends it
_CLAIM_RE = re.compile(
    rf"(?P<lhs>[-−]?{_NUM}(?:{_SP}{_OP}{_SP}{_NUM})+){_SP}={_SP}(?P<rhs>[-−]?{_NUM})"
    rf"(?![\w^%]|[.,]\d|{_SP}{_OP}{_SP}\$?[\d.])"
)
_TOKEN_RE = re.compile(rf"{_SP}(?:(?P<num>{_NUM})|(?P<op>{_OP}))")
_OPERATOR_CHARS = frozenset("+-*/×÷·⋅−–^)%")
_LATEX_OPERATORS = ("\\times", "\\cdot", "\\div")
_UNARY_CONTEXT = frozenset("(=:;,")
_LINE_STARTS = frozenset({"", "-", "*", "•"})  # nothing, or a list bullet, before the claim
_CANONICAL_OP = {"−": "-", "–": "-", "x": "*", "X": "*", "×": "*", "·": "*", "⋅": "*", "\\times": "*"}
_CANONICAL_OP |= {"\\cdot": "*", "÷": "/", "\\div": "/"}


@dataclass(frozen=True, slots=True)
class Claim:
    """One stated computation: its text, the stated and the recomputed value, and whether they agree.

    ``computed`` is None when the left side cannot be evaluated (division by zero); such a claim is
    not ``ok``.
    """

    text: str
    stated: Fraction
    computed: Fraction | None
    ok: bool


def check_claims(text: str) -> list[Claim]:
    """Every arithmetic claim in ``text``, in order, each recomputed."""
    claims: list[Claim] = []
    pos = 0
    while (match := _CLAIM_RE.search(text, pos)) is not None:
        if not _starts_expression(text, match.start()):
            pos = match.start() + 1
            continue
        stated_text = match.group("rhs")
        stated = parse_numeral(stated_text)
        computed = _evaluate(match.group("lhs"))
        ok = computed is not None and _agrees(computed, stated, stated_text)
        claims.append(Claim(match.group(0), stated, computed, ok))
        pos = match.start("rhs")  # the result may start the next claim of a chain
    return claims


class ArithmeticCritic:
    """Scores by recomputed arithmetic: PRM on the last step, ORM and value on all steps."""

    def __init__(self, role: CriticRole) -> None:
        if role not in get_args(CriticRole):
            raise ConfigError(f"unknown critic role {role!r}; choose one of value, prm, orm")
        self.role: CriticRole = role
        self.name = f"arithmetic-{role}"

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        judged = steps[-1:] if self.role == "prm" else steps
        claims = [claim for step in judged for claim in check_claims(step)]
        if not claims:
            return CriticScore(P_NO_CLAIM, missing=True)
        return CriticScore(P_RIGHT if all(c.ok for c in claims) else P_WRONG)


def _starts_expression(text: str, start: int) -> bool:
    """False when the match begins in the middle of a longer expression or a word."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._,$\\"):
        return False
    before = text[:start].rstrip(" \t")
    if before.rsplit("\n", 1)[-1].strip() in _LINE_STARTS:
        return True
    if text[start] in "-−":
        return before[-1] in _UNARY_CONTEXT
    if before.endswith(_LATEX_OPERATORS) or before[-1] in _OPERATOR_CHARS:
        return False
    # A lone "x" between numbers is multiplication ("3 x 4"); an "x" ending a word is not ("Max").
    return not (before[-1] in "xX" and (len(before) == 1 or not before[-2].isalpha()))


def parse_numeral(token: str) -> Fraction:
    """The exact value of a numeral as claims write it: ``12``, ``-3``, ``1,250``, ``0.5``, ``$3``."""
    sign = -1 if token[0] in "-−" else 1
    return sign * Fraction(Decimal(token.lstrip("-−$").replace(",", "")))


def _evaluate(expression: str) -> Fraction | None:
    """The exact value of ``number (op number)*``, with * and / before + and -; None on x / 0."""
    sign = -1 if expression.lstrip()[0] in "-−" else 1
    body = expression.lstrip().lstrip("-−")
    numbers: list[Fraction] = []
    ops: list[str] = []
    for token in _TOKEN_RE.finditer(body):
        if token.group("num") is not None:
            numbers.append(parse_numeral(token.group("num")))
        else:
            ops.append(_CANONICAL_OP.get(token.group("op"), token.group("op")))
    numbers[0] *= sign
    terms: list[Fraction] = [numbers[0]]
    signs: list[int] = [1]
    for op, value in zip(ops, numbers[1:], strict=True):
        if op in "+-":
            terms.append(value)
            signs.append(1 if op == "+" else -1)
        elif op == "*":
            terms[-1] *= value
        elif value == 0:
            return None
        else:
            terms[-1] /= value
    return sum((s * t for s, t in zip(signs, terms, strict=True)), Fraction(0))


def _agrees(computed: Fraction, stated: Fraction, stated_text: str) -> bool:
    """Exact for whole-number results; within one unit of the last written digit for decimals."""
    if "." not in stated_text:
        return computed == stated
    decimals = len(stated_text.rsplit(".", 1)[1])
    return abs(computed - stated) <= Fraction(1, 10**decimals)


P_CAP = 0.02
"""The most a learned critic may give a state whose judged steps state a wrong computation."""


class CheckedCritic:
    """A learned critic whose score is capped by the arithmetic re-check.

    When a judged step states a computation that is wrong (``24 / 8 = 2``), the score is ``P_CAP``
    and the learned critic is not asked (saving its request); otherwise it is the learned score
    unchanged: a right computation proves nothing about the choice of operation or operands, which
    is what the learned critic is for. Judged steps are the last one for a PRM, all of them for a
    value function or an ORM, as in ``ArithmeticCritic``.
    """

    def __init__(self, inner: Critic, *, cap: float = P_CAP) -> None:
        if not 0.0 <= cap <= 1.0:
            raise ConfigError(f"cap must be in [0, 1], got {cap}")
        self.inner = inner
        self.role: CriticRole = inner.role
        self.name = f"checked-{inner.name}"
        self.cap = cap
        self.capped = 0

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        judged = steps[-1:] if self.role == "prm" else steps
        if any(not claim.ok for step in judged for claim in check_claims(step)):
            self.capped += 1
            return CriticScore(self.cap)
        return await self.inner.score(question, steps)
