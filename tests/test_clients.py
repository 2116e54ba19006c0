"""Clients against recorded request/response contracts (httpx.MockTransport), no servers.

Each fake server below answers in the shape the real one does (llama.cpp native, SGLang native,
OpenAI-compatible from llama.cpp, vLLM/legacy). The retry, limiter and timeout layers are the real
``Endpoint``; only the network is replaced.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import anyio
import anyio.abc
import httpx
import pytest

from agent.clients import (
    Endpoint,
    LlamaCppBackend,
    OpenAIBackend,
    RetryPolicy,
    Sampling,
    SGLangBackend,
    TokenLogprob,
    make_endpoint,
)
from agent.clients.routing import ROUTING_HEADER, routed
from agent.clients.wire import normalize_logprobs
from agent.errors import (
    ConfigError,
    EndpointProtocolError,
    EndpointRejected,
    EndpointTimeout,
    EndpointUnreachable,
    PromptTooLong,
    TransientEndpointError,
)
from agent.settings import EndpointSettings, RetrySettings

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)
URL = "http://model.test"

CHAT_STYLE_LOGPROBS = {
    "content": [
        {
            "id": 33,
            "token": " 7",
            "bytes": [32, 55],
            "logprob": -0.1,
            "top_logprobs": [
                {"id": 33, "token": " 7", "logprob": -0.1},
                {"id": 34, "token": " 8", "logprob": -2.5},
            ],
        },
        {
            "id": 13,
            "token": ".",
            "bytes": [46],
            "logprob": -0.01,
            "top_logprobs": [{"id": 13, "token": ".", "logprob": -0.01}],
        },
    ]
}
LEGACY_LOGPROBS = {
    "tokens": [" 7", "."],
    "token_logprobs": [-0.1, -0.01],
    "top_logprobs": [{" 7": -0.1, " 8": -2.5}, {".": -0.01}],
    "text_offset": [0, 2],
}
EXPECTED_TOKENS = (
    TokenLogprob(" 7", -0.1, ((" 7", -0.1), (" 8", -2.5))),
    TokenLogprob(".", -0.01, ((".", -0.01),)),
)


def openai_body(logprobs: dict | None = None, *, n: int = 1, cached: int = 5) -> dict:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": i, "text": " 7.", "finish_reason": "stop", "logprobs": logprobs} for i in range(n)
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 2 * n,
            "total_tokens": 20 + 2 * n,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def endpoint_with(handler: Callable[[httpx.Request], httpx.Response], kind: str = "openai", **kw) -> Endpoint:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    backend = {
        "openai": lambda: OpenAIBackend(URL, client=client),
        "sglang": lambda: SGLangBackend(URL, client=client),
        "llamacpp": lambda: LlamaCppBackend(URL, client=client),
    }[kind]()
    return Endpoint(backend, retry=FAST_RETRY, **kw)


class Counter:
    def __init__(self, responses: list[httpx.Response]) -> None:
        self.responses = responses
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return self.responses[min(self.calls, len(self.responses)) - 1]


def test_logprob_shapes_normalize_to_the_same_tokens() -> None:
    assert normalize_logprobs(CHAT_STYLE_LOGPROBS) == EXPECTED_TOKENS
    assert normalize_logprobs(CHAT_STYLE_LOGPROBS["content"]) == EXPECTED_TOKENS
    assert normalize_logprobs(LEGACY_LOGPROBS) == EXPECTED_TOKENS
    assert normalize_logprobs(None) == ()
    with pytest.raises(ValueError):
        normalize_logprobs({"something": 1})


@pytest.mark.parametrize("logprobs", [CHAT_STYLE_LOGPROBS, LEGACY_LOGPROBS], ids=["chat", "legacy"])
async def test_openai_backend_reads_both_logprob_formats(logprobs: dict) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=openai_body(logprobs, n=2))

    async with endpoint_with(handler) as ep:
        result = await ep.complete("Q: 3+4?\nA:", Sampling(max_tokens=8, stop=("\n",), logprobs=2), n=2)
    assert seen[0]["n"] == 2 and seen[0]["logprobs"] == 2 and seen[0]["stop"] == ["\n"]
    assert [c.text for c in result.completions] == [" 7.", " 7."]
    assert result.completions[0].logprobs == EXPECTED_TOKENS
    assert (result.usage.requests, result.usage.prompt_tokens, result.usage.cached_tokens) == (1, 20, 5)
    assert result.usage.completion_tokens == 4


async def test_retries_on_503_then_succeeds() -> None:
    counter = Counter(
        [httpx.Response(503, text="busy"), httpx.Response(503), httpx.Response(200, json=openai_body())]
    )
    async with endpoint_with(counter) as ep:
        result = await ep.complete("p", Sampling())
    assert counter.calls == 3
    assert result.completions[0].text == " 7."


async def test_gives_up_after_the_configured_attempts() -> None:
    counter = Counter([httpx.Response(503, text="overloaded")])
    async with endpoint_with(counter) as ep:
        with pytest.raises(TransientEndpointError, match="503"):
            await ep.complete("p", Sampling())
    assert counter.calls == FAST_RETRY.attempts


@pytest.mark.parametrize("kind", ["openai", "sglang", "llamacpp"])
async def test_no_retry_on_400(kind: str) -> None:
    counter = Counter([httpx.Response(400, json={"error": {"message": "bad field 'max_tokens'"}})])
    async with endpoint_with(counter, kind) as ep:
        with pytest.raises(EndpointRejected) as info:
            await ep.complete("p", Sampling())
    assert counter.calls == 1
    assert not isinstance(info.value, TransientEndpointError)
    assert info.value.status == 400


@pytest.mark.parametrize("kind", ["openai", "llamacpp"])
async def test_context_overflow_is_prompt_too_long(kind: str) -> None:
    body = {
        "error": {
            "code": 400,
            "message": "request (3001 tokens) exceeds the available context size "
            "(1024 tokens), try increasing it",
            "type": "exceed_context_size_error",
        }
    }
    counter = Counter([httpx.Response(400, json=body)])
    async with endpoint_with(counter, kind) as ep:
        with pytest.raises(PromptTooLong):
            await ep.complete("p" * 10, Sampling())
    assert counter.calls == 1


async def test_429_is_retried() -> None:
    counter = Counter([httpx.Response(429), httpx.Response(200, json=openai_body())])
    async with endpoint_with(counter) as ep:
        await ep.complete("p", Sampling())
    assert counter.calls == 2


async def test_per_attempt_timeout_is_retried_then_raised() -> None:
    calls = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(5)
        return httpx.Response(200, json=openai_body())

    client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    ep = Endpoint(OpenAIBackend(URL, client=client), timeout=0.05, retry=FAST_RETRY)
    with anyio.fail_after(3):
        with pytest.raises(EndpointTimeout):
            await ep.complete("p", Sampling())
    assert calls == FAST_RETRY.attempts
    await ep.aclose()


async def test_connection_refused_is_unreachable_and_names_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for kind in ("openai", "sglang", "llamacpp"):
        async with endpoint_with(refuse, kind) as ep:
            with pytest.raises(EndpointUnreachable, match=r"model\.test"):
                await ep.complete("p", Sampling())


@pytest.mark.parametrize("kind", ["openai", "sglang", "llamacpp"])
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"unexpected": True}),
        httpx.Response(200, json=[1, 2, 3]),
    ],
    ids=["html", "wrong-object", "wrong-list"],
)
async def test_garbage_is_a_protocol_error(kind: str, response: httpx.Response) -> None:
    async with endpoint_with(lambda r: response, kind) as ep:
        with pytest.raises(EndpointProtocolError):
            await ep.complete("p", Sampling())


async def test_limiter_is_never_exceeded() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=openai_body())

    async with endpoint_with(handler, max_concurrency=3) as ep:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ep.complete, "p", Sampling())
    assert peak == 3


async def test_limiter_slot_is_released_while_backing_off() -> None:
    """A request waiting to retry must not hold a slot that another request could use."""
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["prompt"]
        calls.append(prompt)
        if prompt == "flaky" and calls.count("flaky") == 1:
            return httpx.Response(503)
        return httpx.Response(200, json=openai_body())

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    slow_retry = RetryPolicy(attempts=2, initial_wait=0.3, max_wait=0.3)
    async with Endpoint(OpenAIBackend(URL, client=client), max_concurrency=1, retry=slow_retry) as ep:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ep.complete, "flaky", Sampling())
            await anyio.sleep(0.05)
            tg.start_soon(ep.complete, "other", Sampling())
    assert calls == ["flaky", "other", "flaky"]


async def test_llamacpp_native_contract() -> None:
    seen: list[dict] = []
    item = {
        "index": 0,
        "content": " 7.",
        "stop": True,
        "stop_type": "word",
        "stopping_word": "\n",
        "tokens_predicted": 2,
        "tokens_cached": 21,
        "timings": {"cache_n": 18, "prompt_n": 2, "predicted_n": 2},
        "completion_probabilities": CHAT_STYLE_LOGPROBS["content"],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        n = body.get("n_cmpl", 1)
        return httpx.Response(200, json=[{**item, "index": i} for i in range(n)] if n > 1 else item)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Endpoint(LlamaCppBackend(URL, max_n=4, client=client), retry=FAST_RETRY) as ep:
        single = await ep.complete("p", Sampling(max_tokens=8, logprobs=2, stop=("\n",)))
        many = await ep.complete("p", Sampling(temperature=0.7), n=6)
    assert seen[0]["n_predict"] == 8 and seen[0]["n_probs"] == 2 and seen[0]["cache_prompt"] is True
    c = single.completions[0]
    assert (c.text, c.finish_reason, c.stop_matched, c.logprobs) == (" 7.", "stop", "\n", EXPECTED_TOKENS)
    assert (single.usage.prompt_tokens, single.usage.cached_tokens, single.usage.completion_tokens) == (
        20,
        18,
        2,
    )
    assert sorted(b.get("n_cmpl", 1) for b in seen[1:]) == [2, 4]  # split at the slot count
    assert len(many.completions) == 6 and many.usage.requests == 2
    # n_cmpl: the prompt is evaluated once per request and shared by its completions.
    assert (many.usage.prompt_tokens, many.usage.cached_tokens) == (6 * 20, 6 * 20 - 2 * 2)


async def test_sglang_native_contract() -> None:
    seen: list[dict] = []

    def item(i: int) -> dict:
        return {
            "text": " 7.",
            "output_ids": [33, 13],
            "meta_info": {
                "id": f"r{i}",
                "finish_reason": {"type": "stop", "matched": "\n"},
                "prompt_tokens": 20,
                "completion_tokens": 2,
                "cached_tokens": 0 if i == 0 else 19,
                "output_token_logprobs": [[-0.1, 33, " 7"], [-0.01, 13, "."]],
                "output_top_logprobs": [[[-0.1, 33, " 7"], [-2.5, 34, " 8"]], [[-0.01, 13, "."]]],
            },
        }

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        n = body["sampling_params"].get("n", 1)  # SGLang: a list for n > 1, one object otherwise
        return httpx.Response(200, json=[item(i) for i in range(n)] if n > 1 else item(0))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Endpoint(SGLangBackend(URL, adapter="value", client=client), retry=FAST_RETRY) as ep:
        result = await ep.complete("p", Sampling(max_tokens=8, logprobs=2, stop=("\n",)), n=3)
        single = await ep.complete("p", Sampling(max_tokens=8, seed=5))
    body = seen[0]
    # One prompt as a string and n in sampling_params: the only shape sglang-router also accepts.
    assert body["text"] == "p" and body["lora_path"] == "value"
    assert body["sampling_params"] == {
        "max_new_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["\n"],
        "n": 3,
    }
    assert body["return_logprob"] is True and body["top_logprobs_num"] == 2
    assert result.completions[0].logprobs == EXPECTED_TOKENS
    assert result.completions[0].stop_matched == "\n"
    assert (result.usage.prompt_tokens, result.usage.cached_tokens) == (60, 38)
    assert seen[1]["sampling_params"] == {
        "max_new_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "sampling_seed": 5,
    }
    assert len(single.completions) == 1 and single.usage.completion_tokens == 2


@pytest.mark.parametrize("backend", ["openai", "sglang", "llamacpp"])
async def test_requests_inside_routed_carry_the_routing_key(backend: str) -> None:
    """Inside ``routed(key)`` every request (child tasks too) sends ``x-smg-routing-key``; outside, none."""
    keys: list[str | None] = []
    replies = {
        "openai": {"choices": [{"text": "x", "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}},
        "sglang": {
            "text": "x",
            "meta_info": {"finish_reason": None, "prompt_tokens": 1, "completion_tokens": 1},
        },
        "llamacpp": {"content": "x", "stop_type": "eos", "timings": {}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get(ROUTING_HEADER))
        return httpx.Response(200, json=replies[backend])

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = EndpointSettings(url=URL, backend=backend)  # type: ignore[arg-type]
    async with make_endpoint(settings, client=client) as ep:
        await ep.complete("p", Sampling())
        with routed("tree-7"):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(ep.complete, "p", Sampling())
            with routed("inner"):
                await ep.complete("p", Sampling())
            await ep.complete("p", Sampling())
        await ep.complete("p", Sampling())
    assert keys == [None, "tree-7", "tree-7", "inner", "tree-7", None]
    with pytest.raises(ValueError, match="single-line"):
        with routed("a\r\nb"):
            pass


async def test_sglang_abort_is_transient() -> None:
    aborted = {
        "text": "",
        "meta_info": {
            "finish_reason": {"type": "abort", "message": "weights updating"},
            "prompt_tokens": 3,
            "completion_tokens": 0,
        },
    }
    counter = Counter([httpx.Response(200, json=aborted)])
    async with endpoint_with(counter, "sglang") as ep:
        with pytest.raises(TransientEndpointError, match="aborted"):
            await ep.complete("p", Sampling())
    assert counter.calls == FAST_RETRY.attempts


def test_make_endpoint_checks_the_url() -> None:
    with pytest.raises(ConfigError, match="AGENT_POLICY__URL"):
        make_endpoint(EndpointSettings())
    with pytest.raises(ConfigError, match="http"):
        make_endpoint(EndpointSettings(url="localhost:8000"))
    ep = make_endpoint(EndpointSettings(url="http://127.0.0.1:30000", backend="sglang", max_concurrency=5))
    assert isinstance(ep.backend, SGLangBackend) and ep.max_concurrency == 5


async def test_with_adapter_routes_requests_to_a_lora_and_shares_the_limiter() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"content": "x", "stop_type": "eos", "timings": {}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Endpoint(LlamaCppBackend(URL, client=client), max_concurrency=3) as base:
        critic = base.with_adapter("2")
        assert critic.limiter is base.limiter and critic.url == base.url
        await critic.complete("p", Sampling(max_tokens=1))
        await critic.aclose()  # leaves the shared connection pool open
        await base.complete("p", Sampling(max_tokens=1))
    assert seen[0]["lora"] == [{"id": 2, "scale": 1.0}] and "lora" not in seen[1]
    with pytest.raises(ConfigError, match="index"):
        base.with_adapter("value")
    assert SGLangBackend(URL).with_adapter("value").adapter == "value"
    assert OpenAIBackend(URL, model="base").with_adapter("base:orm").model == "base:orm"


@pytest.mark.parametrize("backend", ["openai", "sglang", "llamacpp"])
async def test_the_real_transport_maps_refused_and_dropped_connections(backend: str) -> None:
    """Over real sockets (aiohttp's pool under httpx): nothing listening is ``EndpointUnreachable``
    and a connection dropped before the answer is a transient error, never a timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = EndpointSettings(url=f"http://127.0.0.1:{closed_port}", backend=backend)  # type: ignore[arg-type]
    async with make_endpoint(refused, retry=RetrySettings(attempts=1)) as ep:
        with pytest.raises(EndpointUnreachable):
            await ep.complete("p", Sampling())

    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()  # the request's first bytes, then close without a word
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    dropped = EndpointSettings(url=f"http://127.0.0.1:{port}", backend=backend)  # type: ignore[arg-type]
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hang_up)
        async with make_endpoint(dropped, retry=RetrySettings(attempts=1)) as ep:
            with pytest.raises(TransientEndpointError) as caught:
                await ep.complete("p", Sampling())
        tg.cancel_scope.cancel()
    assert not isinstance(caught.value, EndpointTimeout)


