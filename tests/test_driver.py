"""The async driver with in-process fake policies and critics: budgets, deadline, failures, cancellation."""

from __future__ import annotations

import zlib

import anyio
import anyio.lowlevel
import pytest

from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.driver import SearchSetup, SharedBudget, run_search
from agent.errors import EndpointRejected, EndpointUnreachable, TransientEndpointError
from agent.fakes.backend import FunctionBackend, FunctionCritic
from agent.merging import EditDistanceSimilarity
from agent.prompts import get_format
from agent.search.config import SearchConfig
from agent.tasks import Problem, get_task

pytestmark = pytest.mark.anyio

PROBLEM = Problem(id="p1", question="Ann has 2 apples and buys 3 more. How many apples?", gold="5")
NO_RETRY = RetryPolicy(attempts=1)


def steps_of(prompt: str) -> int:
    """How many steps the solution in ``prompt`` already has (after the last assistant header)."""
    return prompt.rsplit("<|im_start|>assistant\n", 1)[1].count("\n")


def arithmetic_policy(prompt: str, sampling: Sampling, index: int) -> str:
    """Writes 'Step k' lines, varied by sample index; answers at depth 2 (5 right, 6 wrong)."""
    depth = steps_of(prompt)
    variant = 0 if sampling.temperature == 0 else index + 1 + zlib.crc32(prompt.encode()) % 7
    if depth >= 2:
        return f"The answer is {5 if variant % 3 else 6}.\n"
    return f"Step {depth}: {2 + variant} + {3 * variant} is a partial sum number {variant}\n"


def setup_with(backend: FunctionBackend, **kw: object) -> SearchSetup:
    return SearchSetup(
        policy=Endpoint(backend, max_concurrency=16, retry=NO_RETRY),
        fmt=get_format("chatml"),
        task=get_task("gsm8k"),
        **kw,  # type: ignore[arg-type]
    )


def critic_preferring(answer: str) -> FunctionCritic:
    return FunctionCritic(lambda q, steps: 0.9 if steps and answer in steps[-1] else 0.4, role="orm")


async def test_search_runs_the_budget_and_answers() -> None:
    backend = FunctionBackend(arithmetic_policy)
    setup = setup_with(backend, orm=critic_preferring("5"), similarity=EditDistanceSimilarity(0.05))
    config = SearchConfig(simulations=20, max_simulations=40, workers=4, c_min_root=3, c_min=2, max_depth=5)
    result = await run_search(PROBLEM, setup=setup, config=config)
    tree = result.tree
    assert result.stopped == "budget"
    assert tree.simulations == 20 and tree.in_flight == 0
    assert all(n.virtual_loss == 0 and n.pending == 0 for n in tree.nodes)
    assert result.answer == "5"  # ORM-weighted vote prefers the answer the ORM likes
    assert set(result.answers) == {"vote", "greedy", "best_leaf", "orm_rerank"}
    assert result.policy_usage.requests == backend.calls
    # every child prompt extends its parent's prompt byte for byte
    for node in tree.nodes[1:]:
        parent_prefix = "".join(f"{s}\n" for s in tree.steps(node.parent or 0))
        assert "".join(f"{s}\n" for s in tree.steps(node.id)).startswith(parent_prefix)


async def test_first_child_greedy_then_sampled() -> None:
    temperatures: list[float] = []

    def policy(prompt: str, sampling: Sampling, index: int) -> str:
        if steps_of(prompt) == 0:
            temperatures.append(sampling.temperature)
        return arithmetic_policy(prompt, sampling, index)

    config = SearchConfig(simulations=3, workers=1, c_min_root=3, c_max_root=3, merge="none")
    await run_search(PROBLEM, setup=setup_with(FunctionBackend(policy)), config=config)
    assert temperatures[0] == 0.0 and all(t > 0 for t in temperatures[1:3])


async def test_min_terminals_extends_the_search_up_to_the_cap() -> None:
    config = SearchConfig(simulations=4, min_terminals=6, max_simulations=30, workers=2, max_depth=4)
    result = await run_search(PROBLEM, setup=setup_with(FunctionBackend(arithmetic_policy)), config=config)
    assert len(result.tree.terminals()) >= 6 or result.tree.simulations == 30


async def test_near_duplicates_are_resampled_then_merged() -> None:
    def same_every_time(prompt: str, sampling: Sampling, index: int) -> str:
        return "Step: add the apples together\n" if steps_of(prompt) == 0 else "The answer is 5.\n"

    config = SearchConfig(simulations=6, workers=1, c_min_root=3, c_max_root=3, resample=2, max_depth=3)
    backend = FunctionBackend(same_every_time)
    result = await run_search(
        PROBLEM, setup=setup_with(backend, similarity=EditDistanceSimilarity(0.1)), config=config
    )
    root = result.tree.root
    assert len(root.children) == 1  # the duplicates never became nodes...
    merged = result.tree.nodes[root.children[0]].merged
    assert len(merged) >= 1  # ...they were merged into the existing sibling
    assert result.tree.nodes[root.children[0]].visits >= 1 + len(merged)


