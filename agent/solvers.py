"""Solvers: greedy decoding, self-consistency (majority vote over samples) and ηMCTS.

A solver turns one problem into a ``Solution``: the chosen final answer, the reasoning that led to
it, every sample, the vote table and what it cost. Solving many problems at once (bounded
concurrency, progress, resumable output) is ``agent.evaluate``'s job; this module solves one.

ηMCTS needs critics. Until trained ones exist, ``build_critics`` offers critics that need no
training: ``arithmetic`` (re-computes every ``a op b = c`` claim; tool-checked PRM and ORM),
``generative`` (asks the policy model itself a yes/no question and reads p(yes)), ``mixed``
(generative value, arithmetic PRM and ORM) and ``none``.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from agent.clients import Endpoint, Sampling, Usage
from agent.clients.routing import current_routing_key, routed
from agent.critics.arithmetic import ArithmeticCritic, CheckedCritic
from agent.critics.base import Critic
from agent.critics.generative import GenerativeCritic
from agent.critics.shipped import shipped_verifier
from agent.critics.verifier import FeatureVerifier, load_weights
from agent.driver import SearchResult, SearchSetup, SharedBudget, run_search
from agent.errors import ConfigError, InputError, PromptTooLong
from agent.merging import Similarity, make_similarity
from agent.prompts import PromptFormat
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.search.options import OptionRule
from agent.search.tree import Tree
from agent.tasks.answers import normalize_number
from agent.tasks.base import Problem, Task

__all__ = [
    "CRITICS",
    "MAX_QUESTION_CHARS",
    "METHODS",
    "Method",
    "Solution",
    "SolverConfig",
    "build_critics",
    "check_question",
    "solve_problem",
    "solve_with",
    "vote",
]

Method = Literal["greedy", "sc", "rerank", "mcts"]
METHODS: tuple[Method, ...] = ("greedy", "sc", "rerank", "mcts")
CriticsKind = Literal["arithmetic", "verifier", "generative", "mixed", "trained", "checked", "none"]
CRITICS: tuple[CriticsKind, ...] = (
    "arithmetic",
    "verifier",
    "generative",
    "mixed",
    "trained",
    "checked",
    "none",
)
MAX_SAMPLES = 1024  # --n beyond this is a typo, not a budget
MAX_TOKENS = 32_768
MAX_QUESTION_CHARS = 20_000  # a word problem; longer text is refused before any request


def check_question(text: str, *, what: str = "the question") -> None:
    """InputError unless ``text`` is a plausible problem: not empty, at most MAX_QUESTION_CHARS
    characters, valid Unicode text without NUL bytes or other control characters (tabs and line
    breaks are fine)."""
    if not text.strip():
        raise InputError(f"{what} is empty; give the text of a problem")
    if len(text) > MAX_QUESTION_CHARS:
        raise InputError(f"{what} has {len(text):,} characters; at most {MAX_QUESTION_CHARS:,} are accepted")
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise InputError(f"{what} is not valid UTF-8 text (an undecodable byte at character {i})")
        if (ord(ch) < 32 and ch not in "\t\n\r") or ord(ch) == 127:
            raise InputError(f"{what} holds a control character ({ch!r} at character {i}); pass plain text")


@dataclass(frozen=True, slots=True)
class SolverConfig:
    """Algorithm knobs of the baseline solvers; stored with every result."""

    method: Method = "greedy"
    n: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 320
    seed: int | None = None
    search: SearchConfig = field(default_factory=SearchConfig)  # used by mcts only
    critics: CriticsKind = "arithmetic"  # used by mcts and rerank

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 1 <= self.n <= MAX_SAMPLES:
            raise ConfigError(f"--n must be between 1 and {MAX_SAMPLES}, got {self.n}")
        if not 1 <= self.max_tokens <= MAX_TOKENS:
            raise ConfigError(f"--max-tokens must be between 1 and {MAX_TOKENS}, got {self.max_tokens}")
        if not 0 <= self.temperature <= 10:
            raise ConfigError(f"--temperature must be between 0 and 10, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.critics not in CRITICS:
            raise ConfigError(f"unknown critics {self.critics!r}; choose one of {', '.join(CRITICS)}")

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        if self.method != "mcts":
            del data["search"]
        if self.method not in ("mcts", "rerank"):
            del data["critics"]
        return data


@dataclass(frozen=True, slots=True)
class Solution:
    answer: str | None
    text: str
    samples: tuple[str, ...] = ()
    votes: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)  # usage.seconds adds up request times
    seconds: float = 0.0  # wall time to solve this problem
    answers: dict[str, str | None] = field(default_factory=dict)  # each answer selector's pick (rerank, mcts)
    search: SearchResult | None = None  # the tree, for mcts


def vote(answers: list[str | None]) -> tuple[str | None, dict[str, int]]:
    """Majority answer (ties go to the answer seen first) and the vote table; None if nobody answered."""
    counts = Counter(normalize_number(a) for a in answers if a is not None)
    if not counts:
        return None, {}
    return counts.most_common(1)[0][0], dict(counts)


async def solve_with(
    policy: Policy,
    problem: Problem,
    *,
    task: Task,
    config: SolverConfig,
    shared: SharedBudget | None = None,
    on_tree: Callable[[Tree], None] | None = None,
) -> Solution:
    """``solve_problem`` with everything an opened ``Policy`` brings: its endpoint, prompt format,
    rollout endpoint and critic adapters."""
    return await solve_problem(
        problem,
        policy=policy.endpoint,
        task=task,
        fmt=policy.fmt,
        config=config,
        shared=shared,
        rollout=policy.rollout,
        critic_adapters=policy.critic_adapters,
        critic_temperatures=policy.critic_temperatures,
        verifier=policy.verifier,
        on_tree=on_tree,
    )


async def solve_problem(
    problem: Problem,
    *,
    policy: Endpoint,
    task: Task,
    fmt: PromptFormat,
    config: SolverConfig = SolverConfig(),
    shared: SharedBudget | None = None,
    rollout: Endpoint | None = None,
    critic_adapters: Mapping[str, str] | None = None,
    critic_temperatures: Mapping[str, float] | None = None,
    verifier: Path | None = None,
    on_tree: Callable[[Tree], None] | None = None,
) -> Solution:
    """Solve one problem with the configured method.

    For mcts: ``shared`` is one budget across many concurrent trees, ``rollout`` a cheaper endpoint
    for fast rollouts (default: the policy endpoint), ``on_tree`` an observer given the live tree
    (``agent.driver.run_search``).

    Every request made for the problem carries its id as the routing key (``agent.clients.routing``),
    so a router with sticky routing keeps the problem's prefixes on one worker; a key the caller set
    is kept.
    """
    check_question(problem.question, what=f"the question of problem {problem.id!r}")
    with _routing_scope(problem.id):
        try:
            critics: dict[str, Critic] = {}
            if config.method in ("mcts", "rerank"):
                adapters, temperatures = critic_adapters, critic_temperatures
                critics = build_critics(
                    config.critics,
                    policy=policy,
                    fmt=fmt,
                    adapters=adapters,
                    temperatures=temperatures,
                    verifier=verifier,
                )
            if config.method == "mcts":
                return await _solve_mcts(
                    problem,
                    policy=policy,
                    task=task,
                    fmt=fmt,
                    config=config,
                    shared=shared,
                    rollout=rollout,
                    critics=critics,
                    on_tree=on_tree,
                )
            solution = await _sample_and_vote(problem, policy=policy, task=task, fmt=fmt, config=config)
            if config.method == "rerank":
                return await _rerank(problem, solution, orm=critics.get("orm"), task=task, config=config)
            return solution
        except PromptTooLong as exc:
            raise InputError(
                f"problem {problem.id!r} does not fit the model's context window ({exc}); "
                "shorten the question or serve the model with a larger context"
            ) from exc


def _routing_scope(problem_id: str) -> contextlib.AbstractContextManager[None]:
    if current_routing_key() is not None:
        return contextlib.nullcontext()
    key = "".join(c if 32 <= ord(c) < 127 else "_" for c in problem_id)  # a header value: printable ASCII
    return routed(key or "problem")


async def _sample_and_vote(
    problem: Problem, *, policy: Endpoint, task: Task, fmt: PromptFormat, config: SolverConfig
) -> Solution:
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
    result = await policy.complete(prompt, sampling, n=1 if greedy else config.n)
    texts = tuple(c.text.strip() for c in result.completions)
    answers = [task.extract_answer(t) for t in texts]
    answer, votes = vote(answers)
    chosen = next(
        (t for t, a in zip(texts, answers, strict=True) if a is not None and normalize_number(a) == answer),
        texts[0],
    )
    return Solution(
        answer=answer,
        text=chosen,
        samples=texts,
        votes=votes,
        usage=result.usage,
        seconds=result.usage.seconds,
    )


def build_critics(
    kind: CriticsKind,
    *,
    policy: Endpoint,
    fmt: PromptFormat,
    adapters: Mapping[str, str] | None = None,
    temperatures: Mapping[str, float] | None = None,
    verifier: Path | None = None,
) -> dict[str, Critic]:
    """The critic set named ``kind``, keyed by role.

    ``verifier``: the feature verifier's weights (``agent.critics.verifier``; ``AGENT_VERIFIER``),
    by default the ones shipped with the package; it makes no model requests.

    ``trained``: generative critics served as LoRA adapters of the policy's server, one per role
    named in ``adapters`` (``AGENT_CRITIC_ADAPTERS``; with none, ``agent.runtime.open_policy`` fills
    in the shipped critic), e.g. ``{"orm": "0", "value": "0", "prm": "0"}`` for llama.cpp adapter
    indices, each scored at its role's calibration ``temperatures`` (1.0 where none is given).
    ``checked``: the trained critics capped by the arithmetic re-check (``CheckedCritic``).
    """
    if kind == "none":
        return {}
    if kind in ("trained", "checked"):
        if not adapters:
            raise ConfigError(
                'the trained critics need AGENT_CRITIC_ADAPTERS, e.g. {"orm": "0", "value": "0", "prm": "0"} '
                "(llama.cpp adapter indices, SGLang adapter names or OpenAI-style model names); the "
                "shipped critics serve the bundled model on the embedded server only"
            )
        temperatures = temperatures or {}
        trained: dict[str, Critic] = {
            role: GenerativeCritic(
                policy.with_adapter(ref),
                fmt,
                role=role,  # type: ignore[arg-type]
                temperature=temperatures.get(role, 1.0),
            )
            for role, ref in adapters.items()
        }
        if kind == "checked":
            return {role: CheckedCritic(critic) for role, critic in trained.items()}
        return trained
    if kind == "arithmetic":
        return {"prm": ArithmeticCritic("prm"), "orm": ArithmeticCritic("orm")}
    if kind == "verifier":
        weights = load_weights(verifier) if verifier is not None else shipped_verifier()
        return {role: FeatureVerifier(weights, role) for role in weights.roles}
    generative = {role: GenerativeCritic(policy, fmt, role=role) for role in ("value", "prm", "orm")}
    if kind == "generative":
        return dict(generative)
    return {"value": generative["value"], "prm": ArithmeticCritic("prm"), "orm": ArithmeticCritic("orm")}


async def _rerank(
    problem: Problem, sampled: Solution, *, orm: Critic | None, task: Task, config: SolverConfig
) -> Solution:
    """ORM re-rank@N: the sample the ORM scores highest; also the ORM-weighted vote and the majority."""
    if orm is None:
        raise ConfigError(f"rerank needs an ORM; --critics {config.critics} has none")
    rule = OptionRule(config.search.option)
    scores = [await orm.score(problem.question, _steps(text, rule.separator)) for text in sampled.samples]
    usage = sum((s.usage for s in scores), sampled.usage)
    answers = [task.extract_answer(t) for t in sampled.samples]
    best = max(range(len(scores)), key=lambda i: (answers[i] is not None, scores[i].p))
    weighted: dict[str, float] = {}
    for answer, score in zip(answers, scores, strict=True):
        if answer is not None:
            key = normalize_number(answer)
            weighted[key] = weighted.get(key, 0.0) + score.p
    chosen = answers[best]
    rerank_answer = normalize_number(chosen) if chosen is not None else None
    orm_vote = max(weighted, key=lambda a: weighted[a]) if weighted else None
    return replace(
        sampled,
        answer=rerank_answer,
        text=sampled.samples[best],
        usage=usage,
        answers={"rerank": rerank_answer, "orm_vote": orm_vote, "majority": sampled.answer},
    )


def _steps(text: str, separator: str) -> list[str]:
    return [step.strip() for step in text.split(separator) if step.strip()]


async def _solve_mcts(
    problem: Problem,
    *,
    policy: Endpoint,
    task: Task,
    fmt: PromptFormat,
    config: SolverConfig,
    shared: SharedBudget | None,
    rollout: Endpoint | None,
    critics: dict[str, Critic],
    on_tree: Callable[[Tree], None] | None = None,
) -> Solution:
    search = config.search
    similarity: Similarity | None = None
    if search.merge == "judge":
        similarity = make_similarity("judge", endpoint=policy, fmt=fmt)
    elif search.merge != "none":
        threshold = {} if search.merge_threshold is None else {"threshold": search.merge_threshold}
        similarity = make_similarity(search.merge, **threshold)
    setup = SearchSetup(
        policy=policy, fmt=fmt, task=task, similarity=similarity, rollout_policy=rollout, **critics
    )  # type: ignore[arg-type]
    result = await run_search(problem, setup=setup, config=search, shared=shared, on_tree=on_tree)
    answers = [n.answer for n in result.tree.terminals()]
    _, votes = vote(answers)
    return Solution(
        answer=result.answer,
        text=result.text,
        votes=votes,
        usage=result.usage,
        seconds=result.seconds,
        answers=dict(result.answers),
        search=result,
    )
