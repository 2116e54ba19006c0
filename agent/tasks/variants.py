"""Prompt variants: the instruction and worked examples a task shows the policy, as named data.

Every solver starts from one prompt (greedy, each self-consistency sample, every ηMCTS option), so
the prompt is chosen by measurement (``bench/prompts.py``) and named in every run: ``run.json`` and
``summary.json`` store the variant's name and a hash of its text, and a run never resumes under a
different prompt.

The word-problem tasks (``gsm8k`` and the generated ``arith``) share one solution style, one step
per line with the arithmetic written out, ending with "The answer is N.", and so share variants:

- ``house``: the task's own instruction and three worked examples of two or three steps (for
  ``arith`` the three fixed generated examples of one, two and three steps).
- ``mixed-8``: the house instruction and eight short examples written for this project: four of one
  step (how many in all, how many left, each, times a price), two of two steps (times as many, money
  and change), one comparison (how many more) and one of three steps with units (miles per hour).
- ``mixed-4``: four of those (in all, left, change, per hour): a shorter prefix.
- ``plain-8``: the same eight examples under a one-line instruction.
- ``zero-shot``: the house instruction and no examples.

MATH has one variant, ``house``. The prefix is the same for every problem of a run (nothing
per-request comes before the question), so the server's prefix cache holds it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from agent.errors import ConfigError

__all__ = ["DEFAULT_PROMPTS", "PromptVariant", "get_prompt", "prompt_names"]

Examples = tuple[tuple[str, str], ...]

HOUSE_INSTRUCTION = (
    "Solve the problem step by step, writing one short step per line with the arithmetic "
    'written out, and finish with a line of the form "The answer is N."'
)
PLAIN_INSTRUCTION = 'Answer the math word problem. End with "The answer is N."'


@dataclass(frozen=True, slots=True)
class PromptVariant:
    """A named instruction and worked (question, solution) examples for one task."""

    name: str
    task: str
    instruction: str
    examples: Examples
    description: str = ""

    @property
    def hash(self) -> str:
        """12 hex digits of SHA-256 over the instruction and examples: the text, not the name."""
        text = json.dumps([self.instruction, [list(e) for e in self.examples]], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def identity(self) -> dict[str, str]:
        """What a run records about its prompt: ``{"name": ..., "hash": ...}``."""
        return {"name": self.name, "hash": self.hash}


# Eight short examples in the house style, written for this project.
_IN_ALL = (
    "Lena has 14 stickers. Her friend gives her 9 more stickers. How many stickers does Lena have now?",
    "Lena has 14 + 9 = 23 stickers.\nThe answer is 23.",
)
_LEFT = (
    "A farmer had 52 eggs. He sold 17 of them at the market. How many eggs does he have left?",
    "He has 52 - 17 = 35 eggs left.\nThe answer is 35.",
)
_EACH = (
    "A teacher shares 48 crayons equally among 6 tables. How many crayons does each table get?",
    "Each table gets 48 / 6 = 8 crayons.\nThe answer is 8.",
)
_PRICE = (
    "A bus ticket costs $3. How much do 7 tickets cost?",
    "7 tickets cost 7 * 3 = 21 dollars.\nThe answer is 21.",
)
_TIMES_AS_MANY = (
    "Sam has 6 marbles. Ava has 4 times as many marbles as Sam. How many marbles do they have together?",
    "Ava has 4 * 6 = 24 marbles.\nTogether they have 24 + 6 = 30 marbles.\nThe answer is 30.",
)
_CHANGE = (
    "Pens cost $3 each. Maya buys 5 pens and pays with a $20 bill. How much change does she get?",
    "The pens cost 5 * 3 = 15 dollars.\nHer change is 20 - 15 = 5 dollars.\nThe answer is 5.",
)
_MORE_THAN = (
    "Jake has 31 baseball cards and Ben has 18. How many more cards does Jake have than Ben?",
    "Jake has 31 - 18 = 13 more cards than Ben.\nThe answer is 13.",
)
_PER_HOUR = (
    "A car drives at 50 miles per hour for 2 hours, then at 30 miles per hour for 3 hours. "
    "How many miles does it drive in all?",
    "In the first 2 hours it drives 2 * 50 = 100 miles.\n"
    "In the next 3 hours it drives 3 * 30 = 90 miles.\n"
    "In all it drives 100 + 90 = 190 miles.\n"
    "The answer is 190.",
)
MIXED_8: Examples = (_IN_ALL, _TIMES_AS_MANY, _LEFT, _CHANGE, _EACH, _MORE_THAN, _PER_HOUR, _PRICE)
MIXED_4: Examples = (_IN_ALL, _CHANGE, _LEFT, _PER_HOUR)


def _gsm8k_house() -> Examples:
    from agent.tasks.gsm8k import HOUSE_EXAMPLES

    return HOUSE_EXAMPLES


def _arith_house() -> Examples:
    from agent.tasks.arith import house_examples

    return house_examples()


def _math_house() -> Examples:
    from agent.tasks.math import HOUSE_EXAMPLES

    return HOUSE_EXAMPLES


@dataclass(frozen=True, slots=True)
class _Spec:
    instruction: str | Callable[[], str]
    examples: Callable[[], Examples]
    description: str


def _word_problem_specs(house: Callable[[], Examples]) -> dict[str, _Spec]:
    return {
        "house": _Spec(HOUSE_INSTRUCTION, house, "house instruction, the task's three worked examples"),
        "mixed-8": _Spec(
            HOUSE_INSTRUCTION, lambda: MIXED_8, "house instruction, 8 short examples (1-3 steps)"
        ),
        "mixed-4": _Spec(
            HOUSE_INSTRUCTION, lambda: MIXED_4, "house instruction, 4 short examples (1-3 steps)"
        ),
        "plain-8": _Spec(PLAIN_INSTRUCTION, lambda: MIXED_8, "one-line instruction, 8 short examples"),
        "zero-shot": _Spec(HOUSE_INSTRUCTION, lambda: (), "house instruction, no examples"),
    }


def _math_instruction() -> str:
    from agent.tasks.math import INSTRUCTION

    return INSTRUCTION


_REGISTRY: dict[str, dict[str, _Spec]] = {
    "gsm8k": _word_problem_specs(_gsm8k_house),
    "arith": _word_problem_specs(_arith_house),
    "math": {"house": _Spec(_math_instruction, _math_house, "house instruction, three worked examples")},
}

DEFAULT_PROMPTS: dict[str, str] = {"gsm8k": "mixed-8", "arith": "mixed-8", "math": "house"}
"""The variant each task uses when none is named (chosen by ``bench/prompts.py``; see the README)."""


def prompt_names(task: str) -> tuple[str, ...]:
    """The variants registered for ``task``."""
    if task not in _REGISTRY:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return tuple(_REGISTRY[task])


@cache
def get_prompt(task: str, name: str | None = None) -> PromptVariant:
    """The variant ``name`` of ``task`` (its default when ``name`` is None), or a ConfigError."""
    names = prompt_names(task)
    chosen = DEFAULT_PROMPTS[task] if name is None else name
    if chosen not in names:
        raise ConfigError(
            f"unknown prompt {chosen!r} for task {task!r}; choose one of {', '.join(names)} "
            "(--prompt or AGENT_PROMPT)"
        )
    spec = _REGISTRY[task][chosen]
    instruction = spec.instruction if isinstance(spec.instruction, str) else spec.instruction()
    return PromptVariant(chosen, task, instruction, tuple(spec.examples()), spec.description)
