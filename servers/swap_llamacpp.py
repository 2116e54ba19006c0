"""Hot-swapping the embedded llama.cpp server's LoRA adapter.

llama.cpp cannot load a new adapter file into a running server, so a swap restarts the server on
the same port with the new adapter applied (``lora_scale``) from its first request. While it
restarts, clients see refused connections, which the endpoint's retry layer treats as transient:
requests are delayed, not lost, as long as the retry window covers the restart (see
``servers.swap.retry_window``; ``AGENT_RETRY__ATTEMPTS=8`` gives about 35 s).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
        """Serve the adapter at ``path`` alone, applied to every request at ``scale``."""
        return await self.serve(name=name, adapters=(path,), scale=self.scale)

    async def serve(self, *, name: str, adapters: Sequence[Path | str], scale: float) -> SwapReport:
        """Restart with exactly ``adapters`` loaded (ids 0, 1, ... in this order), each at ``scale``.

        With ``scale=0`` they are loaded but applied only where a request names them (the
        ``lora`` field: a policy adapter and critic adapters on one server); an empty list serves
        the base model. Verified by ``/lora-adapters`` and a probe; rolled back on failure.
        """
        url = self.server.url
        if not url or self.server.process is None:
            raise ConfigError("start the embedded server before swapping its adapter")
        files: tuple[Path, ...] = ()
        for given in adapters:
            file = await anyio.Path(given).absolute()
            if not await file.is_file():
                raise ConfigError(f"no GGUF LoRA adapter at {file}")
            files += (Path(file),)
        start = time.perf_counter()
        previous = replace(self.server.config, port=httpx.URL(url).port or 0)
        try:
            await self._start(replace(previous, lora=files, lora_scale=scale))
            if self.verify:
                await self._verify(files, scale)
        except AgentError as exc:
            swapped = [] if isinstance(exc, ServerStartError) else [url]
            error = SwapError(f"swap of {url} to {name!r} failed: {exc}", swapped=swapped, failed=[url])
            error.rolled_back = await self._undo(previous) if self.rollback else ()
            raise error from exc
        self._name, self._workers = name, (url,)
        return self._report(name, ", ".join(map(str, files)), start, None)

    async def current(self) -> str | None:
        applied = [e for e in await self._adapters() if e.get("scale")]
        return (self._name or Path(str(applied[0].get("path"))).stem) if applied else None

    async def _start(self, config: EmbeddedServerConfig) -> None:
        """Restart on the same port with ``config`` (its adapters at ``config.lora_scale``)."""
        with anyio.CancelScope(shield=True):  # never leave the port without a server
            await anyio.to_thread.run_sync(self.server.restart, config)

    async def _verify(self, files: tuple[Path, ...], scale: float) -> None:
        url = self.server.url
        entries = {e.get("id"): e for e in await self._adapters()}
        listed = f"{url}/lora-adapters lists {len(entries)} adapters, not {len(files)}"
        _require(len(entries) == len(files), listed, url=url)
        for i, file in enumerate(files):
            entry = entries.get(i, {})
            _require(
                entry.get("path") == str(file), f"{url}/lora-adapters has {entry.get('path')!r}", url=url
            )
            _require(entry.get("scale") == scale, f"{url}/lora-adapters: scale {entry.get('scale')}", url=url)
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
