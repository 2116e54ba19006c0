"""treeloop as an OpenAI-compatible endpoint: any agent, SDK or UI uses its solvers by a base URL.

    python -m agent.serve                                   # http://127.0.0.1:8000/v1, embedded model
    python -m agent.serve --port 8080 --critics checked     # another port, default critics
    AGENT_POLICY__URL=http://127.0.0.1:30000 AGENT_POLICY__BACKEND=sglang python -m agent.serve

Then, from any OpenAI client::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="treeloop-mcts", messages=[{"role": "user", "content": "Tom has 3 apples ..."}],
        extra_body={"simulations": 16},
    )
    reply.choices[0].message.content      # the chosen solution
    reply.model_extra["treeloop"]         # answer, votes, selector answers, tree id

Routes:

- ``GET /v1/models``: the solvers as models, ``treeloop-greedy``, ``treeloop-sc``, ``treeloop-rerank``
  and ``treeloop-mcts``.
- ``POST /v1/chat/completions`` (the last user message is the problem) and ``POST /v1/completions``
  (the prompt is the problem). Solver options ride in the body as extra fields, validated (a bad one
  is a 400 in OpenAI's error format, naming the field): ``n`` (samples of sc and rerank: the reply
  always has one choice, the chosen solution), ``simulations``, ``preset``, ``max_tokens`` (per
  solution), ``token_budget`` (mcts: policy completion tokens for the whole search), ``critics``,
  ``temperature``, ``seed``, ``task`` (answer style: gsm8k, math, arith) and ``prompt_variant``.
  The reply's ``usage`` counts every token the solve spent (prompt, cached, completion, critics
  included); its ``treeloop`` object holds the answer, the votes, the selectors' answers and the
  tree id (mcts). ``stream: true`` sends server-sent events in OpenAI's chunk format: progress chunks
  while searching (an empty delta with ``treeloop.progress``: simulations, terminals, the leading
  answer), then the solution, then ``[DONE]``; ``stream_options.include_usage`` adds the usage chunk.
- ``GET /trees`` (recent searches), ``GET /trees/<id>`` (the tree viewer of ``agent.trees``, live
  while the search runs) and ``GET /trees/<id>.json``.
- ``GET /health``; ``GET /metrics`` (Prometheus: requests, errors, tokens, search latency, queue).

A client that disconnects cancels its solve: no request keeps running for it. At most
``--max-concurrent`` solves run at once and ``--max-queue`` wait; beyond that a request gets 429 with
``Retry-After``. With ``AGENT_SERVE__API_KEY`` set, ``/v1`` and ``/trees`` need ``Authorization:
Bearer <key>`` (compared in constant time, never logged). It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as Metric
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import AgentError, ConfigError, EndpointError, InputError
from agent.runtime import Policy, open_policy
from agent.search.config import PRESETS, preset
from agent.search.tree import Tree
from agent.settings import Settings, load_settings
from agent.solvers import CRITICS, CriticsKind, Solution, SolverConfig, solve_with
from agent.tasks import Problem, get_task
from agent.tasks.answers import normalize_number
from agent.trees import render_html

__all__ = ["MODELS", "Options", "build_parser", "create_app", "main"]

log = structlog.get_logger()

MODELS: dict[str, str] = {
    "treeloop-greedy": "greedy",
    "treeloop-sc": "sc",
    "treeloop-rerank": "rerank",
    "treeloop-mcts": "mcts",
}


# --- requests ---------------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


class Options(BaseModel):
    """The solver options every request may carry (OpenAI fields this server does not use are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=64)
    simulations: int | None = Field(default=None, ge=1, le=4096)
    workers: int | None = Field(default=None, ge=1, le=64)
    preset: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    token_budget: int | None = Field(default=None, ge=1)
    critics: CriticsKind | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    task: Literal["gsm8k", "math", "arith"] = "gsm8k"
    prompt_variant: str | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(sorted(PRESETS))}")
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(Options):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Options):
    prompt: str | list[str]


