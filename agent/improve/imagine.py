"""Imagination (design §9, step 1): new training prompts with known answers, made from seed problems.

Two MetaMath-style forms, both keeping a verifiable gold answer:

- **Rephrasings** (``{seed.id}/reph{k}``): the policy rewrites the seed question in other words,
  few-shot (a fixed instruction and two worked examples, so the prompt prefix is the same for every
  seed); gold = the seed's gold. A rephrasing is kept only if it ends with a question mark, is
  0.5x-2x the seed's length, has exactly the seed's set of digit-numbers (words such as "twice" are
  not read), and is not a near-duplicate of any seed, ``existing`` prompt or prompt kept before it.
- **Backward questions** (``{seed.id}/back{k}``, MetaMath's FOBAR): one number N of the seed
  question becomes "X" and the seed's answer is stated as a fact ("If we know the answer to the
  above question is 12, what is the value of unknown variable X?"); gold = N. Built by template,
  no model call. N must appear exactly once in the question, stand alone (not "10th", "x2") and,
  when the seed has a reference solution (``meta["solution"]``, as arith and GSM8K seeds do),
  appear in it: masking a distractor ("The street has X houses") would make X unknowable. Which N
  is drawn from ``random.Random(f"{config.seed}:{seed.id}")``.

Near-duplicate means the same set of numbers and a normalized edit distance <= ``dedup_threshold``:
texts that differ in a number are different problems (seeds of one arith template differ only in
names and numbers, and so do their backward questions). Grouping by numbers also keeps it cheap.

Every attempt ends as a kept ``Problem`` (meta: ``source``, ``kind``) or a ``Rejected`` with a
reason. Model calls run concurrently (``concurrency`` seeds at most); validation and deduplication
then run in seed order, so the result does not depend on which call finished first. ``mix`` blends
real and synthetic prompts at a fixed synthetic fraction.

Left out on purpose: model-written *variations with new numbers* (their answers are unknown, and an
unverifiable gold would teach the policy wrong answers). Recomputing the reference solution of an
arith seed (``meta["solution"]``) with substituted numbers would make them verifiable: future work.
Also left out: numbers written as words, LaTeX-aware masking (backward questions suit word problems
with plain numbers), and a check that X is unique: when the answer is not one-to-one in N (a
rounded-up "how many weeks"), several values of X fit and the gold N is only one of them.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import structlog

from agent.clients import Endpoint, Sampling, Usage
from agent.errors import ConfigError, EndpointError, EndpointUnreachable, single_error
from agent.prompts import PromptFormat
from agent.search.distance import find_duplicate
from agent.tasks.answers import normalize_number
from agent.tasks.base import Problem

__all__ = [
    "REPHRASE_EXAMPLES",
    "REPHRASE_INSTRUCTION",
    "ImagineConfig",
    "ImagineResult",
    "Kind",
    "Reason",
    "Rejected",
    "imagine",
    "mix",
]

log = structlog.get_logger(__name__)

Kind = Literal["rephrase", "backward"]
Reason = Literal[
    "endpoint_error",  # the model call failed (the error message is the text)
    "not_parsable",  # nothing left after removing labels and quotes
    "truncated",  # the rephrasing hit max_tokens
    "no_question",  # it does not end with a question mark
    "too_short",  # shorter than length_range[0] x the seed
    "too_long",  # longer than length_range[1] x the seed
    "numbers_changed",  # its set of numbers differs from the seed's
    "near_duplicate",  # same numbers as a seed, existing or kept prompt, within dedup_threshold
    "no_number",  # no (further) standalone number to mask
    "ambiguous_number",  # no (further) number to mask, and some appear more than once
    "unused_number",  # no (further) number to mask that the seed's reference solution uses
    "variable_taken",  # the question already uses X
]

REPHRASE_INSTRUCTION = (
    "Rewrite the question in different words. Keep every number and every fact, so that the answer "
    "stays the same. Reply with the rewritten question only, ending with a question mark."
)
REPHRASE_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "A baker makes 24 muffins and packs them in boxes of 6. How many boxes does she fill?",
        "If a baker bakes 24 muffins and puts 6 muffins in each box, how many boxes can she fill?",
    ),
    (
        "Liam reads 15 pages on Monday and 3 times as many pages on Tuesday. How many pages does he "
        "read on the two days together?",
        "On Monday Liam reads 15 pages, and on Tuesday he reads 3 times as many pages as on Monday. "
        "What is the total number of pages he reads over these two days?",
    ),
)
_BACKWARD = (
    "{question} If we know the answer to the above question is {answer}, "
    "what is the value of unknown variable X?"
)

_NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_LABEL_RE = re.compile(r"^(?:rewritten|rephrased)?\s*(?:question)?\s*:\s*", re.IGNORECASE)
_X_RE = re.compile(r"\bX\b")


@dataclass(frozen=True, slots=True)
class ImagineConfig:
    """Imagination knobs (algorithm settings, stored with the data they made)."""

    # rephrasings (one model call per seed, n = rephrasings_per_seed)
    rephrasings_per_seed: int = 2
    temperature: float = 0.9
    max_tokens: int = 160
    length_range: tuple[float, float] = (0.5, 2.0)  # allowed length, as multiples of the seed's
    # backward questions (template, no model call)
    backward_per_seed: int = 1
    backward_ratio: float = 1.0  # share of seeds that get backward questions
    # both
    dedup_threshold: float = 0.15
    concurrency: int = 8  # seeds in flight
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rephrasings_per_seed < 0 or self.backward_per_seed < 0:
            raise ConfigError("rephrasings_per_seed and backward_per_seed must be >= 0")
        if self.temperature < 0 or self.max_tokens < 1 or self.concurrency < 1:
            raise ConfigError("need temperature >= 0, max_tokens >= 1 and concurrency >= 1")
        if not (0.0 <= self.backward_ratio <= 1.0 and 0.0 <= self.dedup_threshold <= 1.0):
            raise ConfigError("backward_ratio and dedup_threshold must be in [0, 1]")
        if not 0.0 < self.length_range[0] <= 1.0 <= self.length_range[1]:
            raise ConfigError(f"length_range must be (lo <= 1 <= hi, lo > 0), got {self.length_range}")


@dataclass(frozen=True, slots=True)
class Rejected:
    """One attempt that was dropped, and why."""

    seed_id: str
    kind: Kind
    text: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class ImagineResult:
    problems: list[Problem]
    rejected: list[Rejected]
    usage: Usage = field(default_factory=Usage)

    def reasons(self) -> dict[str, int]:
        """How many attempts were dropped for each reason."""
        return dict(Counter(r.reason for r in self.rejected))


async def imagine(
    seeds: Sequence[Problem],
    *,
    policy: Endpoint,
    fmt: PromptFormat,
    config: ImagineConfig = ImagineConfig(),
    existing: Sequence[str] = (),
) -> ImagineResult:
    """Rephrasings and backward questions of ``seeds`` (which must have gold answers).

    Raises ``ConfigError`` for a seed without gold and ``EndpointUnreachable`` when the policy is
    gone; any other failed call drops that seed's rephrasings as ``endpoint_error``.
    """
    missing = [s.id for s in seeds if s.gold is None]
    if missing:
        raise ConfigError(f"imagination needs seeds with gold answers; these have none: {missing[:5]}")
    sampled = await _sample_all(seeds, policy=policy, fmt=fmt, config=config)
    pool: dict[frozenset[str], list[str]] = {}
    for text in [*(s.question for s in seeds), *existing]:
        pool.setdefault(_numbers(text), []).append(text)
    problems: list[Problem] = []
    rejected: list[Rejected] = []
    for seed, outcome in zip(seeds, sampled, strict=True):
        rng = random.Random(f"{config.seed}:{seed.id}")
        attempts = _rephrasings(seed, outcome, config)
        if rng.random() < config.backward_ratio:
            attempts += _backward_attempts(seed, rng, config.backward_per_seed)
        for attempt in attempts:
            reason = attempt.reason or _duplicate(attempt.text, pool, config.dedup_threshold)
            if reason is not None:
                rejected.append(Rejected(seed.id, attempt.kind, attempt.text, reason))
                continue
            pool.setdefault(_numbers(attempt.text), []).append(attempt.text)
            meta: dict[str, str | int | float] = {"source": seed.id, "kind": attempt.kind}
            problems.append(Problem(attempt.id, attempt.text, gold=attempt.gold, meta=meta))
    usage = sum((o.usage for o in sampled if isinstance(o, _Sampled)), Usage())
    log.info("imagination_done", seeds=len(seeds), kept=len(problems), rejected=len(rejected))
    return ImagineResult(problems, rejected, usage)


def mix(real: Sequence[Problem], synthetic: Sequence[Problem], *, ratio: float, seed: int) -> list[Problem]:
    """All of ``real`` plus a sample of ``synthetic`` making up ``ratio`` of the result, shuffled.

    The synthetic count is ``round(ratio * len(real) / (1 - ratio))``; the same arguments always
    give the same list. Raises ``ConfigError`` when ``ratio`` is outside [0, 1) or there are not
    enough synthetic problems for it.
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"ratio (the synthetic share) must be in [0, 1), got {ratio}")
    want = round(ratio * len(real) / (1.0 - ratio))
    if want > len(synthetic):
        raise ConfigError(f"ratio {ratio} needs {want} synthetic problems, only {len(synthetic)} given")
    rng = random.Random(f"mix:{seed}")
    mixed = [*real, *rng.sample(list(synthetic), want)]
    rng.shuffle(mixed)
    return mixed


