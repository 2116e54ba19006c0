"""The async ηMCTS driver: runs one tree's simulations concurrently against real endpoints.

Each tree runs ``config.workers`` simulations at once. A simulation is: ``tree.select()`` (sync:
marks its path with virtual loss, reserves an expansion), then awaits the policy (one option, with
re-sampling of near-duplicates), the critics and the fast rollouts, then applies the result with one
synchronous ``tree.expand`` / ``tree.merge`` call. Nothing awaits between reading and writing the
tree, so it needs no locks. A failed request abandons only its own simulation (``release`` with
``completed=False``); the tree stays consistent and the search goes on.

Prefix reuse: every prompt is the task prompt plus the steps so far, so a child's prompt extends its
parent's byte for byte, and the rollouts of a node go out as one request with ``n`` completions.

Budgets: simulations (with a minimum number of terminals, capped), completion tokens, a deadline
(the best answer so far is returned), and an optional ``SharedBudget`` across many trees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio
import structlog

from agent.clients import Completion, Endpoint, Sampling, Usage
from agent.clients.endpoint import URGENT, request_priority
from agent.critics import CriticWeights, combine
from agent.critics.base import Critic, CriticScore
from agent.errors import EndpointRejected, single_error
from agent.merging import Similarity
from agent.prompts import PromptFormat
from agent.search.config import SearchConfig
from agent.search.final import Choice, all_choices
from agent.search.options import OptionRule, has_final_answer
from agent.search.tree import Ticket, Tree
from agent.tasks.answers import normalize_number
from agent.tasks.base import Problem, Task

__all__ = ["SearchResult", "SearchSetup", "SharedBudget", "run_search"]

log = structlog.get_logger(__name__)

StopReason = Literal["budget", "tokens", "deadline", "shared_budget", "exhausted"]


@dataclass
class SharedBudget:
    """One budget for many concurrent trees: total policy completion tokens and simulations."""

    max_tokens: int | None = None
    max_simulations: int | None = None
    tokens: int = 0
    simulations: int = 0

    @property
    def exhausted(self) -> bool:
        return (self.max_tokens is not None and self.tokens >= self.max_tokens) or (
            self.max_simulations is not None and self.simulations >= self.max_simulations
        )


@dataclass(frozen=True)
class SearchSetup:
    """What a search talks to. A critic that is None, or whose weight is 0, is never called."""

    policy: Endpoint
    fmt: PromptFormat
    task: Task
    value: Critic | None = None
    prm: Critic | None = None
    orm: Critic | None = None
    rollout_policy: Endpoint | None = None  # default: the policy endpoint
    similarity: Similarity | None = None


@dataclass
class SearchResult:
    answer: str | None
    text: str
    choice: Choice
    answers: dict[str, str | None]  # the answer of each of the four final selectors
    tree: Tree
    stopped: StopReason
    seconds: float
    policy_usage: Usage = field(default_factory=Usage)  # expansions, rollouts and final completions
    critic_usage: Usage = field(default_factory=Usage)
    rollout_usage: Usage = field(default_factory=Usage)  # the rollouts' part of policy_usage
    failed_simulations: int = 0  # simulations dropped because the server rejected a request
    critic_missing: int = 0

    @property
    def usage(self) -> Usage:
        return self.policy_usage + self.critic_usage


class _Search:
    def __init__(
        self, problem: Problem, setup: SearchSetup, config: SearchConfig, shared: SharedBudget | None
    ):
        self.problem = problem
        self.setup = setup
        self.config = config
        self.shared = shared
        self.tree = Tree(problem.question, config)
        self.rule = OptionRule(config.option)
        self.base_prompt = setup.fmt.render(
            instruction=setup.task.instruction,
            examples=setup.task.few_shot(),
            question=problem.question.strip(),
        )
        self.policy_usage = Usage()
        self.critic_usage = Usage()
        self.rollout_usage = Usage()
        self.failed = 0
        self.missing = 0
        self.stopped: StopReason = "budget"
        self._changed = anyio.Event()

    # --- budget ----------------------------------------------------------------------------------

    def _stop_reason(self) -> StopReason | None:
        c, tree = self.config, self.tree
        started = tree.simulations + tree.in_flight
        if self.shared is not None and self.shared.exhausted:
            return "shared_budget"
        if c.max_tokens is not None and self._projected_tokens() >= c.max_tokens:
            return "tokens"
        if started >= c.max_simulations:
            return "budget"
        if started >= c.simulations and tree.terminal_count >= c.min_terminals:
            return "budget"
        return None

    def _projected_tokens(self) -> float:
        """Completion tokens spent, plus what the simulations in flight will spend at the mean so far:
        a tree stops starting simulations once those would reach its token budget, instead of
        overshooting it by ``workers`` simulations."""
        spent = self.policy_usage.completion_tokens
        if not self.tree.simulations or not self.tree.in_flight:
            return spent
        return spent + self.tree.in_flight * spent / self.tree.simulations

    # --- the simulation loop ---------------------------------------------------------------------

    async def run(self) -> None:
        if self.setup.value is not None and self.config.w_value > 0:
            score = await self._critic(self.setup.value, [])
            self.tree.root.value = score.p
        with anyio.move_on_after(self.config.deadline if self.config.deadline else math.inf) as scope:
            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.config.workers):
                        tg.start_soon(self._worker)
            except BaseExceptionGroup as group:
                raise single_error(group) from None
        if scope.cancelled_caught:
            self.stopped = "deadline"

    async def _worker(self) -> None:
        while (reason := self._stop_reason()) is None:
            ticket = self.tree.select()
            if ticket is None:
                if self.tree.in_flight == 0:
                    self.stopped = "exhausted"
                    return
                await self._changed.wait()
                continue
            applied = False
            try:
                if ticket.kind == "revisit":
                    self.tree.revisit(ticket)
                    applied = True
                    await anyio.lowlevel.checkpoint()
                else:
                    applied = await self._expand(ticket)
            except EndpointRejected as exc:
                # The server refused this one request (say, a path grown past the context): the
                # simulation is dropped and the search goes on. Errors that outlived the retry
                # layer (a failing server) end the search: a tree missing simulations would be
                # another search's result.
                self.failed += 1
                log.warning("simulation_failed", problem_id=self.problem.id, error=str(exc))
            finally:
                if not applied:
                    self.tree.release(ticket, completed=False)
                if self.shared is not None and applied:
                    self.shared.simulations += ticket.slots
                self._changed.set()
                self._changed = anyio.Event()
        self.stopped = reason

    async def _expand(self, ticket: Ticket) -> bool:
        if ticket.slots > 1:
            return await self._expand_siblings(ticket)
        tree, config = self.tree, self.config
        node = tree.nodes[ticket.node]
        steps = tree.steps(node.id)
        to_the_end = node.depth + 1 >= config.max_depth
        greedy = config.first_child_greedy and not node.children and node.pending == 1
        siblings = [tree.nodes[i].option for i in node.children]
        tokens = 0
        for attempt in range(config.resample + 1):
            completion, used = await self._generate(
                steps, greedy=greedy and attempt == 0, to_the_end=to_the_end
            )
            tokens += used
            option = self.rule.clean(completion.text)
            duplicate = await self._duplicate_of(option, siblings)
            if duplicate is None:
                break
        if duplicate is not None:
            target = tree.nodes[node.children[duplicate]]
            tree.merge(ticket, into=target.id, option=option, value=target.value or 0.0, tokens=tokens)
            return True
        terminal = _is_terminal(completion, option, to_the_end=to_the_end)
        if not option and not terminal:
            tree.release(ticket)  # an empty step: count the simulation, add nothing
            return True
        scores, rollout_tokens = await self._evaluate(
            [*steps, option], terminal=terminal, depth=node.depth + 1
        )
        self._add_child(ticket, steps, option, completion, terminal, scores, tokens + rollout_tokens)
        return True

    def _add_child(
        self,
        ticket: Ticket,
        steps: Sequence[str],
        option: str,
        completion: Completion,
        terminal: bool,
        scores: dict[str, float],
        tokens: int,
        *,
        release: bool = True,
    ) -> int:
        """Add a scored option as a child of ``ticket.node`` (with its answer, if terminal); its id."""
        answer = self.setup.task.extract_answer(self.rule.join([*steps, option])) if terminal else None
        return self.tree.expand(
            ticket,
            option=option,
            value=self._mix(scores),
            terminal=terminal,
            answer=normalize_number(answer) if answer is not None else None,
            scores=scores,
            prior=_prior(completion),
            tokens=tokens,
            release=release,
        ).id

    async def _expand_siblings(self, ticket: Ticket) -> bool:
        """Fill every slot of ``ticket`` from one request with ``n`` completions: the new options
        become children (scored concurrently), near-duplicates are merged into their sibling."""
        tree, config = self.tree, self.config
        node = tree.nodes[ticket.node]
        steps = tree.steps(node.id)
        to_the_end = node.depth + 1 >= config.max_depth
        result = await self.setup.policy.complete(
            self.base_prompt + self.rule.join(steps),
            self._sampling(greedy=False, to_the_end=to_the_end, used=0),
            n=ticket.slots,
        )
        self._spend(result.usage)
        share = result.usage.completion_tokens // max(1, len(result.completions))
        siblings = [tree.nodes[i].option for i in node.children]
        new: list[tuple[str, Completion, bool]] = []  # (option, completion, terminal)
        merges: list[tuple[str, int]] = []  # (option, index into siblings: existing, then new)
        for completion in result.completions:
            option = self.rule.clean(completion.text)
            duplicate = await self._duplicate_of(option, siblings)
            if duplicate is not None:
                merges.append((option, duplicate))
                continue
            terminal = _is_terminal(completion, option, to_the_end=to_the_end)
            if option or terminal:
                new.append((option, completion, terminal))
                siblings.append(option)
        scored: list[tuple[dict[str, float], int]] = [({}, 0)] * len(new)

        async def evaluate(i: int, option: str, terminal: bool) -> None:
            scored[i] = await self._evaluate([*steps, option], terminal=terminal, depth=node.depth + 1)

        async with anyio.create_task_group() as tg:
            for i, (option, _, terminal) in enumerate(new):
                tg.start_soon(evaluate, i, option, terminal)
        # Apply everything at once (no awaits from here on), then release the ticket's slots.
        children = list(node.children)
        for (option, completion, terminal), (scores, rollout_tokens) in zip(new, scored, strict=True):
            tokens = share + rollout_tokens
            children.append(
                self._add_child(ticket, steps, option, completion, terminal, scores, tokens, release=False)
            )
        for option, index in merges:
            target = tree.nodes[children[index]]
            tree.merge(
                ticket, into=target.id, option=option, value=target.value or 0.0, tokens=share, release=False
            )
        tree.release(ticket)
        return True

    def _sampling(self, *, greedy: bool, to_the_end: bool, used: int) -> Sampling:
        """Sampling for an option (or, at max depth, the rest of the solution) with ``used`` tokens
        of it already generated."""
        config = self.config
        stop = self.setup.fmt.stop if to_the_end else (*self.setup.fmt.stop, *self.rule.stop)
        budget = config.final_max_tokens if to_the_end else config.option_max_tokens
        return Sampling(
            max_tokens=max(1, budget - used),
            temperature=0.0 if greedy else config.temperature,
            top_p=1.0 if greedy else config.top_p,
            stop=stop,
            logprobs=1 if config.selection == "puct" else None,
            seed=config.seed,
        )

    async def _generate(
        self, steps: Sequence[str], *, greedy: bool, to_the_end: bool
    ) -> tuple[Completion, int]:
        """One option, or at max depth the rest of the solution (a paragraph may take several calls)."""
        budget = self.config.final_max_tokens if to_the_end else self.config.option_max_tokens
        text, used = "", 0
        while True:
            sampling = self._sampling(greedy=greedy, to_the_end=to_the_end, used=used)
            result = await self.setup.policy.complete(
                self.base_prompt + self.rule.join(steps) + text, sampling
            )
            self._spend(result.usage)
            completion = result.completions[0]
            used += result.usage.completion_tokens
            text += completion.text
            more = self.rule.needs_more(text, stopped_at_separator=completion.stop_matched in self.rule.stop)
            if not more or used >= budget:
                return Completion(
                    text, completion.finish_reason, completion.stop_matched, completion.logprobs
                ), used
            text += self.rule.separator

    async def _duplicate_of(self, option: str, siblings: list[str]) -> int | None:
        if self.setup.similarity is None or self.config.merge == "none" or not siblings or not option:
            return None
        return await self.setup.similarity.duplicate_of(option, siblings)

    # --- critics ---------------------------------------------------------------------------------

    async def _evaluate(
        self, trajectory: list[str], *, terminal: bool, depth: int
    ) -> tuple[dict[str, float], int]:
        """Critic scores of a new node (value, PRM, ORM or rollout mean), called concurrently."""
        setup, config = self.setup, self.config
        scores: dict[str, float] = {}
        rollout_tokens = 0

        async def score(name: str, critic: Critic) -> None:
            scores[name] = (await self._critic(critic, trajectory)).p

        async def rollouts() -> None:
            nonlocal rollout_tokens
            scores["orm"], rollout_tokens = await self._rollouts(trajectory)

        with request_priority(URGENT):  # a node waits for these scores: they go first
            async with anyio.create_task_group() as tg:
                if setup.value is not None and config.w_value > 0:
                    tg.start_soon(score, "value", setup.value)
                if setup.prm is not None and config.w_prm > 0:
                    tg.start_soon(score, "prm", setup.prm)
                if setup.orm is not None and config.w_orm > 0:
                    if terminal:
                        tg.start_soon(score, "orm", setup.orm)
                    elif config.rollouts > 0 and depth >= config.rollout_min_depth:
                        tg.start_soon(rollouts)
        return scores, rollout_tokens

    async def _rollouts(self, trajectory: list[str]) -> tuple[float, int]:
        """Complete the solution ``rollouts`` times with the (cheaper) rollout policy; mean ORM score."""
        assert self.setup.orm is not None
        policy = self.setup.rollout_policy or self.setup.policy
        sampling = Sampling(
            max_tokens=self.config.rollout_max_tokens,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            stop=self.setup.fmt.stop,
        )
        prompt = self.base_prompt + self.rule.join(trajectory)
        result = await policy.complete(prompt, sampling, n=self.config.rollouts)
        self._spend(result.usage)
        self.rollout_usage += result.usage
        completed = [[*trajectory, *_split(c.text, self.rule.separator)] for c in result.completions]
        critic_scores: list[float] = [0.0] * len(completed)

        async def one(i: int, steps: list[str]) -> None:
            critic_scores[i] = (await self._critic(self.setup.orm, steps)).p  # type: ignore[arg-type]

        async with anyio.create_task_group() as tg:
            for i, steps in enumerate(completed):
                tg.start_soon(one, i, steps)
        return sum(critic_scores) / len(critic_scores), result.usage.completion_tokens

    async def _critic(self, critic: Critic, steps: Sequence[str]) -> CriticScore:
        result = await critic.score(self.problem.question, steps)
        self.critic_usage += result.usage
        self.missing += int(result.missing)
        return result

    def _mix(self, scores: dict[str, float]) -> float:
        """Weighted mean of the critic scores this node got; 0.5 (no information) when no critic ran.

        A non-terminal node without rollouts has no ORM score: the mean is over the scores present.
        """
        if not scores:
            return 0.5
        c = self.config
        present = {
            role: getattr(c, f"w_{role}") if role in scores else 0.0 for role in ("value", "prm", "orm")
        }
        return combine(CriticWeights(**present), scores)  # type: ignore[arg-type]

    def _spend(self, usage: Usage) -> None:
        self.policy_usage += usage
        if self.shared is not None:
            self.shared.tokens += usage.completion_tokens

    # --- the answer ------------------------------------------------------------------------------

    async def finish(self, started: float) -> SearchResult:
        choices = all_choices(self.tree)
        texts: dict[int, tuple[str, str | None]] = {}
        for choice in choices.values():
            if choice.node not in texts:
                texts[choice.node] = await self._solution_of(choice)
        chosen = choices[self.config.final] if self.config.final in choices else choices["vote"]
        text, answer = texts[chosen.node]
        return SearchResult(
            answer=answer,
            text=text,
            choice=chosen,
            answers={name: texts[c.node][1] for name, c in choices.items()},
            tree=self.tree,
            stopped=self.stopped,
            seconds=time.perf_counter() - started,
            policy_usage=self.policy_usage,
            critic_usage=self.critic_usage,
            rollout_usage=self.rollout_usage,
            failed_simulations=self.failed,
            critic_missing=self.missing,
        )

    async def _solution_of(self, choice: Choice) -> tuple[str, str | None]:
        """The full solution text and answer at a chosen node, completing it greedily if needed."""
        steps = self.tree.steps(choice.node)
        if choice.needs_completion:
            sampling = Sampling(max_tokens=self.config.final_max_tokens, stop=self.setup.fmt.stop)
            try:
                result = await self.setup.policy.complete(self.base_prompt + self.rule.join(steps), sampling)
            except EndpointRejected as exc:
                log.warning("completion_failed", problem_id=self.problem.id, error=str(exc))
            else:
                self._spend(result.usage)
                steps = [*steps, *_split(result.completions[0].text, self.rule.separator)]
        text = self.rule.join(steps).strip()
        answer = self.setup.task.extract_answer(text)
        return text, normalize_number(answer) if answer is not None else None


def _is_terminal(completion: Completion, option: str, *, to_the_end: bool) -> bool:
    """An option ends the solution: written to the end, stopped by end of sequence, or stating an answer."""
    ended = completion.finish_reason == "stop" and completion.stop_matched is None
    return to_the_end or ended or has_final_answer(option)


def _split(text: str, separator: str) -> list[str]:
    return [part.strip() for part in text.split(separator) if part.strip()]


def _prior(completion: Completion) -> float | None:
    """exp(mean token log-probability) of an option: its length-normalized probability."""
    if not completion.logprobs:
        return None
    return math.exp(sum(t.logprob for t in completion.logprobs) / len(completion.logprobs))


async def run_search(
    problem: Problem,
    *,
    setup: SearchSetup,
    config: SearchConfig = SearchConfig(),
    shared: SharedBudget | None = None,
    on_tree: Callable[[Tree], None] | None = None,
) -> SearchResult:
    """Run ηMCTS on one problem and return the chosen answer, all four selectors' answers and the tree.

    ``on_tree`` is called once with the tree before the first simulation: an observer (a live view,
    streamed progress) may read it while the search grows it, and must not change it."""
    started = time.perf_counter()
    search = _Search(problem, setup, config, shared)
    if on_tree is not None:
        on_tree(search.tree)
    await search.run()
    result = await search.finish(started)
    log.info(
        "search_done",
        problem_id=problem.id,
        answer=result.answer,
        nodes=len(result.tree.nodes),
        simulations=result.tree.simulations,
        stopped=result.stopped,
        seconds=round(result.seconds, 2),
    )
    return result
