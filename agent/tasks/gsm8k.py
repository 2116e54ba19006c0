"""GSM8K: grade-school word problems with integer answers, solved one short step per line.

``Gsm8kTask`` carries the prompt (a variant from ``agent.tasks.variants``; its ``house`` variant is an
instruction and the three worked examples below, written for this project, not taken from GSM8K);
``load_gsm8k`` reads the official JSONL files (``question``, ``answer`` ending in ``#### N``).
``parse_gsm8k_rows`` is the row parser shared with the hub loader.

Left out on purpose: the calculator annotations (``<<48/2=24>>``) in reference solutions are kept
as they are in ``meta["solution"]``; nothing here strips or checks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from agent.errors import DataError
from agent.tasks.answers import extract_answer as _extract_answer
from agent.tasks.answers import gsm8k_gold
from agent.tasks.base import Problem
from agent.tasks.hub import Row, read_jsonl, require_str
from agent.tasks.variants import get_prompt

__all__ = [
    "HOUSE_EXAMPLES",
    "Gsm8kTask",
    "load_gsm8k",
    "parse_gsm8k_row",
    "parse_gsm8k_rows",
    "solution_steps",
]

HOUSE_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "A baker fills 4 trays with 12 muffins each. She sells 30 muffins in the morning. "
        "How many muffins does she have left?",
        "The baker makes 4 * 12 = 48 muffins.\n"
        "After the morning she has 48 - 30 = 18 muffins left.\n"
        "The answer is 18.",
    ),
    (
        "Tom reads 15 pages on each weekday and 25 pages on each day of the weekend. "
        "How many pages does he read in one week?",
        "On the 5 weekdays Tom reads 5 * 15 = 75 pages.\n"
        "On the 2 weekend days he reads 2 * 25 = 50 pages.\n"
        "In one week he reads 75 + 50 = 125 pages.\n"
        "The answer is 125.",
    ),
    (
        "A box of 8 pencils costs $6. Maria needs 40 pencils for her class and pays with a $50 bill. "
        "How much change does she get?",
        "Maria needs 40 / 8 = 5 boxes.\n"
        "The boxes cost 5 * 6 = 30 dollars.\n"
        "Her change is 50 - 30 = 20 dollars.\n"
        "The answer is 20.",
    ),
)


class Gsm8kTask:
    """GSM8K's prompt and answer extraction; ``prompt`` names a variant (default: the task's default)."""

    name = "gsm8k"
    default_source = "hf:openai/gsm8k:main"

    def __init__(self, prompt: str | None = None) -> None:
        self.prompt = get_prompt(self.name, prompt)
        self.instruction = self.prompt.instruction

    def few_shot(self) -> Sequence[tuple[str, str]]:
        """The prompt variant's worked (question, solution) pairs."""
        return self.prompt.examples

    def extract_answer(self, solution: str) -> str | None:
        """The final answer ``solution`` states (see ``agent.tasks.answers.extract_answer``)."""
        return _extract_answer(solution)


def load_gsm8k(path: str | Path) -> list[Problem]:
    """The problems of a GSM8K JSONL file; ids are ``gsm8k-<file stem>-<line index>``."""
    return parse_gsm8k_rows(read_jsonl(path), source=Path(path).stem)


def parse_gsm8k_rows(rows: Iterable[Row], *, source: str) -> list[Problem]:
    """Problems from GSM8K records; ``source`` (a file stem or split name) goes into the ids."""
    problems = [parse_gsm8k_row(row, source=source) for row in rows]
    if not problems:
        raise DataError(f"gsm8k {source}: no problems")
    return problems


def parse_gsm8k_row(row: Row, *, source: str) -> Problem:
    """One GSM8K record as a Problem, or a DataError naming the row and what is wrong."""
    question = require_str(row, "question")
    answer = require_str(row, "answer")
    if "####" not in answer:
        raise DataError(f"{row.where}: answer has no '#### N'")
    gold = gsm8k_gold(answer)
    if not gold:
        raise DataError(f"{row.where}: answer has nothing after '####'")
    return Problem(
        id=f"gsm8k-{source}-{row.position}",
        question=question.strip(),
        gold=gold,
        meta={"solution": answer, "steps": solution_steps(answer)},
    )


def solution_steps(answer: str) -> int:
    """The number of reasoning lines of a GSM8K reference solution (the text before ``####``)."""
    return max(1, sum(1 for line in answer.split("####")[0].splitlines() if line.strip()))
