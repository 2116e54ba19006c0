"""The embedded CPU server: llama.cpp's C++ server from the ``xllamacpp`` wheel, in a child process.

``EmbeddedServer`` starts ``python -m servers.llamacpp`` (the ``main`` below), which loads a GGUF
into ``xllamacpp.Server`` listening on 127.0.0.1. Running it in its own process keeps llama.cpp's
busy-polling threads and its verbose native log (written to a log file) away from the caller, and
makes stopping it reliable. The server gives continuous batching over ``parallel`` slots, ``n``
completions per request, log-probabilities, a prefix cache (``cached_tokens``) and per-request LoRA.

Run one at a time on a small machine: two servers' worker threads starve each other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio

from agent.errors import ConfigError
from agent.settings import EmbeddedSettings
from servers.models import cache_dir, ensure_bundled_model, get_model
from servers.process import ManagedProcess, free_port

__all__ = ["EmbeddedServer", "EmbeddedServerConfig", "main"]


@dataclass(frozen=True)
class EmbeddedServerConfig:
    """What to serve and how: the catalog model called ``model`` (``servers.models.MODELS``; by default
    the bundled SmolLM2-135M-Instruct), fetched on first use, or the GGUF at ``model_path``. The
    catalog entry's traits (prompt format, ``swa_full``) apply to a ``model_path`` too."""

    model_path: Path | None = None
    model: str = "smollm2-135m"
    parallel: int = 8
    threads: int = 2
    ctx_per_slot: int = 2048
    port: int = 0
    poll: int = 50
    lora: tuple[Path, ...] = ()
    lora_scale: float = 0.0  # scale every adapter starts with (0: loaded, applied only per request)
    log_file: Path | None = None
    startup_timeout: float = 300.0
    cache_reuse: int = 0  # llama.cpp --cache-reuse: shortest chunk reused from a slot's cache by KV shifting
    ram_cache_mib: int | None = None  # host-RAM prompt cache; None: llama.cpp's 8 GiB, 0 with adapters
    swa_full: bool | None = None  # full-size KV cache for sliding-window models (Gemma 3); None: the model's

    def __post_init__(self) -> None:
        get_model(self.model)  # an unknown name fails here, before anything starts
        if self.lora and self.ram_cache_mib:
            raise ConfigError(
                "the host-RAM prompt cache cannot be used with LoRA adapters: llama.cpp restores a "
                "cached prompt state without checking which adapter computed it. Leave "
                "AGENT_EMBEDDED__RAM_CACHE_MIB unset (or 0) when adapters are loaded"
            )
        if self.cache_reuse < 0 or (self.ram_cache_mib is not None and self.ram_cache_mib < 0):
            raise ConfigError("cache_reuse and ram_cache_mib must be >= 0")

    @classmethod
    def from_settings(cls, settings: EmbeddedSettings) -> EmbeddedServerConfig:
        """The server ``AGENT_EMBEDDED__*`` settings describe."""
        return cls(
            model_path=settings.model_path,
            model=settings.model,
            parallel=settings.parallel,
            threads=settings.threads,
            ctx_per_slot=settings.ctx_per_slot,
            port=settings.port,
            poll=settings.poll,
            lora=settings.lora,
            log_file=settings.log_file,
            startup_timeout=settings.startup_timeout,
            cache_reuse=settings.cache_reuse,
            ram_cache_mib=settings.ram_cache_mib,
            swa_full=settings.swa_full,
        )

    def command(self, *, model: Path, port: int) -> list[str]:
        command = [sys.executable, "-m", "servers.llamacpp", "--model", str(model), "--port", str(port)]
        command += ["--parent-pid", str(os.getpid())]
        command += ["--parallel", str(self.parallel), "--threads", str(self.threads)]
        command += ["--ctx", str(self.ctx_per_slot * self.parallel), "--poll", str(self.poll)]
        for adapter in self.lora:
            command += ["--lora", str(adapter)]
        if self.lora:
            command += ["--lora-scale", str(self.lora_scale)]
        if self.cache_reuse:
            command += ["--cache-reuse", str(self.cache_reuse)]
        if self.ram_cache_mib is not None:
            command += ["--ram-cache-mib", str(self.ram_cache_mib)]
        if get_model(self.model).swa_full if self.swa_full is None else self.swa_full:
            command += ["--swa-full"]
        return command


