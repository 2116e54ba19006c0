"""The fake server as its own process (``python -m agent.fakes.server``), for benchmarks.

A client and a ``FakeServer`` thread in one process share the GIL, so each slows the other and a
throughput figure measures both. ``fake_server_process`` starts the server in a separate process,
waits for its health route, and stops it on exit; its counters come over ``GET /stats``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from agent.fakes.server import FakeServerStats
from servers.process import ManagedProcess, free_port

__all__ = ["RemoteFakeServer", "fake_server_process"]


@dataclass(frozen=True, slots=True)
class RemoteFakeServer:
    """A running fake server process: where it listens, and its counters."""

    url: str
    pid: int
    _client: httpx.AsyncClient

    async def stats(self) -> FakeServerStats:
        reply = await self._client.get(f"{self.url}/stats")
        reply.raise_for_status()
        return FakeServerStats(**reply.json())


@asynccontextmanager
async def fake_server_process(
    latency: float,
    slots: int,
    *,
    tokens_per_completion: int = 16,
    prefill_per_token: float = 0.0,
    log_file: Path | None = None,
) -> AsyncIterator[RemoteFakeServer]:
    """A fresh fake server process with the ``FakeServer`` cost model (see ``agent.fakes.server``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "agent.fakes.server", "--port", str(port), "--latency", str(latency)]
    command += ["--slots", str(slots), "--tokens", str(tokens_per_completion)]
    command += ["--prefill-per-token", str(prefill_per_token)]
    log = log_file or Path(tempfile.gettempdir()) / f"treeloop-fake-server-{port}.log"
    process = await anyio.to_thread.run_sync(
        lambda: ManagedProcess.start(command, health_url=f"{url}/health", log_file=log, startup_timeout=60)
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            yield RemoteFakeServer(url, process.popen.pid, client)
    finally:
        await anyio.to_thread.run_sync(process.stop)
