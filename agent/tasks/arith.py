"""The built-in task: generated arithmetic word problems with known answers, no data files needed.

``generate_problems`` writes grade-school word problems (shopping, baking, buses, ages, ...; the
templates are in ``agent.tasks.arith_scenarios``) that need one to three steps of +, -, * or exact
/, each with a reference solution in the house style (one short step per line with the arithmetic
written out, ending with "The answer is N."). ``ArithTask`` is the ``Task`` around them: this is
where small CPU models get tests, critic training data and a self-improvement signal.

How it stays reproducible and honest:

- Problem ``i`` of ``(split, seed)`` is drawn from its own ``random.Random`` keyed by those three,
  so the list for ``n`` is a prefix of the list for ``n + 1`` and ids are stable.
- Train and test never share a question: each question's core text (without the distractor
  sentence) is assigned to one split by its hash, whatever the seeds. The three few-shot examples
  come from a reserved stream and are excluded from both splits. No list repeats a core question.
- With probability ``distractor_prob`` one irrelevant sentence with a number is inserted ("Her
  cousin lives 12 miles away."); it never changes the answer.

Left out on purpose: anything beyond whole numbers (fractions, decimals, percentages), more than
three steps, and any claim that these problems are as hard as GSM8K; they share its language and
solution format, not its difficulty.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from agent.errors import ConfigError
from agent.tasks.answers import extract_answer as _extract_answer
from agent.tasks.arith_scenarios import SCENARIOS, Draft, Reject
from agent.tasks.base import Problem
from agent.tasks.variants import HOUSE_INSTRUCTION, get_prompt

__all__ = ["INSTRUCTION", "STEP_WEIGHTS", "ArithTask", "Split", "generate_problems", "house_examples"]

Split = Literal["train", "test"]

INSTRUCTION = HOUSE_INSTRUCTION

STEP_WEIGHTS: dict[int, float] = {1: 0.40, 2: 0.35, 3: 0.25}
"""How often a problem needs 1, 2 or 3 steps (renormalized over the requested range)."""

_MAX_ATTEMPTS = 500
_POINTS_BACK = re.compile(r"\b(them|the rest|those)\b")
_SCENARIO_NAMES = tuple(sorted(SCENARIOS))

# (topic words none of which may occur in the story, sentence, number range, needs a named person)
_DISTRACTORS: tuple[tuple[str, str, tuple[int, int], bool], ...] = (
    ("brother", "{His} brother is {n} years old.", (8, 17), True),
    ("cousin mile", "{His} cousin lives {n} miles away.", (3, 40), True),
    ("birthday", "{His} birthday is in {n} days.", (3, 30), True),
    ("favorite", "{His} favorite number is {n}.", (2, 99), True),
    ("cat pet animal", "{His} cat is {n} years old.", (2, 15), True),
    ("window house", "{His} house has {n} windows.", (8, 20), True),
    ("neighbor cat pet animal leg", "{His} neighbor has {n} cats.", (2, 5), True),
    ("tree yard feet plant garden", "The oak tree in {his} yard is {n} feet tall.", (15, 60), True),
    ("aunt", "{His} aunt is {n} years old.", (30, 55), True),
    ("phone", "{His} phone has {n} apps on it.", (20, 80), True),
    ("store open", "The store opens at {n} a.m.", (7, 10), False),
    ("degree", "It is {n} degrees outside.", (50, 85), False),
    ("street house", "The street has {n} houses on it.", (10, 40), False),
    ("clock", "The clock on the wall shows {n} o'clock.", (1, 12), False),
    ("park", "The town has {n} parks.", (3, 12), False),
)


@dataclass(frozen=True, slots=True)
class _Made:
    """One generated problem before it becomes a ``Problem``."""

    core: str
    question: str
    solution: str
    answer: int
    steps: int
    scenario: str
    distractor: bool


def generate_problems(
    n: int,
    *,
    seed: int = 0,
    steps: tuple[int, int] = (1, 3),
    distractor_prob: float = 0.3,
    split: Split = "test",
) -> list[Problem]:
    """``n`` distinct word problems of ``split``; the same arguments always give the same list.

    Ids are ``arith-s{seed}-{i:05d}`` for the test split and ``arith-train-s{seed}-{i:05d}`` for
    the train split; ``meta`` holds ``steps``, ``scenario``, ``solution`` (the reference solution)
    and ``distractor`` (1 when an irrelevant sentence was added).
    """
    _check(n, steps, distractor_prob, split)
    excluded = {shot.core for shot in _few_shot_made()}
    prefix = "arith" if split == "test" else "arith-train"
    problems: list[Problem] = []
    for i in range(n):
        made = _make_distinct(f"{split}/{seed}/{i}", steps, distractor_prob, split, excluded)
        excluded.add(made.core)
        problems.append(
            Problem(
                id=f"{prefix}-s{seed}-{i:05d}",
                question=made.question,
                gold=str(made.answer),
                meta={
                    "steps": made.steps,
                    "scenario": made.scenario,
                    "solution": made.solution,
                    "distractor": int(made.distractor),
                },
            )
        )
    return problems


class ArithTask:
    """Generated arithmetic word problems, answered in the house solution style."""

    name = "arith"

    def __init__(
        self, *, steps: tuple[int, int] = (1, 3), distractor_prob: float = 0.3, prompt: str | None = None
    ) -> None:
        _check(0, steps, distractor_prob, "test")
        self.steps = steps
        self.distractor_prob = distractor_prob
        self.prompt = get_prompt(self.name, prompt)
        self.instruction = self.prompt.instruction

    def few_shot(self) -> Sequence[tuple[str, str]]:
        """The prompt variant's worked (question, solution) pairs (see ``agent.tasks.variants``)."""
        return self.prompt.examples

    def extract_answer(self, solution: str) -> str | None:
        """The final answer ``solution`` states (see ``agent.tasks.answers.extract_answer``)."""
        return _extract_answer(solution)

    def load(self, n: int, *, seed: int = 0, split: str = "test") -> list[Problem]:
        """``n`` problems of ``split`` ("train" or "test"); the two splits never share a question."""
        if split not in ("train", "test"):
            raise ConfigError(f"the arith task has splits 'train' and 'test', not {split!r}")
        chosen: Split = "train" if split == "train" else "test"
        return generate_problems(
            n, seed=seed, steps=self.steps, distractor_prob=self.distractor_prob, split=chosen
        )


