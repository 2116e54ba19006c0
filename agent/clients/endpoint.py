"""An endpoint: a backend wrapped in the one retry layer, a capacity limiter and a per-attempt timeout.

From the outside in, each call goes through:

    retry loop (tenacity; TransientEndpointError only; jittered exponential backoff, and never
                less than the server's ``Retry-After``, up to ``RetryPolicy.max_retry_after``)
      -> capacity limiter (one per endpoint, shared by every caller, taken per attempt:
         a request waiting to retry does not hold a slot; when it is full, waiting requests get
         their turn by priority, then in arrival order: see ``request_priority``)
        -> per-attempt deadline (anyio.fail_after)
          -> backend (error mapping, then the HTTP call)

Every other layer of the project talks to models through ``Endpoint`` and never retries itself.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TypeVar

import anyio
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from agent.clients.base import Backend, CompletionResult, Sampling
from agent.clients.load import LoadGovernor, governor_client, load_reader
from agent.errors import ConfigError, EndpointError, EndpointTimeout, TransientEndpointError

__all__ = ["URGENT", "Endpoint", "Guard", "PriorityLimiter", "RetryPolicy", "request_priority"]

T = TypeVar("T")

log = structlog.get_logger(__name__)


URGENT = 0  # a request something is blocked on: a new node's critic scores and rollouts
NORMAL = 1  # everything else: new expansions, samples

_priority: ContextVar[int] = ContextVar("treeloop_request_priority", default=NORMAL)


@contextlib.contextmanager
def request_priority(level: int) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) wait for a full endpoint's limiter with
    ``level`` (lower goes first; ``URGENT`` or the default ``NORMAL``). The search uses it so that a
    node waiting for its value is scored before new nodes are expanded: a simulation then backs up
    sooner, and the next selection sees it."""
    token = _priority.set(level)
    try:
        yield
    finally:
        _priority.reset(token)


class PriorityLimiter:
    """A capacity limiter whose waiters are served by (priority, arrival); a released slot goes
    straight to the next waiter. Like ``anyio.CapacityLimiter``: ``total_tokens`` slots,
    ``borrowed_tokens`` taken."""

    def __init__(self, total_tokens: int) -> None:
        if total_tokens < 1:
            raise ValueError(f"a limiter needs at least one slot, got {total_tokens}")
        self.total_tokens = total_tokens
        self.borrowed_tokens = 0
        self._waiters: list[list[object]] = []  # heap of [priority, arrival, event, still waiting]
        self._arrivals = itertools.count()
        self.waiting = 0  # waiters not yet served or gone (cancelled ones leave their entry behind)

    @contextlib.asynccontextmanager
    async def acquire(self, priority: int | None = None) -> AsyncIterator[None]:
        """Hold one slot (waiting with ``priority``, default: the caller's ``request_priority``)."""
        if self.borrowed_tokens < self.total_tokens and not self.waiting:
            self.borrowed_tokens += 1
        else:
            event = anyio.Event()
            level = _priority.get() if priority is None else priority
            entry: list[object] = [level, next(self._arrivals), event, True]
            heapq.heappush(self._waiters, entry)
            self.waiting += 1
            try:
                await event.wait()
            except BaseException:
                if entry[3]:  # still queued: leave the queue
                    entry[3] = False
                    self.waiting -= 1
                else:  # the slot was handed over as the wait was cancelled: pass it on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def set_total_tokens(self, total: int) -> None:
        """Resize: a larger limit lets waiters in at once; a smaller one takes effect as requests
        finish (none is interrupted)."""
        if total < 1:
            raise ValueError(f"a limiter needs at least one slot, got {total}")
        self.total_tokens = total
        while self.borrowed_tokens < self.total_tokens and self._hand_over():
            self.borrowed_tokens += 1

    def _hand_over(self) -> bool:
        """Wake the next live waiter; whether there was one."""
        while self._waiters:
            entry = heapq.heappop(self._waiters)
            if entry[3]:
                entry[3] = False
                self.waiting -= 1
                entry[2].set()  # type: ignore[attr-defined]
                return True
        return False

    def _release(self) -> None:
        if self.borrowed_tokens <= self.total_tokens and self._hand_over():
            return  # the slot changes hands; borrowed_tokens stays
        self.borrowed_tokens -= 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 10.0
    max_retry_after: float = 60.0  # a longer Retry-After than this is cut to it


