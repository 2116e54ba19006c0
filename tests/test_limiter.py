"""The endpoint's capacity limiter: slots are taken in (priority, arrival) order when it is full,
a released slot goes straight to the next waiter, and cancelled waiters never lose a slot."""

from __future__ import annotations

import anyio
import pytest

from agent.clients import CompletionResult, Endpoint, RetryPolicy, Sampling, Usage
from agent.clients.endpoint import NORMAL, URGENT, PriorityLimiter, request_priority

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def test_waiters_are_served_by_priority_then_arrival() -> None:
    limiter = PriorityLimiter(1)
    served: list[str] = []
    holding = anyio.Event()
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.acquire():
            holding.set()
            await release.wait()

    async def waiter(name: str, level: int) -> None:
        async with limiter.acquire(level):
            served.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await holding.wait()
        for name, level in [("a", NORMAL), ("b", URGENT), ("c", NORMAL), ("d", URGENT)]:
            tg.start_soon(waiter, name, level)
            await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 4 and limiter.borrowed_tokens == 1
        release.set()
    assert served == ["b", "d", "a", "c"]
    assert (limiter.borrowed_tokens, limiter.waiting) == (0, 0)


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    limiter = PriorityLimiter(1)
    served: list[str] = []
    release = anyio.Event()

    async def holder() -> None:
        async with limiter.acquire():
            await release.wait()

    async def waiter(name: str) -> None:
        async with limiter.acquire():
            served.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as doomed:  # a waiter whose caller gives up while it queues
            doomed.cancel()
            async with limiter.acquire():
                served.append("never")
        tg.start_soon(waiter, "x")
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 1
        release.set()
    assert served == ["x"] and (limiter.borrowed_tokens, limiter.waiting) == (0, 0)

    with pytest.raises(ValueError):
        PriorityLimiter(0)


class Gated:
    """A backend whose first request blocks until released; it records the prompts it served."""

    url = "http://gated"

    def __init__(self) -> None:
        self.first = anyio.Event()
        self.release = anyio.Event()
        self.order: list[str] = []

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        self.order.append(prompt)
        if prompt == "first":
            self.first.set()
            await self.release.wait()
        return CompletionResult((), Usage(requests=1))

    def with_adapter(self, adapter: str) -> Gated:
        return self

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_endpoint_requests_inside_request_priority_go_first() -> None:
    backend = Gated()
    async with Endpoint(backend, max_concurrency=1, retry=RetryPolicy(attempts=1)) as ep:  # type: ignore[arg-type]

        async def urgent(prompt: str) -> None:
            with request_priority(URGENT):
                await ep.complete(prompt, Sampling())

        async with anyio.create_task_group() as tg:
            tg.start_soon(ep.complete, "first", Sampling())
            await backend.first.wait()
            tg.start_soon(ep.complete, "expand 1", Sampling())
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(urgent, "score 1")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ep.complete, "expand 2", Sampling())
            await anyio.wait_all_tasks_blocked()
            backend.release.set()
    assert backend.order == ["first", "score 1", "expand 1", "expand 2"]
