"""Benchmark: how close one shared ``Endpoint`` gets to a model server's ideal throughput.

A server with K slots that spends L seconds per request serves at most K/L requests per second.
This script starts a ``FakeServer`` with exactly that cost model, builds one endpoint the way the
project does (``make_endpoint``), and lets C client tasks share it until N requests are done. Each
table row is one (backend dialect, limiter) pair: a limiter of K keeps the server's slots just full,
so every client-side delay between two requests shows up as lost throughput; a limiter of 2K keeps
K requests queued at the server, which hides that delay at the price of latency.

Columns: achieved requests/s, the ideal K/L and the share of it reached; p50/p99 latency as a caller
sees it (waiting for the limiter included); client CPU per request (this process's CPU time); the
server's CPU per request, peak busy slots and queue (from its ``GET /stats``); the share of prompt
tokens served from the prefix cache.

The fake server runs as its own process (``python -m agent.fakes.server``), so the figure measures
treeloop and not the benchmark: in one process the two share the GIL and each delays the other.
``--server thread`` runs it on a thread of this process instead (its CPU time is then subtracted
from the client's), for comparison.

The workload is pluggable: ``WORKLOADS`` maps a name to ``async (endpoint, *, clients, requests) ->
list[Usage]``; the default sends single requests whose prompts walk down a path, as a search does.

    python bench/concurrency.py --latency 0.05 --slots 16 --requests 2000 --clients 256
    python bench/concurrency.py --workload searches --clients 256 --requests 4000 --limiters 1 2
    python bench/concurrency.py --slots 64 --latency 0.2 --limiters 0.125 1 8 --adaptive --backends sglang
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
from rich.console import Console
from rich.table import Table

from agent.clients import CompletionResult, Endpoint, Sampling, Usage, make_endpoint
from agent.critics.arithmetic import ArithmeticCritic
from agent.driver import SearchSetup, run_search
from agent.fakes import FakeServer
from agent.fakes.process import fake_server_process
from agent.fakes.server import FakeServerStats
from agent.merging import EditDistanceSimilarity
from agent.prompts import get_format
from agent.search.config import SearchConfig
from agent.settings import EndpointSettings, RetrySettings
from agent.tasks import Problem, get_task

__all__ = ["WORKLOADS", "Result", "Workload", "drive", "main", "measure"]

Workload = Callable[..., Awaitable[list[Usage]]]

# ----------------------------------------------------------------------------------------------
# Workloads

INSTRUCTION = (
    "Solve the arithmetic word problem. Think step by step, one step per line, each of the form "
    '"Step k: a + b = c", and finish with a line of the form "The answer is N."\n\n'
) * 4  # about 1 KB of fixed prefix, as a real instruction with worked examples would be
SAMPLING = Sampling(max_tokens=64, stop=("\n",))
PATH_DEPTH = 8


def prompt_for(client: int, depth: int) -> str:
    """Client ``client``'s prompt after ``depth`` steps: fixed prefix, question, steps so far."""
    steps = "".join(f"Step {k + 1}: {k} + 1 = {k + 1}\n" for k in range(depth))
    return f"{INSTRUCTION}Question {client}: what is {client} + {depth}?\n{steps}"


async def drive(endpoint: Endpoint, *, clients: int, requests: int) -> list[Usage]:
    """``clients`` tasks share ``endpoint`` and send requests back to back until ``requests`` have
    been sent; each walks down a path of ``PATH_DEPTH`` steps and starts over. Per-request usage
    (``usage.seconds`` is the latency the caller saw)."""
    usages: list[Usage] = []
    sent = 0

    async def client(index: int) -> None:
        nonlocal sent
        depth = 0
        while sent < requests:
            sent += 1
            result = await endpoint.complete(prompt_for(index, depth), SAMPLING)
            usages.append(result.usage)
            depth = (depth + 1) % PATH_DEPTH

    async with anyio.create_task_group() as tg:
        for index in range(clients):
            tg.start_soon(client, index)
    return usages


