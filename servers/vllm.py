"""Launch specification for a vLLM model server (GPU machines only).

The alternative to ``servers.sglang`` for GPU deployments. A ``VLLMSpec`` is a frozen, validated
description of one ``vllm serve`` process: ``command()`` gives the argument list (never a shell
string), ``env()`` the extra environment variables, ``base_url`` + ``health_path`` the URL to poll.
``launch()`` hands these to ``servers.process.ManagedProcess``. vLLM is not installed on the CPU
machines; the tests check command lines only.

The flags used (``vllm serve <model>``, the ``vllm`` console script):

- ``--tensor-parallel-size``: GPUs per server. ``--gpu-memory-utilization``: share of GPU memory
  vLLM may take (its default is 0.9).
- ``--enable-lora`` with ``--lora-modules name=path ...`` (adapters at start),
  ``--max-loras`` (adapters in one batch, default 1) and ``--max-lora-rank`` (one of
  1, 8, 16, 32, 64, 128, 256, 320, 512; default 16). A request picks an adapter with
  ``"model": "<name>"``.
- Runtime LoRA loading (``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter``) needs the
  environment variable ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; ``env()`` sets it.
- ``--enable-prefix-caching`` / ``--no-enable-prefix-caching``: automatic prefix caching, always
  written out so the behaviour does not depend on the version's default.
- ``--enable-prompt-tokens-details``: report reused prompt tokens in
  ``usage.prompt_tokens_details.cached_tokens``.
- ``--runner pooling`` with ``--convert classify|embed|reward``: serve a reward/value model on
  ``/pooling`` and ``/classify``. ``reward`` exists only in older releases (≤ 0.11); newer ones
  convert ``*RewardModel`` with ``embed``.

Left out: sleep mode, weight transfer and every other flag; pass those through ``extra_args``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from agent.errors import ConfigError
from servers.sglang import (
    _adapter_pairs,
    _base_url,
    _check_address,
    _check_fraction,
    _check_int,
    _check_optional_name,
    _path,
    _set,
    _str_tuple,
)

if TYPE_CHECKING:
    from servers.process import ManagedProcess

__all__ = ["RUNTIME_LORA_ENV", "Convert", "Runner", "VLLMSpec", "launch", "vllm_critic", "vllm_policy"]

Runner = Literal["generate", "pooling"]
Convert = Literal["classify", "embed", "reward"]

_RUNNERS: frozenset[str] = frozenset(get_args(Runner))
_CONVERTS: frozenset[str] = frozenset(get_args(Convert))
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


@dataclass(frozen=True, slots=True)
class VLLMSpec:
    """One ``vllm serve`` process.

    ``lora_modules`` holds ``(name, path)`` pairs (a mapping is accepted and converted).
    ``enable_lora`` becomes True by itself when adapters are given or ``runtime_lora_updating`` is set.
    """

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    enable_lora: bool = False
    lora_modules: tuple[tuple[str, str], ...] = ()
    max_loras: int | None = None
    max_lora_rank: int | None = None
    runtime_lora_updating: bool = False
    enable_prefix_caching: bool = True
    enable_prompt_tokens_details: bool = True
    runner: Runner | None = None
    convert: Convert | None = None
    served_model_name: str | None = None
    extra_args: tuple[str, ...] = ()

    health_path = "/health"

    def __post_init__(self) -> None:
        _set(self, "model", _path("model", self.model))
        _set(self, "lora_modules", _adapter_pairs(self.lora_modules))
        _set(self, "extra_args", _str_tuple("extra_args", self.extra_args))
        _check_address(self.host, self.port)
        _check_int("tensor_parallel_size", self.tensor_parallel_size, minimum=1)
        _check_fraction("gpu_memory_utilization", self.gpu_memory_utilization)
        _check_optional_name("served_model_name", self.served_model_name)
        if self.runner is not None and self.runner not in _RUNNERS:
            raise ConfigError(f"runner must be one of {sorted(_RUNNERS)}, got {self.runner!r}")
        if self.convert is not None and self.convert not in _CONVERTS:
            raise ConfigError(f"convert must be one of {sorted(_CONVERTS)}, got {self.convert!r}")
        if self.convert is not None and self.runner == "generate":
            raise ConfigError(f"convert={self.convert!r} makes a pooling model; it needs runner='pooling'")
        self._check_lora()

    def _check_lora(self) -> None:
        if self.lora_modules or self.runtime_lora_updating:
            _set(self, "enable_lora", True)
        if self.max_loras is not None:
            _check_int("max_loras", self.max_loras, minimum=1)
        if self.max_lora_rank is not None and (
            isinstance(self.max_lora_rank, bool) or self.max_lora_rank not in _LORA_RANKS
        ):
            raise ConfigError(f"max_lora_rank must be one of {_LORA_RANKS}, got {self.max_lora_rank!r}")
        if not self.enable_lora and (self.max_loras is not None or self.max_lora_rank is not None):
            raise ConfigError("max_loras/max_lora_rank given but LoRA is not enabled (enable_lora=False)")
        clash = {name for name, _ in self.lora_modules} & {self.model_name, self.model}
        if clash:
            raise ConfigError(f"LoRA module name {sorted(clash)[0]!r} is also the base model's name")

    @property
    def base_url(self) -> str:
        """The server's root URL as a client on this machine reaches it, e.g. ``http://127.0.0.1:8000``."""
        return _base_url(self.host, self.port)

    @property
    def model_name(self) -> str:
        """The base model's name on the OpenAI routes (``served_model_name``, else ``model``)."""
        return self.served_model_name or self.model

    def env(self) -> dict[str, str]:
        """Extra environment variables: the runtime-LoRA switch when ``runtime_lora_updating``."""
        return {RUNTIME_LORA_ENV: "True"} if self.runtime_lora_updating else {}

    def command(self, vllm: str = "vllm") -> list[str]:
        """The argument list that starts this server with the ``vllm`` console script."""
        cmd = [vllm, "serve", self.model, "--host", self.host, "--port", str(self.port)]
        if self.tensor_parallel_size != 1:
            cmd += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", repr(float(self.gpu_memory_utilization))]
        if self.served_model_name is not None:
            cmd += ["--served-model-name", self.served_model_name]
        if self.runner is not None:
            cmd += ["--runner", self.runner]
        if self.convert is not None:
            cmd += ["--convert", self.convert]
        cmd += self._lora_args()
        cmd.append("--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching")
        if self.enable_prompt_tokens_details:
            cmd.append("--enable-prompt-tokens-details")
        return [*cmd, *self.extra_args]

    def _lora_args(self) -> list[str]:
        if not self.enable_lora:
            return []
        args = ["--enable-lora"]
        if self.lora_modules:
            args += ["--lora-modules", *(f"{name}={path}" for name, path in self.lora_modules)]
        if self.max_loras is not None:
            args += ["--max-loras", str(self.max_loras)]
        if self.max_lora_rank is not None:
            args += ["--max-lora-rank", str(self.max_lora_rank)]
        return args