# --- errors -----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"] if p != "body"]
    param = ".".join(loc) or None
    return ApiError(400, f"{param}: {first['msg']}" if param else str(first["msg"]), param=param)


# --- state ------------------------------------------------------------------------------------------


@dataclass
class Search:
    """One solve the server knows about: live while it runs, kept for ``/trees`` when done."""

    id: str
    model: str
    question: str
    started: float = field(default_factory=time.time)
    status: Literal["running", "done", "failed", "cancelled"] = "running"
    tree: Tree | None = None
    answer: str | None = None

    def progress(self) -> dict[str, Any]:
        tree = self.tree
        if tree is None:
            return {"simulations": 0, "terminals": 0, "leading_answer": None}
        answers = Counter(
            normalize_number(n.answer) for n in list(tree.nodes) if n.terminal and n.answer is not None
        )
        leading = answers.most_common(1)[0][0] if answers else None
        return {
            "simulations": tree.simulations,
            "terminals": sum(answers.values()),
            "leading_answer": leading,
        }

    def tree_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "question": self.question, "status": self.status, "nodes": []}
        if self.tree is not None:
            data |= self.tree.to_dict()
            data["id"], data["status"] = self.id, self.status
        if self.answer is not None:
            data["answer"] = self.answer
        return data


class Searches:
    """Running solves, and the last ``keep`` finished ones."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.items: OrderedDict[str, Search] = OrderedDict()

    def add(self, search: Search) -> None:
        self.items[search.id] = search
        finished = [k for k, s in self.items.items() if s.status != "running"]
        for key in finished[: max(0, len(finished) - self.keep)]:
            del self.items[key]

    def get(self, search_id: str) -> Search:
        if search_id not in self.items:
            raise ApiError(
                404, f"no search {search_id!r} (finished searches are kept for a while)", code="not_found"
            )
        return self.items[search_id]


class Admission:
    """At most ``running`` solves at once and ``waiting`` more queued; the rest are told to retry."""

    def __init__(self, running: int, waiting: int) -> None:
        self.capacity = running + waiting
        self.semaphore = anyio.Semaphore(running)
        self.admitted = 0

    def admit(self) -> Callable[[], None]:
        """Count one request in, or raise 429; returns its release (idempotent)."""
        if self.admitted >= self.capacity:
            raise ApiError(
                429,
                "the server is busy: every solve slot and queue place is taken; retry after a few seconds",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": "2"},
            )
        self.admitted += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admitted -= 1

        return release


# --- the app ----------------------------------------------------------------------------------------


def create_app(
    settings: Settings, *, critics: CriticsKind = "arithmetic", policy: Policy | None = None
) -> Any:
    """The FastAPI app; it opens the policy from ``settings`` (or uses ``policy``) for its lifetime."""
    serve = settings.serve
    registry = CollectorRegistry()
    m_requests = Metric(
        "treeloop_requests", "Solve requests by model and status", ["model", "status"], registry=registry
    )
    m_errors = Metric("treeloop_errors", "Errors answered, by type", ["type"], registry=registry)
    m_tokens = Metric("treeloop_tokens", "Tokens spent by solves, by kind", ["kind"], registry=registry)
    m_latency = Histogram(
        "treeloop_solve_seconds",
        "Seconds per solve, by model",
        ["model"],
        buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
        registry=registry,
    )
    m_queue = Gauge("treeloop_queue_depth", "Solves waiting for a slot", registry=registry)
    m_running = Gauge("treeloop_solves_running", "Solves running", registry=registry)
    admission = Admission(serve.max_concurrent, serve.max_queue)
    searches = Searches(serve.recent_trees)
    state: dict[str, Policy] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if policy is not None:
            state["policy"] = policy
            yield
            return
        async with open_policy(settings, critics=critics) as opened:
            state["policy"] = opened
            log.info("serve_ready", policy=opened.describe())
            yield

    app = FastAPI(title="treeloop", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error_response(exc: ApiError) -> JSONResponse:
        m_errors.labels(exc.type).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    def authorize(request: Request) -> None:
        if serve.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        expected = serve.api_key.get_secret_value()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise ApiError(
                401, "missing or wrong API key (send Authorization: Bearer <key>)", code="invalid_api_key"
            )

    def solver_config(opts: Options, method: str) -> SolverConfig:
        changes: dict[str, Any] = {}
        search = preset(opts.preset or "cpu-small")
        if opts.simulations is not None:
            changes["simulations"] = opts.simulations
            changes["max_simulations"] = max(search.max_simulations, opts.simulations)
        if opts.workers is not None:
            changes["workers"] = opts.workers
        if opts.token_budget is not None:
            changes["max_tokens"] = opts.token_budget
        kwargs: dict[str, Any] = {
            "method": method,
            "search": search.with_overrides(**changes) if changes else search,
        }
        for name in ("n", "temperature", "max_tokens", "seed"):
            if getattr(opts, name) is not None:
                kwargs[name] = getattr(opts, name)
        kwargs["critics"] = opts.critics or critics
        try:
            return SolverConfig(**kwargs)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from exc

    def prepare(opts: Options, question: str) -> tuple[str, SolverConfig, Any]:
        if opts.model not in MODELS:
            raise ApiError(
                404,
                f"model {opts.model!r} does not exist; choose one of {', '.join(MODELS)}",
                param="model",
                code="model_not_found",
            )
        if not question.strip():
            raise ApiError(400, "the problem text is empty", param="messages")
        try:
            task = get_task(opts.task, prompt=opts.prompt_variant or settings.prompt)
        except ConfigError as exc:
            raise ApiError(400, str(exc), param="prompt_variant") from exc
        return MODELS[opts.model], solver_config(opts, MODELS[opts.model]), task

    async def solve(search: Search, config: SolverConfig, task: Any) -> Solution:
        """Wait for a slot, solve, record metrics; cancelled when the caller is."""

        def observe(tree: Tree) -> None:
            search.tree = tree

        m_queue.inc()
        queued = True
        try:
            async with admission.semaphore:
                m_queue.dec()
                queued = False
                m_running.inc()
                started = time.perf_counter()
                try:
                    problem = Problem(id=search.id, question=search.question)
                    solution = await solve_with(
                        state["policy"], problem, task=task, config=config, on_tree=observe
                    )
                finally:
                    m_running.dec()
        except anyio.get_cancelled_exc_class():
            search.status = "cancelled"
            m_requests.labels(search.model, "cancelled").inc()
            raise
        except AgentError as exc:
            search.status = "failed"
            m_requests.labels(search.model, "error").inc()
            raise _api_error_of(exc) from exc
        finally:
            if queued:
                m_queue.dec()
        m_latency.labels(search.model).observe(time.perf_counter() - started)
        search.status, search.answer = "done", solution.answer
        u = solution.usage
        m_tokens.labels("prompt").inc(u.prompt_tokens)
        m_tokens.labels("cached").inc(u.cached_tokens)
        m_tokens.labels("completion").inc(u.completion_tokens)
        m_requests.labels(search.model, "ok").inc()
        return solution

    def usage(solution: Solution) -> dict[str, Any]:
        u = solution.usage
        return {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        }

    def extension(search: Search, solution: Solution, method: str) -> dict[str, Any]:
        return {
            "answer": solution.answer,
            "votes": solution.votes,
            "selector_answers": solution.answers,
            "tree_id": search.id if method == "mcts" else None,
            "method": method,
            "seconds": round(solution.seconds, 3),
            "requests": solution.usage.requests,
        }

    async def run(request: Request, opts: Options, question: str, kind: Literal["chat", "text"]) -> Response:
        method, config, task = prepare(opts, question)
        release = admission.admit()
        search = Search(f"tl-{uuid.uuid4().hex[:16]}", opts.model, question.strip())
        searches.add(search)
        created = int(time.time())
        if opts.stream:
            include_usage = bool(opts.stream_options and opts.stream_options.include_usage)
            return _EventStream(
                lambda out: events(out, search, config, task, method, kind, created, include_usage), release
            )
        try:
            solution = await _until_disconnected(request, solve(search, config, task))
        finally:
            release()
        if solution is None:  # the client went away; nobody reads this
            return Response(status_code=499)
        return JSONResponse(_reply(search, solution, method, kind, created))

    def _reply(search: Search, solution: Solution, method: str, kind: str, created: int) -> dict[str, Any]:
        if kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": solution.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": solution.text, "finish_reason": "stop", "logprobs": None}
            obj = "text_completion"
        return _envelope(
            search,
            obj,
            created,
            [choice],
            usage=usage(solution),
            treeloop=extension(search, solution, method),
        )

    async def events(
        out: MemoryObjectSendStream[str],
        search: Search,
        config: SolverConfig,
        task: Any,
        method: str,
        kind: str,
        created: int,
        include_usage: bool,
    ) -> None:
        """Write the server-sent events of one streamed solve into ``out``."""
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(delta: Any, finish: str | None, **extra: Any) -> str:
            if kind == "chat":
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": finish,
                    "logprobs": None,
                }
            else:
                choice = {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}
            return _sse(_envelope(search, obj, created, [choice], **extra))

        empty: Any = {} if kind == "chat" else ""
        first: Any = {"role": "assistant", "content": ""} if kind == "chat" else ""
        await out.send(chunk(first, None, treeloop={"progress": search.progress()}))
        done, result = anyio.Event(), {}

        async def solving() -> None:
            try:
                result["solution"] = await solve(search, config, task)
            except ApiError as exc:
                result["error"] = exc
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(solving)
            last = search.progress()
            while not done.is_set():
                with anyio.move_on_after(0.5):
                    await done.wait()
                now = search.progress()
                if not done.is_set() and now != last:
                    last = now
                    await out.send(chunk(empty, None, treeloop={"progress": now}))
        if "error" in result:
            await out.send(_sse(result["error"].body()))
            await out.send("data: [DONE]\n\n")
            return
        solution: Solution = result["solution"]
        await out.send(chunk({"content": solution.text} if kind == "chat" else solution.text, None))
        await out.send(chunk(empty, "stop", treeloop=extension(search, solution, method)))
        if include_usage:
            await out.send(_sse(_envelope(search, obj, created, [], usage=usage(solution))))
        await out.send("data: [DONE]\n\n")

    async def parse(request: Request, model: type[Options]) -> Any:
        """The caller authorized, then the body as ``model``, or an ApiError naming the bad field."""
        authorize(request)
        body = await _json(request)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise _validation_error(exc) from None

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        opts = await parse(request, ChatRequest)
        users = [m for m in opts.messages if m.role == "user"]
        if not users:
            raise ApiError(400, "messages: no user message holds a problem to solve", param="messages")
        return await run(request, opts, users[-1].text(), "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        opts = await parse(request, CompletionRequest)
        prompts = [opts.prompt] if isinstance(opts.prompt, str) else opts.prompt
        if len(prompts) != 1:
            raise ApiError(400, "prompt: send one prompt per request", param="prompt")
        return await run(request, opts, prompts[0], "text")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": now, "owned_by": "treeloop"} for name in MODELS
            ],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": admission.admitted, "capacity": admission.capacity}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/trees")
    async def trees(request: Request) -> dict[str, Any]:
        authorize(request)
        return {
            "data": [
                {"id": s.id, "model": s.model, "status": s.status, "question": s.question, "answer": s.answer}
                for s in reversed(searches.items.values())
            ]
        }

    @app.get("/trees/{search_id}.json")
    async def tree_json(request: Request, search_id: str) -> dict[str, Any]:
        authorize(request)
        return searches.get(search_id).tree_json()

    @app.get("/trees/{search_id}")
    async def tree_page(request: Request, search_id: str) -> HTMLResponse:
        authorize(request)
        search = searches.get(search_id)
        page = render_html(
            [search.tree_json()], title=f"treeloop: {search_id}", live=f"/trees/{search_id}.json"
        )
        return HTMLResponse(page)

    return app


def _envelope(search: Search, obj: str, created: int, choices: list[Any], **extra: Any) -> dict[str, Any]:
    """An OpenAI completion object (or stream chunk) of ``search`` with ``choices`` and ``extra`` fields."""
    return {
        "id": search.id,
        "object": obj,
        "created": created,
        "model": search.model,
        "choices": choices,
    } | extra


def _sse(data: dict[str, Any]) -> str:
    """One server-sent event."""
    return "data: " + json.dumps(data) + "\n\n"


async def _json(request: Any) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})") from None


async def _until_disconnected(request: Any, work: Any) -> Any:
    """Await ``work``; if the client disconnects first, cancel it and return None. An ``ApiError``
    of the work is raised as itself."""
    result: dict[str, Any] = {}

    async def run_work(scope: anyio.CancelScope) -> None:
        try:
            result["value"] = await work
        except ApiError as exc:
            result["error"] = exc
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_work, tg.cancel_scope)
        while True:
            await anyio.sleep(0.2)
            if await request.is_disconnected():
                log.info("client_disconnected")
                tg.cancel_scope.cancel()
                break
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _api_error_of(exc: AgentError) -> ApiError:
    if isinstance(exc, (InputError, ConfigError)):
        return ApiError(400, str(exc))
    if isinstance(exc, EndpointError):
        return ApiError(502, f"the model server failed: {exc}", type="server_error")
    return ApiError(500, str(exc), type="server_error")


class _EventStream(StreamingResponse):
    """Server-sent events written by ``producer`` into a memory stream, which this response owns:
    when the client goes away the producer (and the solve in it) is cancelled, and the request's
    admission is given back however the stream ends, or if it never starts."""

    def __init__(
        self,
        producer: Callable[[MemoryObjectSendStream[str]], Awaitable[None]],
        release: Callable[[], None],
    ) -> None:
        self._out, self._in = anyio.create_memory_object_stream[str](64)
        self._producer, self._release = producer, release
        super().__init__(self._relay(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _relay(self) -> AsyncIterator[str]:
        async with self._in:
            async for item in self._in:
                yield item

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def produce() -> None:
            async with self._out:
                await self._producer(self._out)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await super().__call__(scope, receive, send)
                tg.cancel_scope.cancel()
        finally:
            self._release()


def build_parser() -> argparse.ArgumentParser:
    from agent.cli import add_policy_args

    parser = argparse.ArgumentParser(
        prog="python -m agent.serve",
        description="Serve treeloop's solvers as an OpenAI-compatible endpoint (models treeloop-greedy, "
        "treeloop-sc, treeloop-rerank, treeloop-mcts).",
    )
    parser.add_argument("--host", help="bind address (default: AGENT_SERVE__HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: AGENT_SERVE__PORT, else 8000)")
    parser.add_argument("--max-concurrent", type=int, help="solves running at once (default 4)")
    parser.add_argument("--max-queue", type=int, help="solves waiting beyond those; then 429 (default 16)")
    parser.add_argument(
        "--critics",
        choices=CRITICS,
        default="arithmetic",
        help="critics of rerank and mcts when a request names none (default: arithmetic); trained or "
        "checked also loads the shipped critic on the embedded server, so requests may ask for them",
    )
    add_policy_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from agent.cli import configure_logging, policy_overrides

    args = build_parser().parse_args(argv)
    overrides = policy_overrides(args)
    serve = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "max_concurrent": args.max_concurrent,
            "max_queue": args.max_queue,
        }.items()
        if v is not None
    }
    if serve:
        overrides["serve"] = serve
    try:
        settings = load_settings(**overrides)
        configure_logging(settings.log_level)
        if args.prompt is not None:
            get_task("gsm8k", prompt=args.prompt)
        app = create_app(settings, critics=args.critics)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"treeloop serving on http://{settings.serve.host}:{settings.serve.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app, host=settings.serve.host, port=settings.serve.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