async def searches(endpoint: Endpoint, *, clients: int, requests: int) -> list[Usage]:
    """``clients`` concurrent ηMCTS searches (4 simulations in flight each) sharing ``endpoint``,
    with about ``requests`` LLM requests in all; the critics are the arithmetic re-checks."""
    usages: list[Usage] = []

    class Recording:
        """The endpoint, noting each request's usage on the way back."""

        url = endpoint.url

        async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
            result = await endpoint.complete(prompt, sampling, n=n)
            usages.append(result.usage)
            return result

    simulations = max(4, requests // clients)
    setup = SearchSetup(
        policy=Recording(),  # type: ignore[arg-type]
        fmt=get_format("chatml"),
        task=get_task("gsm8k"),
        prm=ArithmeticCritic("prm"),
        orm=ArithmeticCritic("orm"),
        similarity=EditDistanceSimilarity(),
    )
    config = SearchConfig(simulations=simulations, max_simulations=simulations, workers=4, max_depth=6)

    async def one(index: int) -> None:
        question = (
            f"A box holds {index % 50 + 3} pens and {index % 7 + 2} more are added. How many pens? ({index})"
        )
        await run_search(Problem(id=f"q{index}", question=question), setup=setup, config=config)

    async with anyio.create_task_group() as tg:
        for index in range(clients):
            tg.start_soon(one, index)
    return usages


WORKLOADS: dict[str, Workload] = {"requests": drive, "searches": searches}

# ----------------------------------------------------------------------------------------------
# One measurement


@dataclass(frozen=True, slots=True)
class Result:
    backend: str
    limiter: str
    requests: int
    wall: float
    client_cpu: float
    server_cpu: float
    latencies: list[float]
    cached_ratio: float
    peak_active: int
    peak_queued: int
    connections: int


Stats = Callable[[], Awaitable[FakeServerStats]]


@asynccontextmanager
async def fake_server(args: argparse.Namespace) -> AsyncIterator[tuple[str, Stats, bool]]:
    """A fresh fake server: its URL, how to read its stats, and whether it shares this process."""
    if args.server == "thread":
        async with FakeServer(args.latency, args.slots) as server:

            async def local() -> FakeServerStats:
                return server.stats()

            yield server.url, local, True
        return
    async with fake_server_process(args.latency, args.slots) as server:
        yield server.url, server.stats, False


async def measure(args: argparse.Namespace, *, backend: str, limiter: int, adaptive: bool = False) -> Result:
    """One row: a fresh fake server, one endpoint with ``limiter`` slots (with ``adaptive``: at most
    that many, the size following the server's load), the workload run once."""
    async with fake_server(args) as (url, stats, same_process):
        settings = EndpointSettings.model_validate(
            {"url": url, "backend": backend, "max_concurrency": limiter}
        )
        async with (
            make_endpoint(settings, retry=RetrySettings(attempts=1)) as endpoint,
            AsyncExitStack() as stack,
        ):
            await endpoint.health()
            if adaptive:
                await stack.enter_async_context(endpoint.governed(queue=args.queue))
            before = await stats()
            cpu, start = time.process_time(), time.perf_counter()
            usages = await WORKLOADS[args.workload](endpoint, clients=args.clients, requests=args.requests)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            after = await stats()
            final_limit = endpoint.limiter.total_tokens
    server_cpu = after.cpu_seconds - before.cpu_seconds
    total = sum(usages, Usage())
    return Result(
        backend=backend,
        limiter=f"adaptive≤{limiter}→{final_limit}" if adaptive else str(limiter),
        requests=len(usages),
        wall=wall,
        client_cpu=cpu - server_cpu if same_process else cpu,
        server_cpu=server_cpu,
        latencies=sorted(u.seconds for u in usages),
        cached_ratio=total.cached_ratio,
        peak_active=after.peak_active,
        peak_queued=after.peak_queued,
        connections=after.connections,
    )


# ----------------------------------------------------------------------------------------------
# The table


def table(args: argparse.Namespace, results: list[Result]) -> Table:
    ideal = args.slots / args.latency if args.latency else float("inf")
    title = (
        f"{args.workload}: {args.requests} requests from {args.clients} clients; fake server "
        f"K={args.slots} slots, L={args.latency * 1000:g} ms"
    )
    out = Table(title=title)
    columns = ["backend", "limiter", "req/s", "ideal K/L", "% ideal", "p50 ms", "p99 ms"]
    columns += ["client CPU ms/req", "server CPU ms/req", "server busy/queue peak", "connections", "cached %"]
    for name in columns:
        out.add_column(name, justify="left" if name == "backend" else "right")
    for r in results:
        rate = r.requests / r.wall
        q = statistics.quantiles(r.latencies, n=100) if len(r.latencies) > 1 else r.latencies * 99
        out.add_row(
            r.backend,
            r.limiter,
            f"{rate:.0f}",
            f"{ideal:.0f}",
            f"{100 * rate / ideal:.1f}",
            f"{1000 * q[49]:.0f}",
            f"{1000 * q[98]:.0f}",
            f"{1000 * r.client_cpu / r.requests:.2f}",
            f"{1000 * r.server_cpu / r.requests:.2f}",
            f"{r.peak_active}/{r.peak_queued}",
            str(r.connections),
            f"{100 * r.cached_ratio:.0f}",
        )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="How close one shared Endpoint gets to K/L requests/s.")
    # the server's cost model
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request (L)")
    parser.add_argument("--slots", type=int, default=16, help="requests processed at once (K)")
    # the load
    parser.add_argument("--requests", type=int, default=2000, help="requests per row (N)")
    parser.add_argument("--clients", type=int, default=256, help="concurrent client tasks (C)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="requests")
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="the fake server in its own process (default) or on a thread of this one",
    )
    # the client side
    parser.add_argument(
        "--backends", nargs="+", choices=["openai", "llamacpp", "sglang"], default=["openai", "llamacpp"]
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="after the fixed rows, one row per limiter size as the ceiling of a governed endpoint "
        "(its size follows the server's load signals: agent.clients.load)",
    )
    parser.add_argument(
        "--queue", type=int, default=None, help="adaptive: requests allowed to wait at the server"
    )
    parser.add_argument(
        "--limiters",
        nargs="+",
        type=float,
        default=[1.0, 2.0],
        help="endpoint limiter sizes, in multiples of K",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> list[Result]:
    results = []
    for backend in args.backends:
        for factor in args.limiters:
            limiter = max(1, round(factor * args.slots))
            results.append(await measure(args, backend=backend, limiter=limiter))
        for factor in args.limiters if args.adaptive else ():
            limiter = max(1, round(factor * args.slots))
            results.append(await measure(args, backend=backend, limiter=limiter, adaptive=True))
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = anyio.run(run, args)
    Console(width=max(Console().width, 170)).print(table(args, results))


if __name__ == "__main__":
    main()