class Guard:
    """The one retry layer for one server: retries of transient errors, a capacity limiter taken
    per attempt, and a per-attempt deadline, around any request function.

    ``Endpoint`` uses it for completions; reward-model, embedding and hot-swap clients use it for
    their own routes, so every request to a server goes through the same layer.
    """

    def __init__(
        self,
        url: str,
        *,
        max_concurrency: int = 8,
        timeout: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.url = url
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retry = retry
        self._backoff = wait_exponential(multiplier=retry.initial_wait, max=retry.max_wait) + wait_random(
            0, retry.initial_wait
        )
        self._limiter = PriorityLimiter(max_concurrency)

    @property
    def limiter(self) -> PriorityLimiter:
        return self._limiter

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        """``await request()`` under the retry loop, the limiter and the per-attempt deadline."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientEndpointError),
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self.limiter.acquire():
                    try:
                        with anyio.fail_after(self.timeout):
                            result = await request()
                    except TimeoutError as exc:
                        raise EndpointTimeout(
                            f"{self.url} took longer than {self.timeout:g} s", url=self.url
                        ) from exc
        return result

    def _wait(self, state: RetryCallState) -> float:
        """Jittered exponential backoff, or the server's ``Retry-After`` when that is longer."""
        backoff = self._backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(error, "retry_after", None)
        if asked is None:
            return backoff
        return max(backoff, min(float(asked), self.retry.max_retry_after))

    def _log_retry(self, state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "request_retried", url=self.url, attempt=getattr(state, "attempt_number", 0), error=str(error)
        )


class Endpoint:
    """A model endpoint shared by every search, solver and critic that uses it."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_concurrency: int = 8,
        timeout: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.backend = backend
        self.guard = Guard(backend.url, max_concurrency=max_concurrency, timeout=timeout, retry=retry)
        self._owns_backend = True

    def with_adapter(self, adapter: str) -> Endpoint:
        """This endpoint with requests routed to a LoRA adapter served by the same server.

        It shares the server's limiter and connections; closing it leaves them open.
        """
        twin = Endpoint.__new__(Endpoint)
        twin.backend = self.backend.with_adapter(adapter)
        twin.guard = self.guard
        twin._owns_backend = False
        return twin

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def max_concurrency(self) -> int:
        return self.guard.max_concurrency

    @property
    def limiter(self) -> PriorityLimiter:
        return self.guard.limiter

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        """``n`` completions of ``prompt``; ``usage.seconds`` is the wall time including retries."""
        start = time.perf_counter()
        result = await self.guard.call(lambda: self.backend.complete(prompt, sampling, n=n))
        usage = replace(result.usage, seconds=time.perf_counter() - start)
        return CompletionResult(result.completions, usage)

    @contextlib.asynccontextmanager
    async def governed(
        self, *, queue: int | None = None, interval: float = 0.25
    ) -> AsyncIterator[LoadGovernor]:
        """Inside, the limiter follows the server's load (``agent.clients.load``): its size moves
        between 1 and ``max_concurrency`` so that the server's slots are busy and at most ``queue``
        requests wait there. ``ConfigError`` when the server does not publish its load."""
        dialect = getattr(self.backend, "dialect", None)
        if dialect not in ("llamacpp", "sglang", "openai"):
            raise ConfigError(f"no load signals are known for the backend {type(self.backend).__name__}")
        async with governor_client() as client:
            read = load_reader(self.url, dialect, client=client)
            governor = LoadGovernor(
                self.limiter, read, ceiling=self.max_concurrency, queue=queue, interval=interval
            )
            try:
                await governor.start()
            except EndpointError as exc:
                raise ConfigError(
                    f"adaptive concurrency needs the server's load signals, and {self.url} did not give "
                    f"them ({exc}). Start llama-server with --metrics (SGLang and vLLM publish them by "
                    "default), or turn it off (AGENT_POLICY__ADAPTIVE=false)"
                ) from exc
            error: Exception | None = None
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(governor.run)
                try:
                    yield governor
                except Exception as exc:  # re-raised as itself, not inside an ExceptionGroup
                    error = exc
                finally:
                    tasks.cancel_scope.cancel()
            if error is not None:
                raise error

    async def health(self) -> None:
        """Return when the server answers its health route; a server that is restarting gets the
        retry layer's attempts, like any request."""

        async def probe() -> None:
            with anyio.fail_after(min(self.guard.timeout, 30.0)):
                await self.backend.health()

        await self.guard.call(probe)

    async def aclose(self) -> None:
        if self._owns_backend:
            await self.backend.aclose()

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