def vllm_policy(
    model: str | os.PathLike[str], *, adapters: Mapping[str, str | os.PathLike[str]] | None = None, **kw: Any
) -> VLLMSpec:
    """A generating policy server, optionally with LoRA ``adapters`` (name → path) preloaded."""
    return VLLMSpec(model=os.fspath(model), lora_modules=_adapter_pairs(adapters or {}), **kw)


def vllm_critic(
    model: str | os.PathLike[str], *, convert: Convert | None = "classify", **kw: Any
) -> VLLMSpec:
    """A reward/value model on the pooling runner (``--runner pooling --convert classify`` by default).

    Pass ``convert=None`` for architectures vLLM serves as pooling models natively
    (``Qwen2ForRewardModel``, ``InternLM2ForRewardModel``, process reward models).
    """
    return VLLMSpec(model=os.fspath(model), runner="pooling", convert=convert, **kw)


def launch(spec: VLLMSpec, *, log_file: Path, startup_timeout: float = 600.0) -> ManagedProcess:
    """Start ``spec`` and wait until its health URL answers; see ``servers.process``."""
    from servers.process import ManagedProcess

    return ManagedProcess.start(
        spec.command(),
        env=spec.env(),
        health_url=spec.base_url + spec.health_path,
        log_file=log_file,
        startup_timeout=startup_timeout,
    )
