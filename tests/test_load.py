"""Backpressure from the server's load signals: the readings in each server's shape, the governor's
rule, the limiter's resizing, and a governed endpoint keeping the server's queue short against the
fake server (all three dialects) and reading the real embedded llama.cpp server."""

from __future__ import annotations

import anyio
import httpx
import pytest

from agent.clients import Endpoint, LlamaCppBackend, Sampling, make_endpoint
from agent.clients.endpoint import PriorityLimiter
from agent.clients.load import LoadGovernor, ServerLoad, load_reader, parse_prometheus
from agent.errors import ConfigError, EndpointGarbled
from agent.fakes import FakeServer
from agent.runtime import open_policy
from agent.settings import EndpointSettings, Settings
from servers.process import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# Recorded from the embedded llama.cpp server (xllamacpp) while 24 requests were in flight for its
# 8 slots (the part of /metrics the reader uses, with its neighbours).
LLAMACPP_METRICS = """\
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 145.73
# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 8
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 16
# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call
# TYPE llamacpp:n_busy_slots_per_decode gauge
llamacpp:n_busy_slots_per_decode 8
"""

# vLLM's gauges carry the model name as a label.
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 3.0
"""


def recorded(routes: dict[str, httpx.Response]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        return routes.get(request.url.path, httpx.Response(404, text="not found"))

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def test_prometheus_values_are_summed_over_labels_and_missing_ones_named() -> None:
    assert parse_prometheus(VLLM_METRICS, ("vllm:num_requests_waiting",)) == {
        "vllm:num_requests_waiting": 3.0
    }
    with pytest.raises(EndpointGarbled, match="llamacpp:requests_deferred"):
        parse_prometheus(VLLM_METRICS, ("llamacpp:requests_deferred",))


async def test_each_dialect_reads_running_waiting_and_capacity() -> None:
    async with recorded(
        {
            "/metrics": httpx.Response(200, text=LLAMACPP_METRICS),
            "/props": httpx.Response(200, json={"total_slots": 8, "n_ctx": 16384}),
        }
    ) as client:
        assert await load_reader("http://llama:8080", "llamacpp", client=client)() == ServerLoad(8, 16, 8)
    sglang_ranks = [
        {"dp_rank": 0, "num_reqs": 40, "num_waiting_reqs": 6, "num_tokens": 9000},
        {"dp_rank": 1, "num_reqs": 30, "num_waiting_reqs": 0, "num_tokens": 7000},
    ]
    async with recorded(
        {
            "/get_load": httpx.Response(200, json=sglang_ranks),
            "/server_info": httpx.Response(
                200, json={"max_running_requests": None, "internal_states": [{"max_running_requests": 96}]}
            ),
        }
    ) as client:
        assert await load_reader("http://sgl:30000", "sglang", client=client)() == ServerLoad(64, 6, 96)
    async with recorded({"/metrics": httpx.Response(200, text=VLLM_METRICS)}) as client:
        # an OpenAI-style base URL: the metrics are at the server's root
        assert await load_reader("http://vllm:8000/v1", "openai", client=client)() == ServerLoad(5, 3, None)


def governor(limit: int, *, ceiling: int = 64, queue: int | None = 2) -> tuple[LoadGovernor, PriorityLimiter]:
    limiter = PriorityLimiter(limit)

    async def never() -> ServerLoad:
        raise AssertionError("adjust() is given its readings")

    return LoadGovernor(limiter, never, ceiling=ceiling, queue=queue), limiter


def test_the_limit_drops_by_half_the_excess_queue_and_grows_into_the_room_left() -> None:
    gov, limiter = governor(40)
    assert gov.adjust(ServerLoad(running=8, waiting=32, capacity=8)) == 25  # 30 too many wait: -15
    assert gov.adjust(ServerLoad(running=8, waiting=2, capacity=8)) == 25  # as allowed: kept
    assert gov.adjust(ServerLoad(running=8, waiting=1000, capacity=8)) == 1  # never below one
    limiter.borrowed_tokens, limiter.waiting = 1, 5  # full, with callers waiting
    assert gov.adjust(ServerLoad(running=1, waiting=0, capacity=8)) == 10  # 8 slots + 2 queued
    limiter.borrowed_tokens = 10  # ...of which the server has seen 3 so far: no more room
    assert gov.adjust(ServerLoad(running=3, waiting=0, capacity=8)) == 10
    limiter.borrowed_tokens = limiter.total_tokens = 4  # another client holds 5 slots
    assert gov.adjust(ServerLoad(running=8, waiting=1, capacity=8)) == 5
    gov.ceiling = 30
    limiter.total_tokens = limiter.borrowed_tokens = 29
    assert gov.adjust(ServerLoad(running=0, waiting=0, capacity=64)) == 30  # never above the ceiling
    assert gov.peak_waiting == 1000 and gov.readings == 7


def test_without_a_slot_count_the_limit_grows_by_quarters_while_nothing_waits() -> None:
    gov, limiter = governor(16, queue=None)
    limiter.borrowed_tokens, limiter.waiting = 16, 3
    assert gov.adjust(ServerLoad(running=16, waiting=0)) == 20
    assert gov.adjust(ServerLoad(running=16, waiting=1)) == 20  # something waits: no growth
    assert gov.allowed_queue(ServerLoad(0, 0, capacity=256)) == 32  # default: an eighth of the slots


async def test_a_resized_limiter_lets_waiters_in_at_once_and_shrinks_as_requests_finish() -> None:
    limiter = PriorityLimiter(1)
    inside = 0
    peak = 0
    gate = anyio.Event()

    async def user() -> None:
        nonlocal inside, peak
        async with limiter.acquire():
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(user)
        await anyio.wait_all_tasks_blocked()
        assert (inside, limiter.waiting) == (1, 5)
        limiter.set_total_tokens(4)
        await anyio.wait_all_tasks_blocked()
        assert (inside, limiter.waiting, limiter.borrowed_tokens) == (4, 2, 4)
        limiter.set_total_tokens(2)  # nobody is interrupted; the next releases shrink it
        gate.set()
    assert peak == 4 and (limiter.borrowed_tokens, limiter.waiting) == (0, 0)
    with pytest.raises(ValueError):
        limiter.set_total_tokens(0)


async def flood(endpoint: Endpoint, requests: int) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(requests):
            tg.start_soon(endpoint.complete, f"question {i}", Sampling(max_tokens=8))


@pytest.mark.parametrize("backend", ["llamacpp", "sglang", "openai"])
async def test_a_governed_endpoint_keeps_the_server_queue_short(backend: str) -> None:
    async with FakeServer(latency=0.05, slots=8) as server:
        url = server.url + ("/v1" if backend == "openai" else "")
        settings = EndpointSettings(url=url, backend=backend, max_concurrency=64)  # type: ignore[arg-type]
        async with make_endpoint(settings) as endpoint:
            async with endpoint.governed(queue=2, interval=0.01) as gov:
                assert endpoint.limiter.total_tokens == (10 if backend != "openai" else 64)
                await flood(endpoint, 160)
            assert gov.readings > 5 and gov.failures == 0
        governed = server.stats()
    assert governed.requests == 160
    if backend != "openai":  # the slot count is known: the queue never builds
        assert governed.peak_queued <= 8, governed
    async with FakeServer(latency=0.05, slots=8) as server:  # the same flood, fixed limit
        async with make_endpoint(
            EndpointSettings(url=server.url, backend="llamacpp", max_concurrency=64)
        ) as fixed:
            await flood(fixed, 160)
        assert server.stats().peak_queued >= 40


async def test_a_governed_endpoint_grows_to_fill_the_slots() -> None:
    async with FakeServer(latency=0.05, slots=32) as server:
        backend = LlamaCppBackend(server.url)
        async with Endpoint(backend, max_concurrency=128) as endpoint:
            endpoint.limiter.set_total_tokens(1)  # a far too small start
            async with endpoint.governed(queue=0, interval=0.01):
                endpoint.limiter.set_total_tokens(1)
                await flood(endpoint, 400)
        stats = server.stats()
    assert stats.peak_active == 32  # every slot was used


async def test_a_server_without_load_signals_is_a_clear_error() -> None:
    async with Endpoint(LlamaCppBackend(f"http://127.0.0.1:{free_port()}"), max_concurrency=8) as endpoint:
        with pytest.raises(ConfigError, match="--metrics"):
            async with endpoint.governed():
                pass


async def test_adaptive_settings_govern_the_policy_endpoint() -> None:
    async with FakeServer(latency=0.01, slots=6) as server:
        policy = EndpointSettings(
            url=server.url, backend="sglang", max_concurrency=100, adaptive=True, server_queue=1
        )
        async with open_policy(Settings(policy=policy)) as opened:
            assert opened.endpoint.limiter.total_tokens == 7  # 6 slots + 1 allowed to wait
            await flood(opened.endpoint, 20)


async def test_the_embedded_server_publishes_its_load(embedded_url: str) -> None:
    async with httpx.AsyncClient() as client:
        load = await load_reader(embedded_url, "llamacpp", client=client)()
    assert load.capacity is not None and load.capacity >= 1
    assert load.running >= 0 and load.waiting >= 0
