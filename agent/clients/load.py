"""Backpressure from the server's own load signals: how many requests to keep in flight.

A fixed ``max_concurrency`` is a guess. Too low and the server's slots idle between requests; too
high and requests queue *inside the server*, first come first served, where the endpoint's priority
order (a node waiting for its value before a new expansion, ``request_priority``) no longer applies.
``LoadGovernor`` reads the server's load every ``interval`` seconds and moves the endpoint's limit
so that every slot is busy and only ``queue`` requests wait at the server:

- more requests wait at the server than ``queue``: the limit drops by half the excess;
- requests wait at the endpoint's limiter while the server has room (its slots plus ``queue``, less
  the requests it holds or that are on their way to it): the limit grows by that room (by a quarter
  while nothing waits there, when the server does not say how many slots it has);

always within ``[1, ceiling]`` (``ceiling``: the endpoint's ``max_concurrency``). The server's
counts include other clients' requests, so several treeloop processes (or other users) sharing a
server back off from each other.

Signals, per server dialect (read over a small connection pool of its own, outside the limiter):

- llama.cpp: ``GET /metrics`` (``llamacpp:requests_processing``, ``llamacpp:requests_deferred``;
  ``llama-server`` needs ``--metrics``, the embedded server has it on) and ``GET /props``
  (``total_slots``);
- SGLang: ``GET /get_load`` (per data-parallel rank: ``num_reqs`` in the scheduler, of which
  ``num_waiting_reqs`` wait) and ``GET /server_info`` (``max_running_requests``);
- vLLM (OpenAI-style): ``GET /metrics`` (``vllm:num_requests_running``, ``vllm:num_requests_waiting``);
  it does not publish its batch size, so the limit grows by quarters while nothing waits.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx
import structlog
from prometheus_client.parser import text_string_to_metric_families

from agent.clients.wire import http_client, send
from agent.errors import EndpointError, EndpointGarbled

__all__ = ["LoadGovernor", "LoadReader", "ServerLoad", "load_reader", "parse_prometheus"]

log = structlog.get_logger(__name__)

Dialect = Literal["llamacpp", "sglang", "openai"]


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """One reading: requests the server is running, requests waiting in its queue, and how many it
    can run at once (None when it does not say)."""

    running: int
    waiting: int
    capacity: int | None = None


LoadReader = Callable[[], Awaitable[ServerLoad]]


def parse_prometheus(text: str, names: tuple[str, ...], *, url: str = "") -> dict[str, float]:
    """The summed value of each metric in ``names`` (over its label sets) in a Prometheus text
    exposition from ``url``; ``EndpointGarbled`` when one is missing."""
    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in names:
                    found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    except ValueError as exc:
        raise EndpointGarbled(f"{url}/metrics: unreadable Prometheus metrics: {exc}", url=url) from exc
    missing = [n for n in names if n not in found]
    if missing:
        raise EndpointGarbled(f"{url}/metrics has no {', '.join(missing)}", url=url)
    return found


class _Reader:
    """Reads one server's load in its dialect; the capacity is read once and kept."""

    def __init__(self, url: str, dialect: Dialect, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.dialect = dialect
        self.client = client
        self._capacity: int | None = None
        self._capacity_read = False

    async def __call__(self) -> ServerLoad:
        if not self._capacity_read:
            self._capacity = await self._read_capacity()
            self._capacity_read = True
        if self.dialect == "sglang":
            ranks = await self._json("/get_load")
            rows = ranks if isinstance(ranks, list) else [ranks]
            try:
                total = sum(int(r["num_reqs"]) for r in rows)
                waiting = sum(int(r.get("num_waiting_reqs", 0)) for r in rows)
            except (KeyError, TypeError, ValueError) as exc:
                raise EndpointGarbled(f"{self.url}/get_load sent {ranks!r:.200}", url=self.url) from exc
            return ServerLoad(running=total - waiting, waiting=waiting, capacity=self._capacity)
        names = (
            ("llamacpp:requests_processing", "llamacpp:requests_deferred")
            if self.dialect == "llamacpp"
            else ("vllm:num_requests_running", "vllm:num_requests_waiting")
        )
        response = await send(self.client, "GET", f"{self.url}/metrics")
        values = parse_prometheus(response.text, names, url=self.url)
        return ServerLoad(
            running=int(values[names[0]]), waiting=int(values[names[1]]), capacity=self._capacity
        )

    async def _read_capacity(self) -> int | None:
        if self.dialect == "llamacpp":
            slots = (await self._json("/props")).get("total_slots")
        elif self.dialect == "sglang":
            info = await self._json("/server_info")
            slots = info.get("max_running_requests")
            states = info.get("internal_states")
            if not slots and isinstance(states, list) and states and isinstance(states[0], Mapping):
                slots = states[0].get("max_running_requests")  # when the server chose it itself
        else:
            return None
        return int(slots) if isinstance(slots, int | float) and slots > 0 else None

    async def _json(self, path: str) -> Any:
        response = await send(self.client, "GET", f"{self.url}{path}")
        try:
            return response.json()
        except ValueError as exc:
            raise EndpointGarbled(f"{self.url}{path} sent {response.text[:200]!r}", url=self.url) from exc


def load_reader(url: str, dialect: Dialect, *, client: httpx.AsyncClient) -> LoadReader:
    """A function that reads the load of the server at ``url`` (a backend's base URL)."""
    return _Reader(url, dialect, client)


class LimiterLike(Protocol):
    """What the governor needs of a limiter (``agent.clients.endpoint.PriorityLimiter``)."""

    total_tokens: int
    borrowed_tokens: int
    waiting: int

    def set_total_tokens(self, total: int) -> None: ...


class LoadGovernor:
    """Moves ``limiter``'s size by the server's load (module docstring); ``run`` is its loop."""

    def __init__(
        self,
        limiter: LimiterLike,
        read: LoadReader,
        *,
        ceiling: int,
        queue: int | None = None,
        interval: float = 0.25,
    ) -> None:
        if ceiling < 1 or interval <= 0 or (queue is not None and queue < 0):
            raise ValueError("need ceiling >= 1, interval > 0 and queue >= 0")
        self.limiter = limiter
        self.read = read
        self.ceiling = ceiling
        self.queue = queue
        self.interval = interval
        self.readings = 0
        self.failures = 0
        self.peak_waiting = 0  # the most requests seen waiting at the server

    def allowed_queue(self, load: ServerLoad) -> int:
        """Requests allowed to wait at the server: ``queue``, else an eighth of its slots (at least 2)."""
        if self.queue is not None:
            return self.queue
        return max(2, (load.capacity or 0) // 8)

    def adjust(self, load: ServerLoad) -> int:
        """Apply one reading; the new limit."""
        self.readings += 1
        self.peak_waiting = max(self.peak_waiting, load.waiting)
        limit = self.limiter.total_tokens
        excess = load.waiting - self.allowed_queue(load)
        if excess > 0:
            limit -= math.ceil(excess / 2)
        elif self.limiter.waiting > 0 and self.limiter.borrowed_tokens >= limit:
            if load.capacity is None:
                limit += max(1, limit // 4) if load.waiting == 0 else 0
            else:  # room for more: requests in transit count, the server may not have seen them yet
                occupied = max(load.running + load.waiting, self.limiter.borrowed_tokens)
                limit += max(0, load.capacity + self.allowed_queue(load) - occupied)
        limit = min(self.ceiling, max(1, limit))
        if limit != self.limiter.total_tokens:
            self.limiter.set_total_tokens(limit)
        return limit

    async def start(self) -> ServerLoad:
        """The first reading, which sets the starting limit: the server's slots plus the allowed
        queue (the ceiling when it does not say). Raises ``EndpointError`` when the server does not
        publish its load."""
        load = await self.read()
        start = self.ceiling if load.capacity is None else load.capacity + self.allowed_queue(load)
        self.limiter.set_total_tokens(min(self.ceiling, max(1, start)))
        self.adjust(load)
        return load

    async def run(self) -> None:
        """Read and adjust every ``interval`` seconds until cancelled; a failed reading keeps the
        limit and waits longer (up to 16 intervals) before the next."""
        wait = self.interval
        while True:
            await anyio.sleep(wait)
            try:
                self.adjust(await self.read())
                wait = self.interval
            except EndpointError as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("server_load_unreadable", error=str(exc), failures=self.failures)
                wait = min(wait * 2, 16 * self.interval)


def governor_client() -> httpx.AsyncClient:
    """The governor's own small connection pool (its readings never wait behind completions)."""
    return http_client(timeout=10.0, connections=2)
