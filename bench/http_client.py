"""Benchmark: the client's CPU per request, httpx's own connection pool against aiohttp's.

treeloop's backends talk HTTP through ``agent.clients.wire.http_client``: httpx's API on aiohttp's
pool (``httpx-aiohttp``). This script shows why: against a fake llama.cpp server in its own process
(``--latency`` seconds per request, slots for every request), C concurrent tasks send single
``/completion`` requests through one ``Endpoint`` with C connections, once per transport, and the
table gives this process's CPU time per request and the request rate.

    python bench/http_client.py --in-flight 4 16 64 256
"""

from __future__ import annotations

import argparse
import time

import anyio
import httpx
from rich.console import Console
from rich.table import Table

from agent.clients import Endpoint, LlamaCppBackend, RetryPolicy, Sampling
from agent.clients.wire import http_client
from agent.fakes.process import fake_server_process

PROMPT = "Step 1: 2 + 3 = 5\n" * 40


def client(transport: str, connections: int) -> httpx.AsyncClient:
    if transport == "aiohttp":
        return http_client(timeout=300.0, connections=connections)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=300.0, limits=limits)


async def measure(url: str, transport: str, in_flight: int, requests: int) -> tuple[float, float]:
    """(CPU ms per request, requests per second) for ``requests`` requests, ``in_flight`` at a time."""
    backend = LlamaCppBackend(url, client=client(transport, in_flight))
    sent = 0
    async with Endpoint(backend, max_concurrency=in_flight, retry=RetryPolicy(attempts=1)) as endpoint:

        async def worker() -> None:
            nonlocal sent
            while sent < requests:
                sent += 1
                await endpoint.complete(PROMPT, Sampling(max_tokens=16))

        cpu, start = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(worker)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - start
    return 1000 * cpu / sent, sent / wall


async def run(args: argparse.Namespace) -> Table:
    table = Table(title=f"single /completion requests, fake server {args.latency * 1000:g} ms per request")
    for name in ("in flight", "transport", "client CPU ms/request", "requests/s", "ideal requests/s"):
        table.add_column(name, justify="right")
    async with fake_server_process(args.latency, max(args.in_flight)) as server:
        for in_flight in args.in_flight:
            for transport in ("httpx", "aiohttp"):
                cpu, rate = await measure(server.url, transport, in_flight, args.requests)
                ideal = in_flight / args.latency
                table.add_row(str(in_flight), transport, f"{cpu:.2f}", f"{rate:.0f}", f"{ideal:.0f}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--requests", type=int, default=3000, help="requests per row")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    args = parser.parse_args(argv)
    Console().print(anyio.run(run, args))


if __name__ == "__main__":
    main()
