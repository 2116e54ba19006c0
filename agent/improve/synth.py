"""Critic data with exact labels at no sampling cost: reference solutions of the generated task and
controlled corruptions of them, plus exact step labels for the policy's own solutions.

The generated arithmetic task (``agent.tasks.arith``) knows every step of every problem: its reference
solution writes one computation ``a op b = c`` per line and ends with "The answer is N.". From it:

- ``reference(problem)``: the reference steps, all correct (``first_wrong=None``);
- ``corrupt(problem, kind, rng)``: the same solution with one controlled mistake whose step is known.
  Later steps are recomputed from the wrong value (the solution stays internally consistent after its
  first error, as a real wrong solution does), so only the first wrong step is "the" mistake. Kinds:

  ``slip``       an arithmetic slip: a step states a wrong result (``24 / 8 = 2``);
  ``operation``  the wrong operation, computed correctly (``24 + 8 = 32`` where ``24 / 8`` was needed);
  ``operand``    a distractor or another number of the problem used in place of an operand;
  ``skip``       the last computation is left out and the answer is the result before it;
  ``answer``     every step right, but the final answer does not follow from them;
  ``mismatch``   every step right, but the answer names an intermediate quantity (a unit/question
                 mismatch: it answers a different question than the one asked).

- ``label_policy_steps(problem, steps)``: the first wrong step of a solution the policy wrote, judged
  against the reference: a step is wrong when an ``a op b = c`` in it is miscomputed or its result
  is a number the reference never reaches, or when a stated final answer is not the gold one.

``synthetic_trajectories`` turns problems into graded ``LabelledSolution`` records (one reference
and ``corruptions`` corrupted solutions per problem); ``agent.improve.critic_data.labelled_rows``
turns those, and the policy's own labelled samples, into critic rows. Tens of thousands of rows take
seconds: nothing here calls a model.

Left out on purpose: problems from other tasks (GSM8K solutions do not write one computation per
line reliably), and corruptions that change a step's wording without its numbers (a critic reading
numbers cannot see them, and neither can our labels).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from agent.errors import ConfigError, DataError
from agent.tasks.answers import extract_answer, parse_number
from agent.tasks.base import Problem

__all__ = [
    "KINDS",
    "CorruptionKind",
    "LabelledSolution",
    "corrupt",
    "label_policy_steps",
    "reference",
    "synthetic_solutions",
]

CorruptionKind = Literal["slip", "operation", "operand", "skip", "answer", "mismatch"]
KINDS: tuple[CorruptionKind, ...] = get_args(CorruptionKind)

_EXPR = re.compile(r"(?<![\d.])(\d+) ([-+*/]) (\d+) = (\d+)(?!\d|\.\d)")
_ANSWER_LINE = re.compile(r"^The answer is (\d+)\.$")
_CLAIM = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([-+*/x×÷])\s*(\d+(?:\.\d+)?)\s*=\s*(\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class LabelledSolution:
    """A full solution with known step labels: ``first_wrong`` is the 0-based index of its first wrong
    step, or None when every step is right; ``correct`` is the final answer's grade."""

    problem_id: str
    question: str
    gold: str
    steps: tuple[str, ...]
    first_wrong: int | None
    correct: bool
    source: str  # "reference", "synthetic:<kind>" or "policy"


@dataclass(frozen=True, slots=True)
class _Step:
    a: int
    op: str
    b: int
    value: int


def _apply(a: int, op: str, b: int) -> int | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a - b >= 0 else None
    if op == "*":
        return a * b
    if b == 0 or a % b:
        return None
    return a // b


def _parse(problem: Problem) -> tuple[list[str], list[_Step]]:
    """The reference's computation lines (without the answer line) and their expressions."""
    solution = problem.meta.get("solution") if problem.meta else None
    if not isinstance(solution, str):
        raise DataError(
            f"problem {problem.id!r} has no reference solution (meta['solution']); use the arith task"
        )
    lines = [line.strip() for line in solution.split("\n") if line.strip()]
    if not lines or not _ANSWER_LINE.match(lines[-1]):
        raise DataError(
            f"problem {problem.id!r}: the reference solution does not end with 'The answer is N.'"
        )
    body = lines[:-1]
    steps = []
    for line in body:
        found = _EXPR.findall(line)
        if len(found) != 1:
            raise DataError(f"problem {problem.id!r}: a reference line must hold one computation: {line!r}")
        a, op, b, c = found[0]
        steps.append(_Step(int(a), op, int(b), int(c)))
    return body, steps


def _answer(n: int) -> str:
    return f"The answer is {n}."


def reference(problem: Problem) -> LabelledSolution:
    """The reference solution, every step right."""
    body, steps = _parse(problem)
    lines = (*body, _answer(steps[-1].value))
    return LabelledSolution(problem.id, problem.question, problem.gold, lines, None, True, "reference")


def _rewrite(line: str, old: _Step, new: _Step) -> str:
    return line.replace(
        f"{old.a} {old.op} {old.b} = {old.value}", f"{new.a} {new.op} {new.b} = {new.value}", 1
    )


def _propagate(
    body: list[str], steps: list[_Step], i: int, new: _Step
) -> tuple[list[str], list[_Step]] | None:
    """Steps ``i..`` after step ``i`` became ``new``: later operands that used its old value use the new
    one and are recomputed; None when a recomputed step is not a whole non-negative number."""
    body, steps = list(body), list(steps)
    replaced = {steps[i].value: new.value}
    body[i], steps[i] = _rewrite(body[i], steps[i], new), new
    for j in range(i + 1, len(steps)):
        old = steps[j]
        a, b = replaced.get(old.a, old.a), replaced.get(old.b, old.b)
        if (a, b) == (old.a, old.b):
            continue
        value = _apply(a, old.op, b)
        if value is None:
            return None
        step = _Step(a, old.op, b, value)
        replaced[old.value] = value
        body[j], steps[j] = _rewrite(body[j], old, step), step
    return body, steps


