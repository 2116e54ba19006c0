"""MATH: competition problems with LaTeX answers, solved in steps separated by blank lines.

``MathTask`` carries the prompt (the ``house`` variant of ``agent.tasks.variants``: ``INSTRUCTION`` and
the three worked examples below, written for this project); ``load_math`` reads MATH-500 JSONL
(``problem``, ``solution``, ``answer``, ``subject``, ``level``, ``unique_id``) and also records in
the original MATH layout, which have no ``answer`` (the gold is then the last ``\\boxed{...}`` of
the solution) and call the subject ``type``.

Left out on purpose: the original release's one-JSON-file-per-problem folders (convert them to
JSONL first) and any rewriting of gold answers; equivalence is the grader's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from agent.errors import DataError
from agent.tasks.answers import extract_answer as _extract_answer
from agent.tasks.answers import last_boxed
from agent.tasks.base import Problem
from agent.tasks.hub import Row, read_jsonl, require_str
from agent.tasks.variants import get_prompt

__all__ = ["HOUSE_EXAMPLES", "INSTRUCTION", "MathTask", "load_math", "parse_math_row", "parse_math_rows"]

INSTRUCTION = (
    "Solve the problem step by step, separating the steps with blank lines, and finish with "
    'a line of the form "The answer is $\\boxed{ANSWER}$."'
)

HOUSE_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Find the sum of the roots of $x^2 - 7x + 10 = 0$.",
        "The quadratic factors as $(x - 2)(x - 5) = 0$.\n\n"
        "So the roots are $x = 2$ and $x = 5$.\n\n"
        "Their sum is $2 + 5 = 7$.\n\n"
        "The answer is $\\boxed{7}$.",
    ),
    (
        "Simplify $\\frac{3}{4} + \\frac{5}{6}$.",
        "The least common denominator of $4$ and $6$ is $12$.\n\n"
        "Rewriting both fractions gives $\\frac{9}{12} + \\frac{10}{12} = \\frac{19}{12}$.\n\n"
        "Since $19$ is prime and does not divide $12$, the fraction is in lowest terms.\n\n"
        "The answer is $\\boxed{\\frac{19}{12}}$.",
    ),
    (
        "For which real numbers $x$ is $2x - 3 > 5$? Express your answer in interval notation.",
        "Adding $3$ to both sides gives $2x > 8$.\n\n"
        "Dividing both sides by $2$ gives $x > 4$.\n\n"
        "The numbers greater than $4$ form the interval $(4, \\infty)$.\n\n"
        "The answer is $\\boxed{(4, \\infty)}$.",
    ),
)

_LEVEL_RE = re.compile(r"(?:level\s*)?(\d+)", re.IGNORECASE)


class MathTask:
    """MATH's prompt and answer extraction; ``prompt`` names a variant (default: the task's default)."""

    name = "math"
    default_source = "hf:HuggingFaceH4/MATH-500"

    def __init__(self, prompt: str | None = None) -> None:
        self.prompt = get_prompt(self.name, prompt)
        self.instruction = self.prompt.instruction

    def few_shot(self) -> Sequence[tuple[str, str]]:
        """The prompt variant's worked (question, solution) pairs."""
        return self.prompt.examples

    def extract_answer(self, solution: str) -> str | None:
        """The final answer ``solution`` states (see ``agent.tasks.answers.extract_answer``)."""
        return _extract_answer(solution)


def load_math(path: str | Path) -> list[Problem]:
    """The problems of a MATH JSONL file; ids come from ``unique_id`` when records have one."""
    return parse_math_rows(read_jsonl(path), source=Path(path).stem)


def parse_math_rows(rows: Iterable[Row], *, source: str) -> list[Problem]:
    """Problems from MATH records; ``source`` (a file stem or split name) names id-less records."""
    problems = [parse_math_row(row, source=source) for row in rows]
    if not problems:
        raise DataError(f"math {source}: no problems")
    return problems


def parse_math_row(row: Row, *, source: str) -> Problem:
    """One MATH record as a Problem, or a DataError naming the row and what is wrong."""
    question = require_str(row, "problem")
    meta: dict[str, str | int | float] = {}
    if row.data.get("solution") is not None:
        meta["solution"] = require_str(row, "solution")
    gold = _gold(row, meta.get("solution"))
    for field in ("subject", "type"):
        if isinstance(row.data.get(field), str):
            meta.setdefault("subject", row.data[field])
    level = _level(row.data.get("level"))
    if level is not None:
        meta["level"] = level
    unique_id = row.data.get("unique_id")
    if unique_id is not None:
        meta["unique_id"] = require_str(row, "unique_id")
    return Problem(id=_problem_id(row, source, unique_id), question=question.strip(), gold=gold, meta=meta)


def _gold(row: Row, solution: object) -> str:
    if row.data.get("answer") is not None:
        return require_str(row, "answer").strip()
    if not isinstance(solution, str):
        raise DataError(f"{row.where}: missing field 'answer' (and no 'solution' to take it from)")
    boxed = last_boxed(solution)
    if not boxed:
        raise DataError(f"{row.where}: no 'answer' field and no \\boxed{{...}} in 'solution'")
    return boxed


def _level(value: object) -> int | None:
    """3 from "Level 3" or 3; None for "Level ?" or a missing level."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _LEVEL_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _problem_id(row: Row, source: str, unique_id: object) -> str:
    """``math-test-precalculus-807`` from "test/precalculus/807.json", else ``math-<source>-<index>``."""
    if isinstance(unique_id, str):
        return "math-" + unique_id.removesuffix(".json").replace("/", "-")
    return f"math-{source}-{row.position}"
