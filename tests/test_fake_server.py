"""The fake completions server, spoken to through the project's real clients over real sockets.

These are contracts: what ``OpenAIBackend``, ``LlamaCppBackend`` and ``SGLangBackend`` read from the
fake must parse, ``n`` must work in every dialect, cached tokens must grow on a shared prefix,
``slots`` must cap concurrency (the rest queue), connections must be kept alive, and bad requests
must get 4xx.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections.abc import Callable

import anyio
import httpx
import pytest

import agent.fakes as fakes
from agent.clients import Endpoint, LlamaCppBackend, OpenAIBackend, RetryPolicy, Sampling, SGLangBackend
from agent.errors import EndpointRejected, TransientEndpointError
from agent.fakes import FakeServer, default_text

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

NO_RETRY = RetryPolicy(attempts=1)
LINE = Sampling(max_tokens=32, stop=("\n",))
PREFIX = "You solve arithmetic problems step by step.\n" * 16  # 704 characters, 11 cache blocks


def openai(server: FakeServer, *, max_concurrency: int = 8) -> Endpoint:
    return Endpoint(OpenAIBackend(server.url), max_concurrency=max_concurrency, retry=NO_RETRY)


def llamacpp(server: FakeServer, *, max_n: int = 8, max_concurrency: int = 8) -> Endpoint:
    backend = LlamaCppBackend(server.url, max_n=max_n)
    return Endpoint(backend, max_concurrency=max_concurrency, retry=NO_RETRY)


def sglang(server: FakeServer, *, max_concurrency: int = 8) -> Endpoint:
    return Endpoint(SGLangBackend(server.url), max_concurrency=max_concurrency, retry=NO_RETRY)


def test_exports() -> None:
    assert all(hasattr(fakes, name) for name in fakes.__all__)


def test_default_text_is_deterministic_and_reaches_an_answer() -> None:
    assert default_text("Q: 2 + 3?\n", 1) == default_text("Q: 2 + 3?\n", 1)
    assert len({default_text("Q: 2 + 3?\n", i) for i in range(20)}) > 1
    prompt = "Q: 2 + 3?\n"
    for _ in range(6):
        step = default_text(prompt, 0)
        if step.startswith("The answer is"):
            break
        prompt += step
    assert step.startswith("The answer is")


def test_bad_arguments_and_lifecycle() -> None:
    with pytest.raises(ValueError):
        FakeServer(-1, 1)
    with pytest.raises(ValueError):
        FakeServer(0, 0)
    server = FakeServer(0, 1)
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018
    with server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"] == "fake"
    assert server.stats().connections == 2
    with pytest.raises(RuntimeError, match="once"):
        server.start()


async def test_openai_dialect_parses_with_n() -> None:
    prompt = PREFIX + "Q: 2 + 3?\n"
    async with FakeServer(0.0, 4) as server, openai(server) as ep:
        await ep.health()
        result = await ep.complete(prompt, LINE, n=3)
    assert [c.text.startswith("Step 1: ") for c in result.completions] == [True] * 3
    assert {c.finish_reason for c in result.completions} == {"stop"}
    usage = result.usage
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (
        1,
        math.ceil(len(prompt) / 4),
        48,
    )
    stats = server.stats()
    assert (stats.requests, stats.completions, stats.peak_queued) == (1, 3, 0)


async def test_llamacpp_dialect_parses_with_n_split_over_requests() -> None:
    async with FakeServer(0.0, 4) as server, llamacpp(server, max_n=4) as ep:
        await ep.health()
        single = await ep.complete(PREFIX + "Q: 1 + 1?\n", LINE)
        many = await ep.complete(PREFIX + "Q: 1 + 1?\n", LINE, n=6)
    assert single.completions[0].stop_matched == "\n"
    assert len(many.completions) == 6 and many.usage.requests == 2  # n_cmpl 4 + 2
    expected = [default_text(PREFIX + "Q: 1 + 1?\n", i).rstrip("\n") for i in (0, 1, 2, 3, 0, 1)]
    assert [c.text for c in many.completions] == expected
    assert server.stats().completions == 7


async def test_text_fn_stop_strings_and_max_tokens() -> None:
    def text_fn(prompt: str, i: int) -> str:
        return f"first {i}. second {i}. third"

    async with FakeServer(0.0, 2, text_fn=text_fn, tokens_per_completion=8) as server:
        async with openai(server) as ep:
            stopped = await ep.complete("p", Sampling(stop=("third", ". ")), n=2)
            cut = await ep.complete("p", Sampling(max_tokens=2))
            whole = await ep.complete("p", Sampling(max_tokens=100))
        async with llamacpp(server) as ep:
            native = await ep.complete("p", Sampling(stop=(". s",)))
            native_cut = await ep.complete("p", Sampling(max_tokens=3))
    assert [c.text for c in stopped.completions] == ["first 0", "first 1"]
    assert (cut.completions[0].text, cut.completions[0].finish_reason) == ("first 0.", "length")
    assert cut.usage.completion_tokens == 2
    assert (whole.completions[0].text, whole.usage.completion_tokens) == ("first 0. second 0. third", 8)
    assert (native.completions[0].text, native.completions[0].stop_matched) == ("first 0", ". s")
    assert native_cut.completions[0].finish_reason == "length"


async def test_sglang_dialect_parses_with_n() -> None:
    prompt = PREFIX + "Q: 4 + 4?\n"
    async with FakeServer(0.0, 4) as server, sglang(server) as ep:
        await ep.health()
        many = await ep.complete(prompt, LINE, n=3)
        cut = await ep.complete(prompt, Sampling(max_tokens=2))
        async with httpx.AsyncClient(base_url=server.url) as client:
            batch = (await client.post("/generate", json={"text": ["p", "p"]})).json()
            mixed = await client.post("/generate", json={"text": ["p", "q"]})
            both = await client.post("/generate", json={"text": ["p", "p"], "sampling_params": {"n": 2}})
            info = [(await client.get(path)).json()["model_path"] for path in ("/server_info", "/model_info")]
    assert [c.text for c in many.completions] == [default_text(prompt, i).rstrip("\n") for i in range(3)]
    assert {c.stop_matched for c in many.completions} == {"\n"}
    tokens = math.ceil(len(prompt) / 4)
    assert (many.usage.requests, many.usage.prompt_tokens, many.usage.completion_tokens) == (
        1,
        3 * tokens,
        48,
    )
    assert many.usage.cached_tokens == 2 * (tokens - 1)  # the prompt is evaluated once, for the first
    assert (cut.completions[0].finish_reason, cut.usage.completion_tokens) == ("length", 2)
    assert cut.usage.cached_tokens == 11 * 64 // 4
    assert isinstance(batch, list) and len(batch) == 2  # a list of texts gets a list back
    assert mixed.status_code == 400 and both.status_code == 400
    assert info == ["fake", "fake"]
    stats = server.stats()
    assert (stats.requests, stats.completions, stats.prompt_tokens, stats.cached_tokens) == (
        3,
        6,
        2 * tokens + 1,
        11 * 64 // 4,
    )


async def test_prefill_cost_grows_with_the_uncached_prompt() -> None:
    per_token = 0.001
    async with FakeServer(0.0, 1, prefill_per_token=per_token) as server, sglang(server) as ep:
        await ep.complete(PREFIX, LINE)  # 704 characters: 176 tokens, none cached
        cold = server.stats().busy_seconds
        await ep.complete(PREFIX, LINE)  # all but the last token cached
    warm = server.stats().busy_seconds - cold
    assert cold == pytest.approx(176 * per_token, rel=0.3) and warm < cold / 10
    with pytest.raises(ValueError, match="prefill_per_token"):
        FakeServer(0.0, 1, prefill_per_token=-1)


@pytest.mark.parametrize("make", [openai, llamacpp, sglang], ids=["openai", "llamacpp", "sglang"])
async def test_cached_tokens_grow_on_a_repeated_prefix(make: Callable[[FakeServer], Endpoint]) -> None:
    question = PREFIX + "Q: 7 + 8?\n"  # 714 characters: 11 whole 64-character blocks
    child = question + "Step 1: 7 + 8 = 15\n" * 4  # 790: 12 blocks
    async with FakeServer(0.0, 2) as server, make(server) as ep:
        first = await ep.complete(question, LINE)
        sibling = await ep.complete(child, LINE)
        grandchild = await ep.complete(child + "Step 2: 15 - 3 = 12\n", LINE)
        again = await ep.complete(question, LINE)
    assert first.usage.cached_tokens == 0
    assert sibling.usage.cached_tokens == 11 * 64 // 4
    assert grandchild.usage.cached_tokens == 12 * 64 // 4
    assert again.usage.cached_tokens == 11 * 64 // 4


async def test_slots_cap_concurrency_and_the_rest_queue() -> None:
    slots, latency = 4, 0.2
    async with FakeServer(latency, slots) as server, llamacpp(server, max_concurrency=3 * slots) as ep:
        await ep.health()
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(3 * slots):
                tg.start_soon(ep.complete, f"question {i}", LINE)
        wall = time.perf_counter() - start
    stats = server.stats()
    assert 3 * latency <= wall < 3 * latency + 0.25
    assert (stats.requests, stats.peak_active, stats.peak_queued) == (3 * slots, slots, 2 * slots)
    assert stats.busy_seconds == pytest.approx(3 * slots * latency, rel=0.1)
    assert stats.wait_seconds == pytest.approx(slots * (latency + 2 * latency), rel=0.15)


async def test_keep_alive_reuses_the_connection() -> None:
    async with FakeServer(0.0, 1) as server, httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(5):
            response = await client.post("/completion", json={"prompt": "p", "n_predict": 4})
            assert response.status_code == 200 and response.json()["stop_type"] == "limit"
        assert server.stats().connections == 1
        closing = await client.get("/health", headers={"Connection": "close"})
        assert closing.headers["connection"] == "close"
        await client.get("/health")
        assert server.stats().connections == 2


async def test_unknown_paths_and_bad_requests_are_4xx() -> None:
    async with FakeServer(0.0, 1) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/nope")).status_code == 404
        assert (await client.get("/v1/completions")).status_code == 404
        bad_json = await client.post("/v1/completions", content=b"{not json")
        assert bad_json.status_code == 400 and "bad request" in bad_json.json()["error"]["message"]
        assert (await client.post("/completion", json=["a list"])).status_code == 400
        assert (await client.post("/v1/completions", json={"prompt": 3})).status_code == 400
        assert (await client.post("/v1/completions", json={"prompt": "p", "n": 0})).status_code == 400
        assert (await client.post("/v1/completions", json={"prompt": "p", "stream": True})).status_code == 400
        async with openai(server) as ep:
            with pytest.raises(EndpointRejected, match="'n' must be an integer >= 1"):
                await ep.complete("p", LINE, n=0)
        assert server.stats().requests == 0


async def test_a_failing_text_fn_is_a_retried_500() -> None:
    calls = 0

    def broken(prompt: str, i: int) -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("model crashed")

    async with FakeServer(0.0, 1, text_fn=broken) as server:
        ep = Endpoint(LlamaCppBackend(server.url), retry=RetryPolicy(attempts=2, initial_wait=0.0))
        async with ep:
            with pytest.raises(TransientEndpointError, match="model crashed"):
                await ep.complete("p", LINE)
    assert calls == 2


async def raw_post(url: str, path: str, body: bytes) -> bytes:
    """One request on its own connection, without a client library's pool in the way."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(head.encode() + body)
        chunks = []
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                chunks.append(await stream.receive())
    return b"".join(chunks)


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2048, reason="needs 2048 open files")
async def test_hundreds_of_concurrent_connections() -> None:
    n, latency = 512, 0.5
    answers: list[bytes] = []

    async def one(i: int) -> None:
        answers.append(await raw_post(server.url, "/completion", b'{"prompt": "q%d"}' % i))

    async with FakeServer(latency, n) as server:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        wall = time.perf_counter() - start
    stats = server.stats()
    assert len(answers) == n and all(a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers)
    assert (stats.requests, stats.connections) == (n, n)
    assert stats.peak_active > n // 2 and wall < latency + 2.0


def test_stats_route_for_a_client_in_another_process() -> None:
    with FakeServer(0.0, 2) as server:
        httpx.post(f"{server.url}/v1/completions", json={"prompt": "Step 1", "max_tokens": 4, "n": 2})
        stats = httpx.get(f"{server.url}/stats").json()
    assert stats["requests"] == 1 and stats["completions"] == 2 and stats["cpu_seconds"] > 0


def test_concurrency_bench_runs_against_a_fake_server_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "bench"))
    bench = __import__("concurrency")
    args = [
        "--latency",
        "0.002",
        "--slots",
        "4",
        "--requests",
        "60",
        "--clients",
        "8",
        "--backends",
        "openai",
    ]
    results = anyio.run(bench.run, bench.parse_args([*args, "--limiters", "1"]))
    assert len(results) == 1 and results[0].requests == 60
    assert results[0].server_cpu > 0 and results[0].client_cpu > 0  # the server's own CPU, from its /stats