def corrupt(problem: Problem, kind: CorruptionKind, rng: random.Random) -> LabelledSolution | None:
    """The reference with one mistake of ``kind``; None when that kind does not fit this problem."""
    if kind not in KINDS:
        raise ConfigError(f"unknown corruption {kind!r}; choose one of {', '.join(KINDS)}")
    body, steps = _parse(problem)
    gold = steps[-1].value
    first_wrong: int
    if kind in ("slip", "operation", "operand"):
        i = rng.randrange(len(steps))
        old = steps[i]
        new = _mutate(problem, old, kind, rng)
        if new is None or new.value == old.value:
            return None
        done = _propagate(body, steps, i, new)
        if done is None:
            return None
        body, steps = done
        lines = [*body, _answer(steps[-1].value)]
        first_wrong = i
        final = steps[-1].value
    elif kind == "skip":
        if len(steps) == 1:
            final = rng.choice([steps[0].a, steps[0].b])
            lines = [_answer(final)]
        else:
            final = steps[-2].value
            lines = [*body[:-1], _answer(final)]
        first_wrong = len(lines) - 1
    elif kind == "answer":
        final = _slip(gold, rng)
        lines = [*body, _answer(final)]
        first_wrong = len(lines) - 1
    else:  # mismatch: the answer names another quantity of the solution or the problem
        options = [s.value for s in steps[:-1]] or [steps[0].a, steps[0].b]
        final = rng.choice(options)
        lines = [*body, _answer(final)]
        first_wrong = len(lines) - 1
    if final == gold:
        return None
    return LabelledSolution(
        problem.id, problem.question, problem.gold, tuple(lines), first_wrong, False, f"synthetic:{kind}"
    )


def _slip(value: int, rng: random.Random) -> int:
    """A plausible wrong result: off by a little, off by ten, or two digits swapped."""
    choices = [value + d for d in (-2, -1, 1, 2, 10, -10) if value + d >= 0]
    digits = str(value)
    if len(digits) >= 2 and digits[-1] != digits[-2]:
        choices.append(int(digits[:-2] + digits[-1] + digits[-2]))
    return rng.choice([c for c in choices if c != value] or [value + 1])


def _mutate(problem: Problem, old: _Step, kind: CorruptionKind, rng: random.Random) -> _Step | None:
    if kind == "slip":
        return _Step(old.a, old.op, old.b, _slip(old.value, rng))
    if kind == "operation":
        ops = [op for op in "+-*/" if op != old.op]
        rng.shuffle(ops)
        for op in ops:
            value = _apply(old.a, op, old.b)
            if value is not None and value != old.value and value <= 100_000:
                return _Step(old.a, op, old.b, value)
        return None
    numbers = sorted({int(n) for n in _NUMBER.findall(problem.question)} - {old.a, old.b})
    rng.shuffle(numbers)
    for n in numbers:
        a, b = (n, old.b) if rng.random() < 0.5 else (old.a, n)
        value = _apply(a, old.op, b)
        if value is not None and value != old.value:
            return _Step(a, old.op, b, value)
    return None


def synthetic_solutions(
    problems: Iterable[Problem], *, corruptions: int = 3, seed: int | str = 0
) -> list[LabelledSolution]:
    """Per problem: the reference and up to ``corruptions`` corrupted solutions of distinct kinds
    (drawn in a seeded order; kinds that do not fit the problem are skipped)."""
    if corruptions < 0:
        raise ConfigError(f"corruptions must be >= 0, got {corruptions}")
    out: list[LabelledSolution] = []
    for problem in problems:
        rng = random.Random(f"synth\0{seed}\0{problem.id}")
        out.append(reference(problem))
        kinds = list(KINDS)
        rng.shuffle(kinds)
        made = 0
        for kind in kinds:
            if made == corruptions:
                break
            bad = corrupt(problem, kind, rng)
            if bad is not None:
                out.append(bad)
                made += 1
    return out


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def label_policy_steps(problem: Problem, steps: Sequence[str]) -> int | None:
    """The first wrong step (0-based) of a solution of ``problem`` the policy wrote, or None.

    A step is wrong when an ``a op b = c`` it states is miscomputed, when a result it computes is not a
    number the reference reaches (an intermediate result or the answer), or when it states a final
    answer ("the answer is N") other than the gold one. A solution that never states the gold answer
    but has no wrong step is wrong at its last step (it stopped short).
    """
    _, ref = _parse(problem)
    reached = {s.value for s in ref}
    gold = _num(problem.gold)
    stated_gold = False
    for i, step in enumerate(steps):
        for a, op, b, c in _CLAIM.findall(step):
            value = _apply_float(_num(a), op, _num(b))
            if value is None or abs(value - _num(c)) > 1e-9 or _num(c) not in reached:
                return i
        stated = extract_answer(step)
        if stated is not None:
            value = parse_number(stated)
            if value is None or float(value) != gold:
                return i
            stated_gold = True
    if stated_gold or not steps:
        return None
    return len(steps) - 1


def _apply_float(a: float, op: str, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op in "*x×":
        return a * b
    return a / b if b else None