async def test_deadline_returns_the_best_answer_so_far() -> None:
    backend = FunctionBackend(arithmetic_policy, latency=0.05)
    config = SearchConfig(
        simulations=500,
        max_simulations=500,
        workers=2,
        deadline=0.6,
        max_depth=8,
        c_min_root=6,
        c_min=4,
        c_max=4,
    )
    with anyio.fail_after(5):
        result = await run_search(PROBLEM, setup=setup_with(backend), config=config)
    assert result.stopped == "deadline"
    assert 0 < result.tree.simulations < 500
    assert result.tree.in_flight == 0 and all(n.virtual_loss == 0 for n in result.tree.nodes)
    assert result.text  # an answer (or a greedy completion) was still produced


async def test_a_rejected_request_drops_one_simulation_and_the_tree_stays_consistent() -> None:
    def fail(call: int) -> EndpointRejected | None:
        return EndpointRejected("too long", url="fake://", status=400) if call in (2, 5) else None

    backend = FunctionBackend(arithmetic_policy, fail=fail)
    config = SearchConfig(simulations=10, workers=3, max_depth=4)
    result = await run_search(PROBLEM, setup=setup_with(backend), config=config)
    assert result.failed_simulations == 2
    assert result.tree.simulations == 10
    assert all(n.virtual_loss == 0 and n.pending == 0 for n in result.tree.nodes)


async def test_a_transient_error_past_the_retry_layer_ends_the_search() -> None:
    """A failing server ends the search with its error: a tree that silently lost simulations
    would be recorded as another search's result."""

    def fail(call: int) -> TransientEndpointError | None:
        return TransientEndpointError("HTTP 503", url="fake://", status=503) if call == 3 else None

    backend = FunctionBackend(arithmetic_policy, fail=fail)
    config = SearchConfig(simulations=10, workers=3, max_depth=4)
    with pytest.raises(TransientEndpointError, match="503"):
        await run_search(PROBLEM, setup=setup_with(backend), config=config)


async def test_unreachable_endpoint_ends_the_search() -> None:
    backend = FunctionBackend(arithmetic_policy, fail=lambda call: EndpointUnreachable("down", url="fake://"))
    with pytest.raises(EndpointUnreachable):
        await run_search(PROBLEM, setup=setup_with(backend), config=SearchConfig(simulations=5))


async def test_cancellation_leaves_no_running_tasks() -> None:
    backend = FunctionBackend(arithmetic_policy, latency=10)
    config = SearchConfig(simulations=50, max_simulations=50, workers=4)
    before = len(_tasks())
    with anyio.move_on_after(0.2):
        await run_search(PROBLEM, setup=setup_with(backend), config=config)
    await anyio.lowlevel.checkpoint()
    assert len(_tasks()) == before


def _tasks() -> set[object]:
    import asyncio

    return {t for t in asyncio.all_tasks() if not t.done()}


async def test_critic_weight_zero_means_never_called() -> None:
    value = FunctionCritic(lambda q, s: 0.7, role="value")
    prm = FunctionCritic(lambda q, s: 0.2, role="prm")
    config = SearchConfig(simulations=5, w_value=0.0, w_prm=1.0, w_orm=0.0)
    result = await run_search(
        PROBLEM, setup=setup_with(FunctionBackend(arithmetic_policy), value=value, prm=prm), config=config
    )
    assert value.calls == 0 and prm.calls > 0
    assert all(n.scores.keys() <= {"prm"} for n in result.tree.nodes)
    assert all(abs((n.value or 0) - 0.2) < 1e-9 for n in result.tree.nodes[1:])


async def test_fast_rollouts_score_new_nodes_with_the_mean_orm() -> None:
    rollout_backend = FunctionBackend(
        lambda p, s, i: "Step x\nThe answer is 5.\n" if i % 2 else "The answer is 6.\n"
    )
    setup = setup_with(
        FunctionBackend(arithmetic_policy),
        orm=critic_preferring("5"),
        rollout_policy=Endpoint(rollout_backend, retry=NO_RETRY),
    )
    config = SearchConfig(simulations=4, workers=1, rollouts=4, w_value=0, w_prm=0, max_depth=5)
    result = await run_search(PROBLEM, setup=setup, config=config)
    non_terminal = [n for n in result.tree.nodes[1:] if not n.terminal]
    assert non_terminal and rollout_backend.calls == len(non_terminal)
    for node in non_terminal:
        assert abs(node.scores["orm"] - (0.9 + 0.4) / 2) < 1e-9  # two of four rollouts say 5
    # The rollouts' tokens are counted apart, as a part of the policy's.
    assert result.rollout_usage.requests == rollout_backend.calls
    assert result.rollout_usage.completion_tokens > 0
    assert result.policy_usage.requests == rollout_backend.calls + setup.policy.backend.calls


