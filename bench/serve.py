"""Benchmark: agent.serve, the OpenAI-compatible endpoint.

1. ``overhead``: the same greedy solves through the library call (``solve_with``) and through
   ``agent.serve`` (a separate process, plain HTTP), against the fake completions server with no
   latency, so that what is measured is the framework: wall milliseconds per request (one at a time,
   and ``--concurrency`` at a time) and CPU milliseconds per request (this process for the library,
   the server process for agent.serve; the fake server's own CPU excluded).
2. ``load``: ``--clients`` concurrent clients x ``--requests`` requests each against agent.serve on
   the embedded model (``treeloop-greedy`` on generated problems by default), through the official
   openai SDK, which honours 429 + ``Retry-After`` (up to ``--retries`` times). Columns: completed,
   failed, the 429 answers the server gave (its ``/metrics``), p50 and p99 latency per request
   (retries included), completion tokens per second, with the queue limit at work
   (``--max-concurrent`` running, ``--max-queue`` waiting).

    PYTHONPATH=. python bench/serve.py overhead
    PYTHONPATH=. python bench/serve.py load --clients 64 --requests 4
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
from _common import load_average, print_table

from agent.clients import Endpoint, LlamaCppBackend
from agent.fakes import FakeServer
from agent.prompts import get_format
from agent.runtime import Policy
from agent.solvers import SolverConfig, solve_with
from agent.tasks import Problem, get_task, load_task_problems
from servers.process import free_port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve_process(
    extra: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, int]]:
    """``python -m agent.serve`` on a free port; yields (base URL, pid) once /health answers."""
    port = free_port()
    out = log.open("w") if log else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "agent.serve", "--port", str(port), *extra]
    process = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stderr=out, stdout=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"agent.serve exited with {process.returncode}; see {log}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)
        if log:
            out.close()  # type: ignore[union-attr]


async def _library(fake: FakeServer, problems: list[Problem], concurrency: int) -> tuple[float, float]:
    task, config = get_task("arith"), SolverConfig(method="greedy", max_tokens=64)
    async with Endpoint(LlamaCppBackend(fake.url), max_concurrency=concurrency) as endpoint:
        policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)
        fake_cpu, cpu, start = fake.stats().cpu_seconds, time.process_time(), time.perf_counter()
        limiter = anyio.CapacityLimiter(concurrency)

        async def one(p: Problem) -> None:
            async with limiter:
                await solve_with(policy, p, task=task, config=config)

        async with anyio.create_task_group() as tg:
            for p in problems:
                tg.start_soon(one, p)
        wall = time.perf_counter() - start
        cpu_used = time.process_time() - cpu - (fake.stats().cpu_seconds - fake_cpu)
    return wall, cpu_used


async def _http(url: str, pid: int, problems: list[Problem], concurrency: int) -> tuple[float, float]:
    limiter = anyio.CapacityLimiter(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        cpu, start = _cpu_seconds(pid), time.perf_counter()

        async def one(p: Problem) -> None:
            async with limiter:
                body = {"model": "treeloop-greedy", "prompt": p.question, "task": "arith", "max_tokens": 64}
                r = await client.post(f"{url}/v1/completions", json=body)
                r.raise_for_status()

        async with anyio.create_task_group() as tg:
            for p in problems:
                tg.start_soon(one, p)
        return time.perf_counter() - start, _cpu_seconds(pid) - cpu


def overhead(args: argparse.Namespace) -> None:
    problems = load_task_problems("arith", limit=args.problems)
    rows = []
    with (
        FakeServer(0.0, 8) as fake,
        serve_process(
            ["--url", fake.url, "--backend", "llamacpp", "--max-concurrent", "64", "--max-queue", "256"]
        ) as (url, pid),
    ):
        anyio.run(_http, url, pid, problems[:10], 1)  # warm up both paths
        anyio.run(_library, fake, problems[:10], 1)
        for concurrency in (1, args.concurrency):
            lib_wall, lib_cpu = anyio.run(_library, fake, problems, concurrency)
            http_wall, http_cpu = anyio.run(_http, url, pid, problems, concurrency)
            n = len(problems)
            rows.append(["library", concurrency, f"{1000 * lib_wall / n:.2f}", f"{1000 * lib_cpu / n:.2f}"])
            rows.append(
                ["agent.serve", concurrency, f"{1000 * http_wall / n:.2f}", f"{1000 * http_cpu / n:.2f}"]
            )
    print_table(
        f"Serve overhead: {len(problems)} greedy solves against the fake server (no latency); "
        f"load {load_average()}",
        ["path", "concurrency", "wall ms/request", "CPU ms/request"],
        rows,
        notes=["CPU: this process (library) or the agent.serve process, the fake server's thread excluded"],
    )


async def _clients(url: str, args: argparse.Namespace) -> tuple[list[float], int, float]:
    import openai

    problems = load_task_problems("arith", limit=args.clients * args.requests, seed=3)
    latencies: list[float] = []
    failed = 0
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=args.retries, timeout=600)
    start = time.perf_counter()

    async def one_client(k: int) -> None:
        nonlocal failed
        for j in range(args.requests):
            p = problems[k * args.requests + j]
            t = time.perf_counter()
            try:
                await client.completions.create(
                    model=args.model, prompt=p.question, extra_body={"task": "arith"}
                )
                latencies.append(time.perf_counter() - t)
            except openai.OpenAIError:
                failed += 1

    async with anyio.create_task_group() as tg:
        for k in range(args.clients):
            tg.start_soon(one_client, k)
    await client.close()
    return latencies, failed, time.perf_counter() - start


def _metric(text: str, pattern: str) -> float:
    return sum(float(m) for m in re.findall(pattern + r"\s+([0-9.e+]+)", text))


def load(args: argparse.Namespace) -> None:
    extra = ["--max-concurrent", str(args.max_concurrent), "--max-queue", str(args.max_queue)]
    with serve_process(extra, log=args.log) as (url, _):
        latencies, failed, wall = anyio.run(_clients, url, args)
        text = httpx.get(f"{url}/metrics").text
    busy = _metric(text, r'treeloop_errors_total\{type="rate_limit_error"\}')
    tokens = _metric(text, r'treeloop_tokens_total\{kind="completion"\}')
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    print_table(
        f"agent.serve under load: {args.clients} clients x {args.requests} requests of {args.model}, "
        f"max {args.max_concurrent} running + {args.max_queue} queued; load {load_average()}",
        ["completed", "failed", "429 answered", "p50 s", "p99 s", "completion tok/s", "wall s"],
        [
            [
                len(lat),
                failed,
                int(busy),
                f"{statistics.median(lat):.1f}" if lat else "-",
                f"{p99:.1f}",
                f"{tokens / wall:.1f}",
                f"{wall:.0f}",
            ]
        ],
        notes=["latency: from the first attempt to the answer, the SDK's retries after 429 included"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/serve.py", description="Benchmark agent.serve.")
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overhead", help="library call vs agent.serve against the fake server")
    o.add_argument("--problems", type=int, default=200)
    o.add_argument("--concurrency", type=int, default=8)
    lo = sub.add_parser("load", help="many concurrent clients against agent.serve on the embedded model")
    lo.add_argument("--clients", type=int, default=64)
    lo.add_argument("--requests", type=int, default=4, help="requests per client, one after another")
    lo.add_argument("--model", default="treeloop-greedy")
    lo.add_argument("--max-concurrent", type=int, default=8)
    lo.add_argument("--max-queue", type=int, default=16)
    lo.add_argument(
        "--retries", type=int, default=50, help="SDK retries per request (429, honouring Retry-After)"
    )
    lo.add_argument("--log", type=Path, default=Path("runs/bench/serve.log"), help="agent.serve's log")
    args = parser.parse_args(argv)
    if args.command == "overhead":
        overhead(args)
    else:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        load(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
