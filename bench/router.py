"""Benchmark: concurrent searches behind ``sglang-router`` over two workers, by routing policy.

Two fake SGLang workers run as their own processes (``python -m agent.fakes.server``; each has
``--slots`` slots, holds a request ``--latency`` seconds plus ``--prefill-per-token`` seconds per
prompt token missing from *its own* prefix cache), and the real Rust router from PyPI
(``sglang-router``) runs in front of them. The client is treeloop as a user runs it: ``solve_problem``
with ηMCTS on ``--problems`` generated word problems, ``--concurrent`` at a time, through one
``SGLangBackend`` endpoint at the router; every request of a problem carries the problem's routing
key (``x-smg-routing-key``), which only the ``manual`` policy reads.

One row per routing variant, each on fresh workers (empty caches) and a fresh router:

- ``round_robin``: requests alternate over the workers, whatever their prefix;
- ``cache_aware``: the router's default; it sends a request to the worker whose (approximate) radix
  tree matches most of its text, and to the least-loaded worker only once the load differs by more
  than ``--balance-abs-threshold`` (64) requests *and* ``--balance-rel-threshold`` (1.5x);
- ``cache_aware_balanced``: the same with thresholds 4 and 1.2;
- ``manual``: sticky by routing key (``--assignment-mode min_load``): a search stays on one worker.

Columns: cached share of prompt tokens and uncached prompt tokens per request (as the workers report
them to the client), completion tokens per second, requests per second, the split of requests over
the two workers, and CPU per request of this process (treeloop: search, clients, JSON) and of the
router process. The last two are what the README's sizing calculation uses.

    python bench/router.py --problems 64 --concurrent 32 --simulations 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from _common import process_cpu_seconds
from rich.console import Console
from rich.table import Table

from agent.cli import configure_logging
from agent.clients import Endpoint, RetryPolicy, SGLangBackend, Usage
from agent.fakes.process import fake_server_process
from agent.prompts import get_format
from agent.search.config import SearchConfig
from agent.solvers import SolverConfig, solve_problem
from agent.tasks import Problem, get_task
from servers.process import free_port
from servers.sglang import RouterPolicy, SGLangRouterSpec, launch

VARIANTS: dict[str, tuple[RouterPolicy, tuple[str, ...]]] = {
    "round_robin": ("round_robin", ()),
    "cache_aware": ("cache_aware", ()),
    "cache_aware_balanced": (
        "cache_aware",
        ("--balance-abs-threshold", "4", "--balance-rel-threshold", "1.2"),
    ),
    "manual": ("manual", ("--assignment-mode", "min_load")),
}
NAMES = ("Ava", "Ben", "Carla", "Dev", "Emil", "Fatima", "Goro", "Hana")
ITEMS = ("stamps", "marbles", "apples", "books", "shells", "cards", "pencils", "beads")


@dataclass(frozen=True, slots=True)
class Row:
    policy: str
    problems: int
    wall: float
    usage: Usage
    split: tuple[int, int]
    client_cpu: float
    router_cpu: float


def problems(count: int) -> list[Problem]:
    """Distinct two-step word problems (different names, items and numbers)."""
    out = []
    for i in range(count):
        name, item = NAMES[i % len(NAMES)], ITEMS[(i // len(NAMES)) % len(ITEMS)]
        a, b, c = 12 + i, 3 + i % 9, 2 + i % 5
        question = (
            f"{name} has {a} {item}. A friend gives {name} {b} more {item}, and then {name} gives away "
            f"{c} {item} to a cousin. How many {item} does {name} have now?"
        )
        out.append(Problem(id=f"r{i}", question=question, gold=str(a + b - c)))
    return out


async def measure(args: argparse.Namespace, variant: str) -> Row:
    policy, extra = VARIANTS[variant]
    fake = {"tokens_per_completion": args.tokens, "prefill_per_token": args.prefill_per_token}
    async with (
        fake_server_process(args.latency, args.slots, **fake) as first,
        fake_server_process(args.latency, args.slots, **fake) as second,
    ):
        spec = SGLangRouterSpec(
            worker_urls=(first.url, second.url),
            policy=policy,
            port=free_port(),
            prometheus_port=free_port(),
            extra_args=(*extra, "--log-level", "warn"),
        )
        log = Path(tempfile.gettempdir()) / f"treeloop-bench-router-{variant}.log"
        router = await anyio.to_thread.run_sync(lambda: launch(spec, log_file=log, startup_timeout=60))
        try:
            config = SolverConfig(
                method="mcts",
                critics="arithmetic",
                max_tokens=64,
                search=SearchConfig(
                    simulations=args.simulations, max_simulations=args.simulations, workers=4, max_depth=6
                ),
            )
            backend = SGLangBackend(spec.base_url, connections=4 * args.concurrent)
            usages: list[Usage] = []
            async with Endpoint(
                backend, max_concurrency=2 * args.concurrent, retry=RetryPolicy(attempts=2)
            ) as ep:
                gate = anyio.Semaphore(args.concurrent)
                task, fmt = get_task("gsm8k"), get_format("chatml")

                async def one(problem: Problem) -> None:
                    async with gate:
                        solution = await solve_problem(problem, policy=ep, task=task, fmt=fmt, config=config)
                    usages.append(solution.usage)

                router_cpu, cpu, start = (
                    process_cpu_seconds(router.popen.pid),
                    time.process_time(),
                    time.perf_counter(),
                )
                async with anyio.create_task_group() as tg:
                    for problem in problems(args.problems):
                        tg.start_soon(one, problem)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                router_cpu = process_cpu_seconds(router.popen.pid) - router_cpu
            split = ((await first.stats()).requests, (await second.stats()).requests)
        finally:
            await anyio.to_thread.run_sync(router.stop)
    return Row(variant, args.problems, wall, sum(usages, Usage()), split, cpu, router_cpu)


def table(args: argparse.Namespace, rows: list[Row]) -> Table:
    title = (
        f"{args.problems} ηMCTS searches ({args.simulations} simulations, {args.concurrent} at a time) "
        f"through sglang-router over 2 fake SGLang workers: {args.slots} slots, "
        f"{args.latency * 1000:g} ms + {args.prefill_per_token * 1e6:g} µs per uncached prompt token"
    )
    out = Table(title=title)
    columns = [
        "routing",
        "requests",
        "cached %",
        "uncached tok/req",
        "completion tok/s",
        "req/s",
        "worker split",
    ]
    columns += ["treeloop CPU ms/req", "router CPU ms/req"]
    for name in columns:
        out.add_column(name, justify="left" if name == "routing" else "right")
    for r in rows:
        requests = r.usage.requests
        out.add_row(
            r.policy,
            str(requests),
            f"{100 * r.usage.cached_ratio:.1f}",
            f"{(r.usage.prompt_tokens - r.usage.cached_tokens) / requests:.1f}",
            f"{r.usage.completion_tokens / r.wall:.0f}",
            f"{requests / r.wall:.1f}",
            f"{r.split[0]}/{r.split[1]}",
            f"{1000 * r.client_cpu / requests:.2f}",
            f"{1000 * r.router_cpu / requests:.2f}",
        )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=48, help="searches per row")
    parser.add_argument("--concurrent", type=int, default=16, help="searches in flight at once")
    parser.add_argument("--simulations", type=int, default=16, help="ηMCTS simulations per search")
    parser.add_argument("--routing", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--slots", type=int, default=8, help="requests each worker processes at once")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per request (decode)")
    parser.add_argument(
        "--prefill-per-token", type=float, default=0.0002, help="seconds per prompt token not in the cache"
    )
    parser.add_argument("--tokens", type=int, default=16, help="tokens per completion")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> list[Row]:
    configure_logging("warning")
    return [await measure(args, variant) for variant in args.routing]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = anyio.run(run, args)
    Console(width=max(Console().width, 160)).print(table(args, rows))


if __name__ == "__main__":
    main()
