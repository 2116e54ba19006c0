"""Hot-swap the served policy after a fine-tune, and prove that the new one is what is served.

- ``SGLangSwapper``: workers swapped directly, one after the other (``router_workers`` lists those
  behind a router). ``mode="lora"``: ``POST /load_lora_adapter``, then a 1-token ``/generate`` with
  ``lora_path=name``. ``mode="weights"``: ``POST /update_weights_from_disk`` with
  ``weight_version=name``; ``GET /model_info`` and a probe's ``meta_info.weight_version`` must agree.
- ``VLLMSwapper``: ``POST /v1/load_lora_adapter`` (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); then
  ``GET /v1/models`` must list it and a 1-token ``/v1/completions`` with ``"model": name`` work.
- ``servers.swap_llamacpp.LlamaCppSwapper``: llama.cpp cannot load a new adapter file into a
  running server, so the embedded server restarts on its port with the new file applied from its
  first request (checked with ``GET /lora-adapters``).

Requests during a swap. SGLang weights: the update takes the writer side of a lock each generate
request holds as a reader, so it waits for those in flight and new ones queue behind it: none is lost
(``abort_all_requests`` is never set); while workers are swapped in turn, versions are mixed. LoRA:
the new adapter is loaded next to the old, which is unloaded only with ``unload_previous``, after the
new one is verified and ``on_verified(name)`` has pointed the clients at it (``backend.adapter =
name``); SGLang's unload waits for requests still using it. llama.cpp: between stop and healthy,
clients see connection errors, which the endpoint's retry layer retries (requests cut by the stop
too, then on the new adapter): delayed, not lost, while its back-off (``retry_window``) covers the
restart. The default ``AGENT_RETRY__ATTEMPTS=4`` backs off 3.5 s; the bundled model restarts in
seconds (7 s under load): use ``AGENT_RETRY__ATTEMPTS=8`` (35.5 s). Until the scale is set
(milliseconds), requests run without the adapter.

HTTP calls retry transient errors only (tenacity, as ``agent.clients.endpoint``). A failed swap
raises ``SwapError``; ``rollback=True`` restores the workers that took the new model. Left out:
``pause_generation``, tensor/NCCL weight updates, vLLM sleep/wake, llama.cpp router mode, rolling
back after a cancellation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self

import httpx
import structlog

from agent.clients.endpoint import Guard, RetryPolicy
from agent.clients.wire import send
from agent.errors import (
    AgentError,
    ConfigError,
    EndpointProtocolError,
    EndpointRejected,
)

__all__ = [
    "SGLangSwapper",
    "SwapError",
    "SwapReport",
    "Swapper",
    "VLLMSwapper",
    "retry_window",
    "router_workers",
]

log = structlog.get_logger(__name__)

OnVerified = Callable[[str], Awaitable[None] | None]
_Step = Callable[[str, str, str], Awaitable[None]]  # (worker url, name, path)


@dataclass(frozen=True, slots=True)
class SwapReport:
    backend: str
    name: str
    path: str
    seconds: float
    verified: bool
    weight_version: str | None
    workers: tuple[str, ...]


class SwapError(AgentError):
    """A swap failed. ``swapped``: workers that took the new model (including one whose check then
    failed); ``failed``: the worker where it stopped; ``rolled_back``: those restored afterwards."""

    def __init__(self, message: str, *, swapped: Sequence[str] = (), failed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.swapped, self.failed = tuple(swapped), tuple(failed)
        self.rolled_back: tuple[str, ...] = ()


class Swapper(Protocol):
    async def swap(self, *, name: str, path: Path | str) -> SwapReport:
        """Load ``name`` from ``path``, make it the one the policy uses, verify it."""
        ...

    async def current(self) -> str | None:
        """The name served now; None for the base model."""
        ...


def retry_window(policy: RetryPolicy) -> float:
    """Seconds the endpoint retry layer backs off in all before giving up (jitter not counted)."""
    return sum(min(policy.initial_wait * 2**i, policy.max_wait) for i in range(policy.attempts - 1))


class _Http:
    """HTTP calls with transient errors retried and statuses mapped to the error tree."""

    def __init__(self, client: httpx.AsyncClient | None, *, timeout: float, retry: RetryPolicy) -> None:
        self._own = client is None
        self.client = client or httpx.AsyncClient(timeout=timeout)
        self.guard = Guard("swap", timeout=timeout, retry=retry)

    async def call(self, method: str, url: str, payload: Any = None) -> httpx.Response:
        return await self.guard.call(lambda: send(self.client, method, url, payload, message=_server_message))

    async def json(self, method: str, url: str, payload: Any = None) -> Any:
        response = await self.call(method, url, payload)
        try:
            return response.json()
        except ValueError as exc:
            raise EndpointProtocolError(f"{url} answered non-JSON: {response.text[:200]!r}", url=url) from exc

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


def _server_message(response: httpx.Response) -> str:
    """The error text of SGLang (``error_message``, ``message``), vLLM (``error.message``), FastAPI."""
    try:
        body = response.json()
        error = body.get("error")
        error = error.get("message") if isinstance(error, dict) else error
        return str(body.get("error_message") or body.get("message") or error or body.get("detail") or body)
    except (ValueError, AttributeError):
        return response.text


def _require(ok: bool, message: str, *, url: str) -> None:
    if not ok:
        raise EndpointProtocolError(message, url=url)


def _check_success(data: Any, *, url: str) -> None:
    """SGLang's ``{"success": bool, ...}``: false is a refusal, with the server's message."""
    if not isinstance(data, dict) or data.get("success") is not True:
        message = (data.get("error_message") or data.get("message")) if isinstance(data, dict) else data
        raise EndpointRejected(f"{url} refused: {message}", url=url)


@dataclass(eq=False, kw_only=True)
class _Swapper(ABC):
    backend: ClassVar[str]
    probe: str = "1 + 1 ="
    verify: bool = True
    rollback: bool = False
    client: httpx.AsyncClient | None = field(default=None, repr=False)
    timeout: float = 600.0
    retry: RetryPolicy = RetryPolicy()
    _workers: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = _Http(self.client, timeout=self.timeout, retry=self.retry)

    def _report(self, name: str, path: str, start: float, version: str | None) -> SwapReport:
        seconds = time.perf_counter() - start
        log.info("swap_done", backend=self.backend, name=name, seconds=round(seconds, 3))
        return SwapReport(self.backend, name, path, seconds, self.verify, version, self._workers)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(eq=False, kw_only=True)
class _RemoteSwapper(_Swapper):
    """The LoRA flow over workers: load and check each in turn; point the clients; unload the old."""

    unload_previous: bool = False
    on_verified: OnVerified | None = None
    initial: str | None = None  # the adapter the policy uses before the first swap

    def __post_init__(self) -> None:
        super().__post_init__()
        self._current = self.initial

    async def swap(self, *, name: str, path: Path | str) -> SwapReport:
        start = time.perf_counter()
        version = await self._swap(name, str(path))
        if self.on_verified is not None and (result := self.on_verified(name)) is not None:
            await result
        await self._after(name)
        return self._report(name, str(path), start, version)

    async def current(self) -> str | None:
        return self._current

    async def _swap(self, name: str, path: str) -> str | None:
        if name == self._current:
            raise ConfigError(f"adapter {name!r} is already the current one; use a new name")
        await self._rollout(name, path, apply=self._load, check=self._check, undo=self._unload)
        return None

    async def _after(self, name: str) -> None:
        previous, self._current = self._current, name
        if not self.unload_previous or previous is None:
            return
        for url in self._workers:
            try:
                await self._unload(url, previous, "")
            except AgentError as exc:  # the new adapter serves; a leftover one only costs memory
                log.warning("adapter_unload_failed", worker=url, adapter=previous, error=str(exc))

    async def _rollout(self, name: str, path: str, *, apply: _Step, check: _Step, undo: _Step) -> None:
        swapped: list[str] = []
        for url in self._workers:
            try:
                await apply(url, name, path)
                swapped.append(url)
                if self.verify:
                    await check(url, name, path)
            except AgentError as exc:
                error = SwapError(f"swap to {name!r} failed on {url}: {exc}", swapped=swapped, failed=[url])
                error.rolled_back = await _undo(swapped, name, path, undo) if self.rollback else ()
                log.warning("swap_failed", worker=url, swapped=swapped, rolled_back=error.rolled_back)
                raise error from exc

    @abstractmethod
    async def _load(self, url: str, name: str, path: str) -> None:
        """Load adapter/weights ``name`` from ``path`` on the worker at ``url``."""

    @abstractmethod
    async def _check(self, url: str, name: str, path: str) -> None:
        """Prove the worker at ``url`` serves ``name``; raise if it does not."""

    @abstractmethod
    async def _unload(self, url: str, name: str, path: str) -> None:
        """Drop ``name`` from the worker at ``url``."""


async def _undo(swapped: Sequence[str], name: str, path: str, undo: _Step) -> tuple[str, ...]:
    rolled: list[str] = []
    for url in reversed(swapped):
        try:
            await undo(url, name, path)
            rolled.append(url)
        except AgentError as exc:
            log.warning("swap_rollback_failed", worker=url, error=str(exc))
    return tuple(rolled)


async def router_workers(router_url: str, *, client: httpx.AsyncClient | None = None) -> tuple[str, ...]:
    """The worker URLs behind an SGLang router (``GET /workers``), to swap each one directly."""
    http, url = _Http(client, timeout=30.0, retry=RetryPolicy()), f"{router_url.rstrip('/')}/workers"
    try:
        data = await http.json("GET", url)
    finally:
        await http.aclose()
    try:
        urls = tuple(str(worker["url"]).rstrip("/") for worker in data["workers"])
    except (KeyError, TypeError) as exc:
        raise EndpointProtocolError(f"{url} sent an unexpected worker list: {exc!r}", url=url) from exc
    if other := [u for u in urls if not u.startswith(("http://", "https://"))]:
        raise ConfigError(f"workers {other} are not HTTP workers; they cannot be swapped here")
    return urls


@dataclass(eq=False)
class SGLangSwapper(_RemoteSwapper):
    """A LoRA adapter (``mode="lora"``) or the weights (``mode="weights"``) on SGLang workers.

    Weights mode: the update waits for the requests in flight (none is lost; ``abort_all_requests``
    is never set). It keeps each worker's weights path (``/model_info`` at first) to roll back to.
    """

    backend: ClassVar[str] = "sglang"
    worker_urls: Sequence[str]
    mode: Literal["lora", "weights"] = field(default="lora", kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.worker_urls or isinstance(self.worker_urls, str):
            raise ConfigError("SGLangSwapper needs a list of worker URLs")
        self._workers = tuple(u.rstrip("/") for u in self.worker_urls)
        self._paths: dict[str, tuple[str | None, str | None]] = {}  # worker -> (path, weight_version)
        self._previous: dict[str, tuple[str | None, str | None]] = {}

    async def current(self) -> str | None:
        if self.mode == "lora":
            return self._current
        versions = {(await self._model_info(url)).get("weight_version") for url in self._workers}
        if len(versions) > 1:
            raise SwapError(f"the workers serve different weight versions: {sorted(map(str, versions))}")
        return versions.pop()

    async def _swap(self, name: str, path: str) -> str | None:
        if self.mode == "lora":
            return await super()._swap(name, path)
        await self._rollout(name, path, apply=self._update, check=self._check_weights, undo=self._restore)
        return name

    async def _after(self, name: str) -> None:
        if self.mode == "lora":
            await super()._after(name)

    async def _load(self, url: str, name: str, path: str) -> None:
        payload = {"lora_name": name, "lora_path": path, "pinned": False}
        _check_success(await self._http.json("POST", f"{url}/load_lora_adapter", payload), url=url)

    async def _check(self, url: str, name: str, path: str) -> None:
        await self._generate(url, lora=name)

    async def _unload(self, url: str, name: str, path: str) -> None:
        data = await self._http.json("POST", f"{url}/unload_lora_adapter", {"lora_name": name})
        _check_success(data, url=url)

    async def _update(self, url: str, name: str, path: str) -> None:
        if url not in self._paths:
            info = await self._model_info(url)
            self._paths[url] = (info.get("model_path"), info.get("weight_version"))
        self._previous[url] = self._paths[url]
        await self._load_weights(url, path, name)

    async def _check_weights(self, url: str, name: str, path: str) -> None:
        version = (await self._model_info(url)).get("weight_version")
        _require(version == name, f"{url}/model_info reports weight_version {version!r}", url=url)
        served = await self._generate(url, lora=None)
        _require(served == name, f"{url}/generate ran on weight_version {served!r}", url=url)

    async def _restore(self, url: str, name: str, path: str) -> None:
        old_path, old_version = self._previous[url]
        if not old_path:
            raise ConfigError(f"{url}: the path of the previous weights is unknown; cannot roll back")
        await self._load_weights(url, old_path, old_version)

    async def _load_weights(self, url: str, path: str, version: str | None) -> None:
        # abort_all_requests stays false: the update waits for the requests in flight.
        payload = {"model_path": path} | ({"weight_version": version} if version is not None else {})
        _check_success(await self._http.json("POST", f"{url}/update_weights_from_disk", payload), url=url)
        self._paths[url] = (path, version)

    async def _model_info(self, url: str) -> dict[str, Any]:
        info = await self._http.json("GET", f"{url}/model_info")
        _require(isinstance(info, dict), f"{url}/model_info sent {str(info)[:200]}", url=url)
        return info

    async def _generate(self, url: str, *, lora: str | None) -> str | None:
        """A 1-token probe; returns ``meta_info.weight_version``."""
        payload: dict[str, Any] = {"text": self.probe, "sampling_params": {"max_new_tokens": 1}}
        data = await self._http.json(
            "POST", f"{url}/generate", payload | ({"lora_path": lora} if lora else {})
        )
        item = data[0] if isinstance(data, list) and data else data
        ok = isinstance(item, dict) and isinstance(item.get("text"), str)
        _require(ok, f"{url}/generate probe sent {str(data)[:200]}", url=url)
        return (item.get("meta_info") or {}).get("weight_version")


@dataclass(eq=False)
class VLLMSwapper(_RemoteSwapper):
    """A LoRA adapter on a vLLM server (``--enable-lora``, runtime LoRA updates allowed)."""

    backend: ClassVar[str] = "vllm"
    url: str
    base_model: str = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._workers = (self.url.rstrip("/"),)

    async def _load(self, url: str, name: str, path: str) -> None:  # 200 text/plain on success
        await self._http.call("POST", f"{url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def _check(self, url: str, name: str, path: str) -> None:
        data = await self._http.json("GET", f"{url}/v1/models")
        models = {m.get("id"): m for m in data.get("data", [])} if isinstance(data, dict) else {}
        _require(name in models, f"{url}/v1/models lacks {name!r}: {sorted(map(str, models))}", url=url)
        parent = models[name].get("parent")
        _require(parent in (None, self.base_model), f"{name!r} is an adapter of {parent!r}", url=url)
        payload = {"model": name, "prompt": self.probe, "max_tokens": 1}
        data = await self._http.json("POST", f"{url}/v1/completions", payload)
        ok = isinstance(data, dict) and bool(data.get("choices"))
        _require(ok, f"{url}/v1/completions probe sent {str(data)[:200]}", url=url)

    async def _unload(self, url: str, name: str, path: str) -> None:
        await self._http.call("POST", f"{url}/v1/unload_lora_adapter", {"lora_name": name})
