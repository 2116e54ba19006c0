"""Hot-swapping the embedded llama.cpp server's LoRA adapter.

llama.cpp cannot load a new adapter file into a running server, so a swap restarts the server on
the same port with the new adapter applied (``lora_scale``) from its first request. While it
restarts, clients see refused connections, which the endpoint's retry layer treats as transient:
requests are delayed, not lost, as long as the retry window covers the restart (see
``servers.swap.retry_window``; ``AGENT_RETRY__ATTEMPTS=8`` gives about 35 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import structlog

from agent.errors import AgentError, ConfigError, ServerStartError
from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig
from servers.swap import SwapError, SwapReport, _require, _Swapper

__all__ = ["LlamaCppSwapper"]

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class LlamaCppSwapper(_Swapper):
    """The LoRA of a started ``EmbeddedServer``, swapped by restarting it on its port with the new file.

    ``rollback`` (on by default: a failed start leaves no server) restarts the previous configuration,
    its adapter at ``scale``.
    """

    backend: ClassVar[str] = "llamacpp"
    server: EmbeddedServer
    scale: float = field(default=1.0, kw_only=True)
    rollback: bool = field(default=True, kw_only=True)
    timeout: float = field(default=60.0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._name: str | None = None

    async def swap(self, *, name: str, path: Path | str) -> SwapReport:
        url, adapter = self.server.url, await anyio.Path(path).absolute()
        if not url or self.server.process is None:
            raise ConfigError("start the embedded server before swapping its adapter")
        if not await adapter.is_file():
            raise ConfigError(f"no GGUF LoRA adapter at {adapter}")
        start = time.perf_counter()
        previous = replace(self.server.config, port=httpx.URL(url).port or 0)
        try:
            await self._start(replace(previous, lora=(Path(adapter),)))
            if self.verify:
                await self._verify(str(adapter))
        except AgentError as exc:
            swapped = [] if isinstance(exc, ServerStartError) else [url]
            error = SwapError(f"swap of {url} to {name!r} failed: {exc}", swapped=swapped, failed=[url])
            error.rolled_back = await self._undo(previous) if self.rollback else ()
            raise error from exc
        self._name, self._workers = name, (url,)
        return self._report(name, str(adapter), start, None)

    async def current(self) -> str | None:
        applied = [e for e in await self._adapters() if e.get("scale")]
        return (self._name or Path(str(applied[0].get("path"))).stem) if applied else None

    async def _start(self, config: EmbeddedServerConfig) -> None:
        """Restart on the same port with ``config``, its adapter applied from the first request on."""
        config = replace(config, lora_scale=self.scale if config.lora else 0.0)
        with anyio.CancelScope(shield=True):  # never leave the port without a server
            await anyio.to_thread.run_sync(self.server.restart, config)

    async def _verify(self, adapter: str) -> None:
        url = self.server.url
        entry = next((e for e in await self._adapters() if e.get("id") == 0), {})
        _require(entry.get("path") == adapter, f"{url}/lora-adapters has {entry.get('path')!r}", url=url)
        _require(
            entry.get("scale") == self.scale, f"{url}/lora-adapters: scale {entry.get('scale')}", url=url
        )
        data = await self._http.json("POST", f"{url}/completion", {"prompt": self.probe, "n_predict": 1})
        _require(isinstance(data, dict) and "content" in data, f"{url}/completion sent {data}", url=url)

    async def _adapters(self) -> list[dict[str, Any]]:
        url = f"{self.server.url}/lora-adapters"
        data = await self._http.json("GET", url)
        _require(isinstance(data, list), f"{url} sent {str(data)[:200]}", url=url)
        return [e for e in data if isinstance(e, dict)]

    async def _undo(self, previous: EmbeddedServerConfig) -> tuple[str, ...]:
        try:
            await self._start(previous)
        except AgentError as exc:
            log.warning("swap_rollback_failed", worker=self.server.url, error=str(exc))
            return ()
        return (self.server.url,)
