"""A real HTTP fake of a completions server, for tests and benchmarks without GPUs or models.

Routes, in the real servers' shapes: ``POST /v1/completions`` (OpenAI), ``POST /completion``
(llama.cpp native; a list for ``n_cmpl`` > 1), ``POST /generate`` (SGLang native; a list for
``sampling_params.n`` > 1), ``GET /health``, ``GET /v1/models``, and the ``GET /server_info`` and
``/model_info`` that ``sglang-router`` reads when it registers a worker; the load signals
(llama.cpp ``GET /metrics`` and ``/props``, SGLang ``GET /get_load``, vLLM's gauges in ``/metrics``:
requests running and waiting, and the slot count); and its own ``GET /stats``
(``FakeServerStats`` as JSON) for a client in another process.

Cost model: at most ``slots`` requests are processed at once, the rest wait in a FIFO queue, and each
holds its slot ``latency`` seconds plus ``prefill_per_token`` seconds per prompt token not found in
the cache (``asyncio.sleep``; a request's ``n`` completions share it). The prompt cache is the longest
prefix, in 64-character blocks, shared with any earlier prompt (chained block hashes, like vLLM's). A
token is 4 characters; a completion costs ``tokens_per_completion``.

It runs on its own thread and event loop, so the client's CPU work does not disturb its latency;
``stats()`` reports that thread's CPU time, for benchmarks in the same process to subtract. HTTP/1.1
(keep-alive) on ``asyncio.start_server``. Left out: streaming, chat, logprobs, tokenization, eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import anyio

__all__ = ["FakeServer", "FakeServerStats", "HttpRequest", "default_text", "read_request", "write_response"]

CHARS_PER_TOKEN = 4
BLOCK_CHARS = 64
_UNLIMITED = 1 << 30


def default_text(prompt: str, i: int) -> str:
    """Completion ``i`` of ``prompt``: the next "Step k: a + b = c" line or, sometimes from step 2 on
    and always at step 6, "The answer is c." (so searches end). Deterministic in (prompt, i)."""
    step = prompt.count("Step ") + 1
    digest = hashlib.blake2b(f"{i}\0{prompt}".encode(), digest_size=4).digest()
    a, b = digest[0] % 10, digest[1] % 10
    if step > 5 or (step > 1 and digest[2] % 3 == 0):
        return f"The answer is {a + b}."
    return f"Step {step}: {a} + {b} = {a + b}\n"


@dataclass(frozen=True, slots=True)
class FakeServerStats:
    """What the server saw since it started."""

    requests: int = 0  # completion requests answered
    completions: int = 0  # completions generated (n per request)
    connections: int = 0  # TCP connections accepted (keep-alive reuses them)
    peak_active: int = 0  # most requests processed at once (at most ``slots``)
    peak_queued: int = 0  # most requests waiting for a slot at once
    prompt_tokens: int = 0  # prompt tokens of the requests answered (once per request)
    cached_tokens: int = 0  # of which found in the prefix cache
    busy_seconds: float = 0.0  # slot-seconds spent processing
    wait_seconds: float = 0.0  # seconds requests spent queued for a slot, summed
    cpu_seconds: float = 0.0  # CPU time of the server's thread


class _Request(NamedTuple):
    prompt: str
    n: int
    max_tokens: int
    stop: tuple[str, ...]


class _Choice(NamedTuple):
    text: str
    stop_type: str  # llama.cpp's words: "eos", "word" or "limit"
    stopping_word: str
    tokens: int


class _BadRequest(ValueError):
    """Answered with HTTP 400."""


class FakeServer:
    """A completions server with a slots/latency cost model: ``with FakeServer(0.05, 8) as server:``,
    or ``async with`` inside an event loop. ``port=0`` picks a free port. ``text_fn(prompt, i)`` writes
    completion ``i`` (default: ``default_text``); if it raises, the request gets HTTP 500.
    ``prefill_per_token`` (seconds) makes a request's time grow with its uncached prompt tokens."""

    def __init__(
        self,
        latency: float,
        slots: int,
        *,
        tokens_per_completion: int = 16,
        text_fn: Callable[[str, int], str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        prefill_per_token: float = 0.0,
    ) -> None:
        if latency < 0 or slots < 1 or tokens_per_completion < 1 or prefill_per_token < 0:
            raise ValueError(
                "need latency >= 0, slots >= 1, tokens >= 1, prefill_per_token >= 0; "
                f"got {latency}, {slots}, {tokens_per_completion}, {prefill_per_token}"
            )
        self.latency = latency
        self.prefill_per_token = prefill_per_token
        self.slots = slots
        self.tokens_per_completion = tokens_per_completion
        self.text_fn = text_fn or default_text
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._final: FakeServerStats | None = None

    @property
    def url(self) -> str:
        if self._thread is None:
            raise RuntimeError("the fake server is not running; use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        if self._thread is not None or self._final is not None:
            raise RuntimeError("a FakeServer starts once")
        self._thread = threading.Thread(target=self._run, name="fake-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"the fake server could not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)
        self._thread = None

    def stats(self) -> FakeServerStats:
        """A consistent snapshot, taken on the server's thread (blocks for microseconds)."""
        if self._final is not None or self._thread is None or self._loop is None:
            return self._final or FakeServerStats()
        return asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop).result(timeout=10)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeServer:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
        self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slot = asyncio.Semaphore(self.slots)  # FIFO since Python 3.11.1
        self._cache: set[int] = set()
        self._open: set[asyncio.Task[Any]] = set()
        self._now = {"active": 0, "queued": 0}
        self._tally: dict[str, Any] = {f: 0 for f in FakeServerStats.__dataclass_fields__}
        self._cpu_start = time.thread_time()
        server = await asyncio.start_server(self._connection, self.host, self.port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        self._final = await self._snapshot()
        await close_connections(self._open)

    async def _snapshot(self) -> FakeServerStats:
        return FakeServerStats(**self._tally | {"cpu_seconds": time.thread_time() - self._cpu_start})

    def _enter(self, state: str, delta: int) -> None:  # one more (or fewer) active or queued
        self._now[state] += delta
        self._tally[f"peak_{state}"] = max(self._tally[f"peak_{state}"], self._now[state])

    # HTTP/1.1: a task per connection, requests answered in order, kept alive unless told otherwise.

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tally["connections"] += 1
        self._open.add(task := asyncio.current_task())  # type: ignore[arg-type]
        try:  # ends when the client leaves, or quietly when stop() cancels it (3.11 logs cancelled ones)
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                while await self._exchange(reader, writer):
                    pass
        finally:
            self._open.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        try:
            request = await read_request(reader)
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a malformed or oversized head
            await _send(writer, 400, _error(400, f"malformed request: {exc!r}"), keep=False)
            return False
        status, payload = await self._route(request.method, request.path, request.body)
        await _send(writer, status, payload, keep=request.keep_alive)
        return request.keep_alive

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path in _LOAD_ROUTES:
            return 200, self._load(path)
        if method == "GET" and path in _READS:
            return 200, _READS[path]
        if method == "GET" and path == "/stats":  # for a client in another process
            return 200, asdict(await self._snapshot())
        if method != "POST" or path not in _DIALECTS:
            return 404, _error(404, f"no route {method} {path}")
        parse, render = _DIALECTS[path]
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise _BadRequest("the body must be a JSON object")
            request = parse(data)
        except ValueError as exc:  # invalid JSON or a _BadRequest
            return 400, _error(400, f"bad request: {exc}")
        try:
            return 200, render(data, *await self._generate(request))
        except Exception as exc:  # text_fn raised: answer as a crashing server would
            return 500, _error(500, f"{type(exc).__name__}: {exc}")

    def _load(self, path: str) -> Any:
        """The load signals, in each server's shape: llama.cpp ``/metrics`` (Prometheus text, with
        vLLM's two gauges beside) and ``/props``, SGLang ``/get_load`` and ``/server_info``."""
        running, waiting = self._now["active"], self._now["queued"]
        if path == "/props":
            return {"total_slots": self.slots}
        if path == "/server_info":
            return _INFO | {"max_running_requests": self.slots}
        if path == "/get_load":
            return [
                {"dp_rank": 0, "num_reqs": running + waiting, "num_waiting_reqs": waiting, "num_tokens": 0}
            ]
        gauges = {
            "llamacpp:requests_processing": running,
            "llamacpp:requests_deferred": waiting,
            "vllm:num_requests_running": running,
            "vllm:num_requests_waiting": waiting,
        }
        return "".join(f"# TYPE {name} gauge\n{name} {value}\n" for name, value in gauges.items())

    # The model: wait for a slot, hold it ``latency`` seconds, write the completions.

    async def _generate(self, request: _Request) -> tuple[list[_Choice], int, int]:
        queued_at, waits = time.perf_counter(), self._slot.locked()  # no free slot: it queues
        self._enter("queued", waits)
        async with self._slot:  # (cancelled while queued: only at shutdown, after the last stats)
            started = time.perf_counter()
            self._enter("queued", -waits)
            self._enter("active", 1)
            self._tally["wait_seconds"] += started - queued_at
            try:
                prompt_tokens = max(1, math.ceil(len(request.prompt) / CHARS_PER_TOKEN))
                cached = min(self._cached_chars(request.prompt) // CHARS_PER_TOKEN, prompt_tokens - 1)
                choices = [self._choice(request, i) for i in range(request.n)]
                await asyncio.sleep(self.latency + self.prefill_per_token * (prompt_tokens - cached))
            finally:
                self._enter("active", -1)
                self._tally["busy_seconds"] += time.perf_counter() - started
        self._tally["requests"] += 1
        self._tally["completions"] += request.n
        self._tally["prompt_tokens"] += prompt_tokens
        self._tally["cached_tokens"] += cached
        return choices, prompt_tokens, cached

    def _cached_chars(self, prompt: str) -> int:
        """Length of the longest cached prefix (block j's hash chains blocks 0..j); remember all."""
        h = cached = 0
        for end in range(BLOCK_CHARS, len(prompt) + 1, BLOCK_CHARS):
            h = hash((h, prompt[end - BLOCK_CHARS : end]))
            cached = end if h in self._cache else cached
            self._cache.add(h)
        return cached

    def _choice(self, request: _Request, i: int) -> _Choice:
        text = self.text_fn(request.prompt, i)
        tokens = min(self.tokens_per_completion, request.max_tokens)
        if hits := [(text.find(s), s) for s in request.stop if s in text]:
            at, word = min(hits)
            return _Choice(text[:at], "word", word, tokens)
        if tokens < self.tokens_per_completion:
            return _Choice(text[: tokens * CHARS_PER_TOKEN], "limit", "", tokens)
        return _Choice(text, "eos", "", tokens)


# The two dialects: a request parser and an answer writer each.


def _parse_openai(data: dict[str, Any]) -> _Request:
    if data.get("stream"):
        raise _BadRequest("the fake server does not stream")
    limit = _integer(data, "max_tokens", default=_UNLIMITED, minimum=1)
    return _request(data, n=_integer(data, "n", default=1, minimum=1), max_tokens=limit)


def _openai_body(data: dict[str, Any], choices: list[_Choice], prompt: int, cached: int) -> Any:
    finish = {"eos": "stop", "word": "stop", "limit": "length"}
    out = [
        {"index": i, "text": c.text, "logprobs": None, "finish_reason": finish[c.stop_type]}
        for i, c in enumerate(choices)
    ]
    completion = sum(c.tokens for c in choices)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    details = {"prompt_tokens_details": {"cached_tokens": cached}}
    head = {"id": "cmpl-fake", "object": "text_completion", "model": data.get("model") or "fake"}
    return head | {"created": int(time.time()), "choices": out, "usage": usage | details}


def _parse_native(data: dict[str, Any]) -> _Request:
    limit = _integer(data, "n_predict", default=-1, minimum=-1)
    n = _integer(data, "n_cmpl", default=1, minimum=1)
    return _request(data, n=n, max_tokens=limit if limit >= 0 else _UNLIMITED)


def _native_body(data: dict[str, Any], choices: list[_Choice], prompt: int, cached: int) -> Any:
    timings = {"prompt_n": prompt - cached, "cache_n": cached}
    items = [
        {"index": i, "content": c.text, "stop": True, "stop_type": c.stop_type}
        | {"stopping_word": c.stopping_word, "tokens_predicted": c.tokens, "tokens_evaluated": prompt}
        | {"tokens_cached": prompt + c.tokens, "timings": timings | {"predicted_n": c.tokens}}
        for i, c in enumerate(choices)
    ]
    return items if len(items) > 1 else items[0]


def _parse_sglang(data: dict[str, Any]) -> _Request:
    text, params = data.get("text"), data.get("sampling_params") or {}
    if isinstance(text, list):  # a batch: the fake takes n copies of one prompt
        if not text or any(t != text[0] for t in text):
            raise _BadRequest(
                "'text' as a list must repeat one prompt (the fake takes one prompt per request)"
            )
        text, copies = text[0], len(text)
    else:
        copies = 1
    if not isinstance(params, dict):
        raise _BadRequest("'sampling_params' must be an object")
    n = _integer(params, "n", default=1, minimum=1)
    if copies > 1 and n > 1:
        raise _BadRequest("send either a list of texts or sampling_params.n, not both")
    limit = _integer(params, "max_new_tokens", default=128, minimum=0)
    return _request({"prompt": text, "stop": params.get("stop")}, n=max(n, copies), max_tokens=limit)


def _sglang_body(data: dict[str, Any], choices: list[_Choice], prompt: int, cached: int) -> Any:
    def finish(c: _Choice) -> dict[str, Any]:
        if c.stop_type == "limit":
            return {"type": "length", "length": c.tokens}
        return {"type": "stop", "matched": c.stopping_word if c.stop_type == "word" else 2}  # 2: eos id

    items = []
    for i, c in enumerate(choices):  # the first completion evaluates the prompt; the others find it cached
        meta = {"id": f"fake-{i}", "finish_reason": finish(c), "prompt_tokens": prompt}
        meta |= {
            "completion_tokens": c.tokens,
            "cached_tokens": cached if i == 0 else max(cached, prompt - 1),
        }
        items.append({"text": c.text, "output_ids": list(range(c.tokens)), "meta_info": meta})
    return items if isinstance(data.get("text"), list) or len(items) > 1 else items[0]


_DIALECTS = {
    "/v1/completions": (_parse_openai, _openai_body),
    "/completion": (_parse_native, _native_body),
    "/generate": (_parse_sglang, _sglang_body),
}
_LOAD_ROUTES = ("/metrics", "/props", "/get_load", "/server_info")
_PROMETHEUS = "text/plain; version=0.0.4"
_INFO = {"model_path": "fake", "served_model_name": "fake", "is_generation": True}
_READS = {
    "/health": {"status": "ok"},
    "/v1/models": {"object": "list", "data": [{"id": "fake"}]},
    "/server_info": _INFO,
    "/model_info": _INFO,
    "/get_server_info": _INFO,
    "/get_model_info": _INFO,
}


def _request(data: dict[str, Any], *, n: int, max_tokens: int) -> _Request:
    prompt, stop = data.get("prompt"), data.get("stop")
    if not isinstance(prompt, str):
        raise _BadRequest("'prompt' must be a string (the fake takes one prompt per request)")
    stop = [stop] if isinstance(stop, str) else stop
    if not (stop is None or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise _BadRequest("'stop' must be a string or a list of strings")
    return _Request(prompt, n, max_tokens, tuple(s for s in stop or () if s))


def _integer(data: dict[str, Any], key: str, *, default: int, minimum: int) -> int:
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise _BadRequest(f"'{key}' must be an integer >= {minimum}, got {value!r}")
    return default if value is None else value


async def close_connections(open_tasks: set[asyncio.Task[Any]], *, rounds: int = 200) -> None:
    """Cancel every connection task of a closed ``asyncio.Server`` and wait for them to end.

    A connection accepted just before ``Server.close()`` may still have an accept step or an unstarted
    handler task queued; cancelled before its first step, a handler never reaches the ``finally`` that
    closes its socket, which then leaks (a ``ResourceWarning`` when collected). So the loop first runs
    until every other task is a started handler (one that registered itself in ``open_tasks``) or
    ``rounds`` iterations have passed, and only then cancels.
    """
    current = asyncio.current_task()
    for _ in range(rounds):
        if asyncio.all_tasks() - {current} <= open_tasks:
            break
        await asyncio.sleep(0)
    tasks = set(open_tasks)  # the connections kept alive, and requests in flight
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class HttpRequest(NamedTuple):
    method: str
    path: str  # without the query string
    target: str  # as sent
    headers: dict[str, str]  # names in lower case
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> HttpRequest:
    """One HTTP/1.1 request with a Content-Length body; ValueError if it is malformed."""
    request_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, version = request_line.split()
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
    if "transfer-encoding" in headers:
        raise ValueError("chunked bodies are not supported; send Content-Length")
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return HttpRequest(method, target.partition("?")[0], target, headers, body, keep)


def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    keep: bool,
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
) -> None:
    """Write one HTTP/1.1 response (the caller drains)."""
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers)]
    head += [f"Content-Length: {len(body)}", *([] if keep else ["Connection: close"]), "", ""]
    writer.write("\r\n".join(head).encode("latin-1") + body)


def _error(status: int, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"code": status, "message": message, "type": kind}}


async def _send(writer: asyncio.StreamWriter, status: int, payload: Any, *, keep: bool) -> None:
    """JSON, or a string as Prometheus text."""
    if isinstance(payload, str):
        write_response(writer, status, payload.encode(), keep=keep, headers=(("Content-Type", _PROMETHEUS),))
    else:
        write_response(writer, status, json.dumps(payload).encode(), keep=keep)
    await writer.drain()


def main(argv: list[str] | None = None) -> None:
    """``python -m agent.fakes.server --port 8080``: the fake server as its own process, until killed
    (for benchmarks that must not share a process with it, and for fault runs that kill it)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m agent.fakes.server", description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.01, help="seconds a request holds its slot")
    parser.add_argument("--slots", type=int, default=8, help="requests processed at once")
    parser.add_argument("--tokens", type=int, default=16, help="tokens per completion")
    parser.add_argument(
        "--prefill-per-token", type=float, default=0.0, help="seconds per prompt token not in the cache"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = FakeServer(
        args.latency,
        args.slots,
        tokens_per_completion=args.tokens,
        port=args.port,
        prefill_per_token=args.prefill_per_token,
    )
    with server:
        print(f"fake server at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
