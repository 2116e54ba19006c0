"""Searches behind a real ``sglang-router`` process in front of two workers that speak SGLang's API.

The router is the Rust one from PyPI (``sglang-router``, in the dev extra), started as the project
starts it on GPU machines (``servers.sglang.launch``); the workers are fake servers (real HTTP,
``POST /generate``, the ``/server_info`` and ``/model_info`` the router reads at registration). The
client is the project's own ``SGLangBackend`` through ``solve_problem``, which tags every request of a
problem with its routing key. What must hold: ``n`` completions pass through the router in one
request; with ``--policy manual`` each search's requests all land on one worker and the searches
spread over both; with round-robin they scatter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from agent.clients import Endpoint, RetryPolicy, Sampling, SGLangBackend, Usage
from agent.fakes import FakeServer, default_text
from agent.prompts import get_format
from agent.search.config import SearchConfig
from agent.solvers import SolverConfig, solve_problem
from agent.tasks import get_task
from agent.tasks.base import Problem
from servers.process import free_port
from servers.sglang import RouterPolicy, SGLangRouterSpec, launch

pytest.importorskip("sglang_router", reason="sglang-router is in the dev extra: pip install -e '.[dev]'")
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

PROBLEMS = [
    Problem(id=f"p{i}", question=f"Ann has {i + 3} apples and buys {2 * i + 1} more. How many apples now?")
    for i in range(10)
]
CONFIG = SolverConfig(
    method="mcts",
    critics="arithmetic",
    max_tokens=64,
    search=SearchConfig(simulations=6, max_simulations=6, workers=2, max_depth=4),
)


class Worker:
    """A fake SGLang worker that notes the prompts it was sent."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.server = FakeServer(0.0, 8, text_fn=self._text)

    def _text(self, prompt: str, i: int) -> str:
        self.prompts.append(prompt)
        return default_text(prompt, i)

    def problems(self) -> set[str]:
        return {p.id for p in PROBLEMS if any(p.question in prompt for prompt in self.prompts)}


@contextmanager
def router(workers: list[Worker], policy: RouterPolicy, log_dir: Path, *extra: str) -> Iterator[str]:
    spec = SGLangRouterSpec(
        worker_urls=tuple(w.server.url for w in workers),
        policy=policy,
        port=free_port(),
        prometheus_port=free_port(),
        extra_args=extra,
    )
    process = launch(spec, log_file=log_dir / f"router-{policy}.log", startup_timeout=60)
    try:
        yield spec.base_url
    finally:
        process.stop()


async def solve_all(url: str) -> Usage:
    async with Endpoint(SGLangBackend(url), max_concurrency=16, retry=RetryPolicy(attempts=2)) as ep:
        usages: list[Usage] = []

        async def one(problem: Problem) -> None:
            solution = await solve_problem(
                problem, policy=ep, task=get_task("gsm8k"), fmt=get_format("chatml"), config=CONFIG
            )
            usages.append(solution.usage)

        async with anyio.create_task_group() as tg:
            for problem in PROBLEMS:
                tg.start_soon(one, problem)
    return sum(usages, Usage())


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    pair = [Worker(), Worker()]
    with pair[0].server, pair[1].server:
        yield pair


async def test_n_completions_pass_through_the_router_in_one_request(
    workers: list[Worker], tmp_path: Path
) -> None:
    with router(workers, "round_robin", tmp_path) as url:
        async with Endpoint(SGLangBackend(url), retry=RetryPolicy(attempts=1)) as ep:
            result = await ep.complete("Q: 2 + 2?\n", Sampling(max_tokens=16, stop=("\n",)), n=3)
    assert [c.text for c in result.completions] == [
        default_text("Q: 2 + 2?\n", i).rstrip("\n") for i in range(3)
    ]
    assert result.usage.requests == 1
    assert sum(w.server.stats().requests for w in workers) == 1


async def test_sticky_routing_keeps_each_search_on_one_worker(workers: list[Worker], tmp_path: Path) -> None:
    with router(workers, "manual", tmp_path, "--assignment-mode", "min_load") as url:
        usage = await solve_all(url)
    first, second = workers[0].problems(), workers[1].problems()
    assert first | second == {p.id for p in PROBLEMS}
    assert not first & second, f"searches split over both workers: {sorted(first & second)}"
    assert first and second, "every search went to one worker"
    assert usage.requests == sum(w.server.stats().requests for w in workers)


async def test_round_robin_scatters_each_search(workers: list[Worker], tmp_path: Path) -> None:
    with router(workers, "round_robin", tmp_path) as url:
        await solve_all(url)
    assert workers[0].problems() & workers[1].problems()  # the searches' requests alternate