async def test_shared_budget_across_concurrent_trees() -> None:
    backend = FunctionBackend(arithmetic_policy)
    setup = setup_with(backend)
    shared = SharedBudget(max_simulations=30)
    config = SearchConfig(simulations=100, max_simulations=100, workers=2)
    results = []

    async def one(i: int) -> None:
        problem = Problem(id=f"p{i}", question=f"{PROBLEM.question} ({i})")
        results.append(await run_search(problem, setup=setup, config=config, shared=shared))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert all(r.stopped == "shared_budget" for r in results)
    assert 30 <= shared.simulations <= 30 + 5 * 2


async def test_puct_uses_option_priors() -> None:
    config = SearchConfig(selection="puct", simulations=6, workers=1)
    result = await run_search(PROBLEM, setup=setup_with(FunctionBackend(arithmetic_policy)), config=config)
    assert result.tree.simulations == 6
    priors = [n.prior for n in result.tree.nodes[1:]]
    assert priors and all(p is not None and 0 < p <= 1 for p in priors)


async def test_a_token_budget_is_kept_with_simulations_in_flight() -> None:
    """With 8 simulations in flight, a tree stops starting new ones once the ones running would
    reach its completion-token budget (at the mean cost so far), instead of overshooting it by up
    to ``workers`` options."""

    config = SearchConfig(simulations=60, max_simulations=60, workers=8, max_tokens=150, merge="none")
    backend = FunctionBackend(arithmetic_policy, latency=0.01)
    result = await run_search(PROBLEM, setup=setup_with(backend), config=config)
    per_option = result.policy_usage.completion_tokens / result.policy_usage.requests
    assert result.stopped == "tokens"
    assert result.policy_usage.completion_tokens <= 150 + 2 * per_option, result.policy_usage


async def test_sibling_batching_fills_a_nodes_slots_with_one_request() -> None:
    """With ``batch_siblings`` the sampled siblings of a node come from one request with ``n`` > 1:
    the same number of simulations takes fewer requests and prompt evaluations, and the tree stays
    consistent."""
    sizes: list[int] = []

    class Counting(FunctionBackend):
        async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1):  # type: ignore[no-untyped-def]
            sizes.append(n)
            return await super().complete(prompt, sampling, n=n)

    runs = {}
    for batch in (False, True):
        sizes.clear()
        backend = Counting(arithmetic_policy)
        config = SearchConfig(
            simulations=18,
            max_simulations=18,
            workers=2,
            c_min_root=3,
            c_min=3,
            max_depth=3,
            batch_siblings=batch,
        )
        result = await run_search(
            PROBLEM, setup=setup_with(backend, similarity=EditDistanceSimilarity(0.05)), config=config
        )
        tree = result.tree
        assert tree.simulations >= 18 and tree.in_flight == 0
        assert all(n.virtual_loss == 0 and n.pending == 0 for n in tree.nodes)
        assert all(len(n.children) + n.duplicates <= n.width for n in tree.nodes)
        runs[batch] = (backend.calls, max(sizes), result.policy_usage.prompt_tokens)
    assert runs[False][1] == 1 and runs[True][1] > 1
    assert runs[True][0] < runs[False][0], runs


async def test_duplicates_within_a_batch_merge_into_their_new_sibling() -> None:
    def same_every_time(prompt: str, sampling: Sampling, index: int) -> str:
        if sampling.temperature == 0:
            return "Step: count the apples first\n"
        return "Step: add the apples together\n" if steps_of(prompt) == 0 else "The answer is 5.\n"

    config = SearchConfig(
        simulations=3, max_simulations=3, workers=1, c_min_root=4, c_max_root=4, batch_siblings=True
    )
    backend = FunctionBackend(same_every_time)
    result = await run_search(
        PROBLEM, setup=setup_with(backend, similarity=EditDistanceSimilarity(0.1)), config=config
    )
    root = result.tree.root
    options = [result.tree.nodes[i].option for i in root.children]
    assert options == ["Step: count the apples first", "Step: add the apples together"]
    assert len(result.tree.nodes[root.children[1]].merged) == 2 and root.duplicates == 2
    root_requests = [p for p in backend.prompts if steps_of(p) == 0]
    assert len(root_requests) == 2  # the greedy first child, then one request for the other three slots