def house_examples() -> tuple[tuple[str, str], ...]:
    """Three fixed generated examples (1, 2 and 3 steps, one with a distractor), never in a split."""
    return tuple((shot.question, shot.solution) for shot in _few_shot_made())


def _check(n: int, steps: tuple[int, int], distractor_prob: float, split: str) -> None:
    if n < 0:
        raise ConfigError(f"the number of problems must be at least 0, got {n}")
    lo, hi = steps
    if not 1 <= lo <= hi <= max(STEP_WEIGHTS):
        raise ConfigError(f"steps must be a range within 1..{max(STEP_WEIGHTS)}, got {steps}")
    if not 0.0 <= distractor_prob <= 1.0:
        raise ConfigError(f"distractor_prob must be in [0, 1], got {distractor_prob}")
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")


def _make_distinct(
    key: str, steps: tuple[int, int], distractor_prob: float, split: Split, excluded: set[str]
) -> _Made:
    """The first attempt under ``key`` that is valid, belongs to ``split`` and is not ``excluded``."""
    for attempt in range(_MAX_ATTEMPTS):
        rng = random.Random(f"arith/{key}/{attempt}")
        k = _draw_steps(rng, steps)
        made = _make(rng, k, rng.choice(_SCENARIO_NAMES), distractor_prob)
        if made is not None and _split_of(made.core) == split and made.core not in excluded:
            return made
    raise ConfigError(
        f"could not write a new distinct problem after {_MAX_ATTEMPTS} attempts; "
        f"ask for fewer problems or a wider steps range than {steps}"
    )


def _draw_steps(rng: random.Random, steps: tuple[int, int]) -> int:
    ks = list(range(steps[0], steps[1] + 1))
    return rng.choices(ks, weights=[STEP_WEIGHTS[k] for k in ks])[0]


def _make(rng: random.Random, k: int, scenario: str, distractor_prob: float) -> _Made | None:
    """One problem with ``k`` steps from ``scenario``, or None when its numbers did not fit."""
    draft = Draft(rng)
    try:
        SCENARIOS[scenario](draft, k)
    except Reject:
        return None
    if draft.n_steps != k or draft.answer is None or not draft.question:
        raise RuntimeError(f"scenario {scenario!r} is broken: it wrote {draft.n_steps} steps for k={k}")
    core = " ".join([*draft.body, draft.question])
    body = list(draft.body)
    add = rng.random() < distractor_prob
    if add:
        add = _insert_distractor(rng, draft, body)
    solution = "\n".join([*draft.lines, f"The answer is {draft.answer}."])
    question = " ".join([*body, draft.question])
    return _Made(core, question, solution, draft.answer, k, scenario, add)


def _insert_distractor(rng: random.Random, draft: Draft, body: list[str]) -> bool:
    """Insert one irrelevant sentence after the first one; False if none fits the story.

    It never goes right before a sentence that points back ("of them", "the rest"), so that it
    cannot steal the referent, and never mentions something the story is about.
    """
    text = " ".join([*draft.body, draft.question]).lower()
    person = draft.people[0] if draft.people and draft.people[0].name in draft.body[0] else None
    options = [d for d in _DISTRACTORS if not any(w in text for w in d[0].split()) and (person or not d[3])]
    following = [*body[1:], draft.question]
    places = [i + 1 for i, sentence in enumerate(following) if not _POINTS_BACK.search(sentence)]
    if not options or not places:
        return False
    _, sentence, (lo, hi), _ = rng.choice(options)
    his = person.his if person is not None else "their"
    filled = sentence.format(n=rng.randint(lo, hi), his=his, His=his.capitalize())
    body.insert(rng.choice(places), filled)
    return True


def _split_of(core: str) -> Split:
    """Which split a question belongs to, by its hash, so that train and test can never overlap."""
    return "test" if hashlib.sha256(core.encode()).digest()[0] % 2 == 0 else "train"


# One fixed example per step count, each from its own scenario; the last carries a distractor.
_FEW_SHOT_SPEC: tuple[tuple[str, int, float], ...] = (
    ("bus", 1, 0.0),
    ("baking", 2, 0.0),
    ("shopping", 3, 1.0),
)


@cache
def _few_shot_made() -> tuple[_Made, ...]:
    shots = []
    for scenario, k, distractor_prob in _FEW_SHOT_SPEC:
        for attempt in range(_MAX_ATTEMPTS):
            rng = random.Random(f"arith/few-shot/{scenario}/{attempt}")
            made = _make(rng, k, scenario, distractor_prob)
            if made is not None and made.distractor == (distractor_prob > 0):
                shots.append(made)
                break
    return tuple(shots)