@dataclass
class EmbeddedServer:
    """Start with ``start()`` / ``stop()`` (blocking) or ``async with EmbeddedServer(config)``."""

    config: EmbeddedServerConfig = field(default_factory=EmbeddedServerConfig)
    process: ManagedProcess | None = None
    url: str = ""

    def start(self) -> str:
        """Fetch the model if needed, start the server, wait until healthy; return its base URL."""
        model = self.config.model_path or ensure_bundled_model(get_model(self.config.model))
        port = self.config.port or free_port()
        log_file = self.config.log_file or cache_dir() / "logs" / "llama-server.log"
        self.url = f"http://127.0.0.1:{port}"
        self.process = ManagedProcess.start(
            self.config.command(model=model, port=port),
            health_url=f"{self.url}/health",
            log_file=log_file,
            startup_timeout=self.config.startup_timeout,
        )
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self, config: EmbeddedServerConfig | None = None) -> str:
        """Stop and start again on the same port (so the same URL), with ``config`` if given."""
        if self.process is None or not self.url:
            raise ConfigError("the embedded server is not running; start() it before restart()")
        port = int(self.url.rsplit(":", 1)[1])
        self.stop()
        self.config = replace(config or self.config, port=port)
        return self.start()

    @property
    def prompt_format(self) -> str:
        """The prompt format of the catalog model (the bundled model speaks ChatML)."""
        return get_model(self.config.model).prompt_format

    async def __aenter__(self) -> EmbeddedServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)


def main(argv: list[str] | None = None) -> None:
    """Serve a GGUF on 127.0.0.1 until terminated (the child process of ``EmbeddedServer``)."""
    parser = argparse.ArgumentParser(prog="python -m servers.llamacpp", description=main.__doc__)
    parser.add_argument("--model", required=True, type=Path, help="GGUF file to serve")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--parallel", type=int, default=8, help="slots (concurrent sequences)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=16384, help="total context, split across slots")
    parser.add_argument("--poll", type=int, default=50, help="worker busy-poll level, 0-100")
    parser.add_argument("--lora", type=Path, action="append", default=[], help="GGUF LoRA adapter")
    parser.add_argument("--lora-scale", type=float, default=0.0, help="initial scale of every adapter")
    parser.add_argument(
        "--cache-reuse",
        type=int,
        default=0,
        help="shortest chunk reused from a slot's cache by KV shifting (0: off)",
    )
    parser.add_argument(
        "--ram-cache-mib", type=int, help="host-RAM prompt cache size (default: llama.cpp's; 0 with adapters)"
    )
    parser.add_argument(
        "--swa-full",
        action="store_true",
        help="full-size KV cache for sliding-window-attention models (Gemma 3): without it llama.cpp keeps "
        "only the window, and a slot cannot reuse a cached prefix longer than it",
    )
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone (no orphan servers)")
    args = parser.parse_args(argv)

    import xllamacpp as xlc  # the `cpu` extra; imported here so the package imports without it

    params = xlc.CommonParams()
    params.model.path = str(args.model)
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cont_batching = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.cpuparams.poll = args.poll
    params.cpuparams_batch.poll = args.poll
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.endpoint_metrics = True
    params.endpoint_slots = True
    params.n_cache_reuse = args.cache_reuse
    if args.ram_cache_mib is not None:
        params.cache_ram_mib = args.ram_cache_mib
    params.swa_full = args.swa_full
    if args.lora:
        # llama.cpp's RAM prompt cache restores prompt states without checking which adapters they
        # were computed with, so a request could reuse another adapter's state: keep it off.
        # (Each slot's own cache is dropped on an adapter change, and still gives prefix reuse.)
        params.cache_ram_mib = 0
        params.lora_init_without_apply = args.lora_scale == 0
        params.lora_adapters = [xlc.CommonAdapterLoraInfo(str(p), args.lora_scale) for p in args.lora]
    server = xlc.Server(params)
    print(f"serving {args.model} at {server.listening_address}", flush=True)
    while args.parent_pid is None or os.getppid() == args.parent_pid:
        time.sleep(1.0)
    print("parent process gone; stopping", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