@dataclass(frozen=True, slots=True)
class _Sampled:
    """One seed's rephrasing completions: (text, hit max_tokens) pairs, and what they cost."""

    texts: tuple[tuple[str, bool], ...]
    usage: Usage


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One candidate: ``reason`` is set when it already failed validation."""

    id: str
    kind: Kind
    text: str
    gold: str | None
    reason: Reason | None = None


async def _sample_all(
    seeds: Sequence[Problem], *, policy: Endpoint, fmt: PromptFormat, config: ImagineConfig
) -> list[_Sampled | EndpointError]:
    """Each seed's rephrasing completions (or the error that stopped them), in seed order."""
    results: list[_Sampled | EndpointError] = [_Sampled((), Usage())] * len(seeds)
    if config.rephrasings_per_seed == 0:
        return results
    limiter = anyio.CapacityLimiter(config.concurrency)
    sampling = Sampling(
        max_tokens=config.max_tokens, temperature=config.temperature, stop=(*fmt.stop, "\n\n")
    )

    async def one(i: int, seed: Problem) -> None:
        prompt = fmt.render(
            instruction=REPHRASE_INSTRUCTION, examples=REPHRASE_EXAMPLES, question=seed.question
        )
        async with limiter:
            try:
                result = await policy.complete(prompt, sampling, n=config.rephrasings_per_seed)
            except EndpointUnreachable:
                raise  # the server is gone: every other seed would fail the same way
            except EndpointError as exc:
                log.warning("rephrasing_failed", problem_id=seed.id, error=str(exc))
                results[i] = exc
                return
        texts = tuple((c.text, c.finish_reason == "length") for c in result.completions)
        results[i] = _Sampled(texts, result.usage)

    try:
        async with anyio.create_task_group() as tg:
            for i, seed in enumerate(seeds):
                tg.start_soon(one, i, seed)
    except BaseExceptionGroup as group:
        raise single_error(group) from None
    return results


