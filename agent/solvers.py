"""Baseline solvers: greedy decoding and self-consistency (majority vote over sampled solutions).

A solver turns one problem into a ``Solution``: the chosen final answer, the reasoning that led to
it, every sample, the vote table and what it cost. Solving many problems at once (bounded
concurrency, progress, resumable output) is ``agent.evaluate``'s job; this module solves one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

from agent.clients import Endpoint, Sampling, Usage
from agent.errors import ConfigError, InputError, PromptTooLong
from agent.prompts import PromptFormat
from agent.tasks.answers import normalize_number
from agent.tasks.base import Problem, Task

__all__ = ["METHODS", "Method", "Solution", "SolverConfig", "solve_problem", "vote"]

Method = Literal["greedy", "sc"]
METHODS: tuple[Method, ...] = ("greedy", "sc")


@dataclass(frozen=True, slots=True)
class SolverConfig:
    """Algorithm knobs of the baseline solvers; stored with every result."""

    method: Method = "greedy"
    n: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 320
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.n < 1:
            raise ConfigError(f"--n must be at least 1, got {self.n}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Solution:
    answer: str | None
    text: str
    samples: tuple[str, ...] = ()
    votes: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)


def vote(answers: list[str | None]) -> tuple[str | None, dict[str, int]]:
    """Majority answer (ties go to the answer seen first) and the vote table; None if nobody answered."""
    counts = Counter(normalize_number(a) for a in answers if a is not None)
    if not counts:
        return None, {}
    return counts.most_common(1)[0][0], dict(counts)


async def solve_problem(
    problem: Problem,
    *,
    policy: Endpoint,
    task: Task,
    fmt: PromptFormat,
    config: SolverConfig = SolverConfig(),
) -> Solution:
    """Solve one problem with the configured baseline method."""
    if not problem.question.strip():
        raise InputError(f"problem {problem.id!r} has an empty question; give the text of a problem")
    prompt = fmt.render(
        instruction=task.instruction, examples=task.few_shot(), question=problem.question.strip()
    )
    greedy = config.method == "greedy"
    sampling = Sampling(
        max_tokens=config.max_tokens,
        temperature=0.0 if greedy else config.temperature,
        top_p=1.0 if greedy else config.top_p,
        stop=fmt.stop,
        seed=config.seed,
    )
    try:
        result = await policy.complete(prompt, sampling, n=1 if greedy else config.n)
    except PromptTooLong as exc:
        raise InputError(
            f"problem {problem.id!r} does not fit the model's context window ({exc}); "
            "shorten the question or serve the model with a larger context"
        ) from exc
    texts = tuple(c.text.strip() for c in result.completions)
    answers = [task.extract_answer(t) for t in texts]
    answer, votes = vote(answers)
    chosen = next(
        (t for t, a in zip(texts, answers, strict=True) if a is not None and normalize_number(a) == answer),
        texts[0],
    )
    return Solution(answer=answer, text=chosen, samples=texts, votes=votes, usage=result.usage)