async def test_llamacpp_slot_affinity_pins_each_routing_key_to_a_slot() -> None:
    """With ``pin_slots``, single completions inside ``routed(key)`` name a slot (``id_slot``): new
    keys take the slots in turn, a key keeps its slot; a key's requests under an adapter keep a slot
    of their own (a slot drops its cache when the adapter set changes); ``n`` > 1 and requests
    without a key are not pinned."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        item = {"content": "x", "stop_type": "eos", "timings": {}}
        n = body.get("n_cmpl", 1)
        return httpx.Response(200, json=[item] * n if n > 1 else item)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    backend = LlamaCppBackend(URL, client=client, pin_slots=3)
    async with Endpoint(backend, retry=FAST_RETRY) as ep:
        critic = ep.with_adapter("0")
        for key in ["a", "b", "a", "c", "d", "b"]:
            with routed(key):
                await ep.complete("p", Sampling())
        with routed("a"):
            await ep.complete("p", Sampling(), n=2)
            await critic.complete("p", Sampling())
            await critic.complete("p", Sampling())
            await ep.complete("p", Sampling())
        await ep.complete("p", Sampling())
        await critic.complete("p", Sampling())
    assert [b.get("id_slot") for b in seen] == [0, 1, 0, 2, 0, 1, None, 1, 1, 0, None, None]
    assert [b.get("lora") for b in seen[7:9]] == [[{"id": 0, "scale": 1.0}]] * 2
    with pytest.raises(ConfigError, match="pin_slots"):
        LlamaCppBackend(URL, pin_slots=-1)


async def test_llamacpp_slot_affinity_gives_a_new_key_the_least_busy_slot() -> None:
    """A new key skips a slot that still has requests in flight: a search that started late does not
    queue behind one still running while another slot is idle."""
    seen: list[tuple[str, int]] = []
    release = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((body["prompt"], body["id_slot"]))
        if body["prompt"] == "long":
            await release.wait()
        return httpx.Response(200, json={"content": "x", "stop_type": "eos", "timings": {}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Endpoint(LlamaCppBackend(URL, client=client, pin_slots=3), retry=FAST_RETRY) as ep:

        async def one(key: str, prompt: str) -> None:
            with routed(key):
                await ep.complete(prompt, Sampling())

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "a", "long")  # slot 0, held
            await anyio.wait_all_tasks_blocked()
            await one("b", "short")  # slot 1
            await one("c", "short")  # slot 2
            await one("d", "short")  # its turn is slot 0, busy: slot 1
            release.set()
        await one("e", "short")  # nothing in flight: the turn, slot 2
    assert seen == [("long", 0), ("short", 1), ("short", 2), ("short", 1), ("short", 2)]