def _rephrasings(seed: Problem, outcome: _Sampled | EndpointError, config: ImagineConfig) -> list[_Attempt]:
    if isinstance(outcome, EndpointError):
        return [
            _Attempt(f"{seed.id}/reph{k}", "rephrase", str(outcome), None, "endpoint_error")
            for k in range(config.rephrasings_per_seed)
        ]
    attempts: list[_Attempt] = []
    for k, (raw, truncated) in enumerate(outcome.texts):
        text = _clean(raw)
        reason = _rephrasing_problem(seed.question, text, truncated, config.length_range)
        attempts.append(_Attempt(f"{seed.id}/reph{k}", "rephrase", text or raw, seed.gold, reason))
    return attempts


def _rephrasing_problem(
    original: str, text: str, truncated: bool, length_range: tuple[float, float]
) -> Reason | None:
    """Why ``text`` is not a valid rephrasing of ``original`` (duplicates aside), or None."""
    checks: tuple[tuple[bool, Reason], ...] = (
        (not text, "not_parsable"),
        (truncated, "truncated"),
        (not text.endswith("?"), "no_question"),
        (len(text) < length_range[0] * len(original), "too_short"),
        (len(text) > length_range[1] * len(original), "too_long"),
        (_numbers(text) != _numbers(original), "numbers_changed"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _backward_attempts(seed: Problem, rng: random.Random, count: int) -> list[_Attempt]:
    """``count`` backward questions of ``seed``, masking distinct numbers drawn by ``rng``."""
    question = seed.question
    matches = list(_NUMBER_RE.finditer(question))
    times = Counter(normalize_number(m.group()) for m in matches)
    alone = [m for m in matches if times[normalize_number(m.group())] == 1 and _stands_alone(question, m)]
    solution = seed.meta.get("solution")
    used = _numbers(solution) if isinstance(solution, str) else None
    usable = [m for m in alone if used is None or normalize_number(m.group()) in used]
    chosen = rng.sample(usable, min(count, len(usable)))
    shortfall: Reason = "unused_number" if alone else "no_number"  # why there are too few to mask
    if _X_RE.search(question):
        chosen, shortfall = [], "variable_taken"
    elif max(times.values(), default=0) > 1:
        shortfall = "ambiguous_number"
    attempts: list[_Attempt] = []
    for k in range(count):
        id_ = f"{seed.id}/back{k}"
        if k < len(chosen):
            masked = question[: chosen[k].start()] + "X" + question[chosen[k].end() :]
            text = _BACKWARD.format(question=masked.strip(), answer=normalize_number(seed.gold or ""))
            attempts.append(_Attempt(id_, "backward", text, normalize_number(chosen[k].group())))
        else:
            attempts.append(_Attempt(id_, "backward", question, None, shortfall))
    return attempts


def _duplicate(text: str, pool: dict[frozenset[str], list[str]], threshold: float) -> Reason | None:
    """``near_duplicate`` if a pooled text with the same numbers is within ``threshold`` of ``text``."""
    same_numbers = pool.get(_numbers(text), [])
    return "near_duplicate" if find_duplicate(text, same_numbers, threshold=threshold) is not None else None


def _stands_alone(text: str, match: re.Match[str]) -> bool:
    """Whether the number is a word of its own ("$12", "12%"), not part of one ("10th", "x2", ".5")."""
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return not (before.isalnum() or before in "_^.") and not (after.isalnum() or after in "_^")


def _numbers(text: str) -> frozenset[str]:
    return frozenset(normalize_number(m.group()) for m in _NUMBER_RE.finditer(text))


def _clean(raw: str) -> str:
    """The completion as one line, without a leading "Rewritten question:" label or quotes."""
    return _LABEL_RE.sub("", " ".join(raw.split()), count=1).strip().strip("\"'*").strip()
