"""Launch specifications for SGLang model servers and the SGLang router (GPU machines only).

A spec is a frozen, validated description of one server process. It does not start anything:
``command()`` gives the argument list (never a shell string), ``env()`` the extra environment
variables, and ``base_url`` + ``health_path`` the URL to poll until the server is up. ``launch()``
hands these to ``servers.process.ManagedProcess``.

SGLang needs CUDA (its CPU backend targets Xeon/AMX and is not a CI option), so these servers run
only on GPU machines; on CPU the project uses the embedded llama.cpp server instead. The tests here
check command lines only.

The flags used (SGLang 0.5.x, ``python -m sglang.launch_server``):

- ``--model-path``: a local folder or a Hugging Face repo id; ``--served-model-name`` renames it.
- ``--tp-size``: tensor-parallel degree (GPUs per server).
- ``--mem-fraction-static``: share of GPU memory for weights plus the KV-cache pool.
- ``--enable-lora``: serve LoRA adapters. Implied by ``--lora-paths name=path ...``; given alone it
  starts with no adapters, to load them later with ``POST /load_lora_adapter``, and then
  ``--max-lora-rank`` and ``--lora-target-modules`` must be given because nothing can be inferred.
- ``--max-loras-per-batch``: adapters (base-only counts as one) in one running batch; default 8.
- ``--is-embedding``: serve a reward/value model (``*ForSequenceClassification``, ``*RewardModel``);
  ``POST /classify`` then returns the score as ``embedding[0]``.
- ``--schedule-policy``: queue order; ``lpm`` (longest prefix match) favours prefix-cache reuse.
- ``--disable-radix-cache``: turn RadixAttention prefix caching off (left on by default here:
  MCTS siblings share their prompt prefix).
- ``--enable-metrics``: Prometheus ``/metrics``. ``--enable-cache-report``: report reused prompt
  tokens in ``usage.prompt_tokens_details.cached_tokens`` of OpenAI-style responses.

The project's default deployment is ``sglang_lora_host``: one base model that serves the policy
and the critics as LoRA adapters, chosen per request (``lora_path`` natively, or
``model="<base>:<adapter>"`` on the OpenAI routes). Several such workers go behind
``SGLangRouterSpec`` (``python -m sglang_router.launch_router``).

Left out: data parallelism inside one launch (``--dp-size``), prefill/decode disaggregation and
every other flag; pass those through ``extra_args``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from agent.errors import ConfigError

if TYPE_CHECKING:
    from servers.process import ManagedProcess

__all__ = [
    "RouterPolicy",
    "SGLangRouterSpec",
    "SGLangSpec",
    "SchedulePolicy",
    "launch",
    "sglang_critic",
    "sglang_lora_host",
    "sglang_policy",
]

SchedulePolicy = Literal[
    "lpm",
    "random",
    "fcfs",
    "dfs-weight",
    "lof",
    "priority",
    "routing-key",
    "hrrn",
    "shortest-prefill-first",
]
RouterPolicy = Literal["cache_aware", "round_robin", "random", "power_of_two", "manual"]

_SCHEDULE_POLICIES: frozenset[str] = frozenset(get_args(SchedulePolicy))
_ROUTER_POLICIES: frozenset[str] = frozenset(get_args(RouterPolicy))
# Hosts that mean "every interface": a client reaches them through loopback.
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True, slots=True)
class SGLangSpec:
    """One ``python -m sglang.launch_server`` process.

    ``lora_paths`` holds ``(name, path)`` pairs (a mapping is accepted and converted);
    ``enable_lora`` becomes True by itself when any are given.
    """

    model_path: str
    host: str = "127.0.0.1"
    port: int = 30000
    tp_size: int = 1
    mem_fraction_static: float | None = None
    lora_paths: tuple[tuple[str, str], ...] = ()
    max_loras_per_batch: int | None = None
    max_lora_rank: int | None = None
    lora_target_modules: tuple[str, ...] = ()
    enable_lora: bool = False
    is_embedding: bool = False
    enable_metrics: bool = True
    enable_cache_report: bool = True
    schedule_policy: SchedulePolicy | None = None
    disable_radix_cache: bool = False
    served_model_name: str | None = None
    extra_args: tuple[str, ...] = field(default=())

    health_path = "/health"

    def __post_init__(self) -> None:
        _set(self, "model_path", _path("model_path", self.model_path))
        _set(self, "lora_paths", _adapter_pairs(self.lora_paths))
        _set(self, "lora_target_modules", _str_tuple("lora_target_modules", self.lora_target_modules))
        _set(self, "extra_args", _str_tuple("extra_args", self.extra_args))
        _check_address(self.host, self.port)
        _check_int("tp_size", self.tp_size, minimum=1)
        _check_fraction("mem_fraction_static", self.mem_fraction_static)
        _check_optional_name("served_model_name", self.served_model_name)
        if self.schedule_policy is not None and self.schedule_policy not in _SCHEDULE_POLICIES:
            raise ConfigError(
                f"schedule_policy must be one of {sorted(_SCHEDULE_POLICIES)}, got {self.schedule_policy!r}"
            )
        self._check_lora()

    def _check_lora(self) -> None:
        if self.lora_paths:
            _set(self, "enable_lora", True)
        for name, value in (
            ("max_loras_per_batch", self.max_loras_per_batch),
            ("max_lora_rank", self.max_lora_rank),
        ):
            if value is not None:
                _check_int(name, value, minimum=1)
        if not self.enable_lora:
            given = [
                name
                for name, value in (
                    ("max_loras_per_batch", self.max_loras_per_batch),
                    ("max_lora_rank", self.max_lora_rank),
                    ("lora_target_modules", self.lora_target_modules),
                )
                if value
            ]
            if given:
                raise ConfigError(f"{', '.join(given)} given but LoRA is not enabled (enable_lora=False)")
            return
        if not self.lora_paths and (self.max_lora_rank is None or not self.lora_target_modules):
            raise ConfigError(
                "enable_lora without initial lora_paths needs max_lora_rank and lora_target_modules: "
                "SGLang cannot infer them from adapters loaded later"
            )

    @property
    def base_url(self) -> str:
        """The server's root URL as a client on this machine reaches it, e.g. ``http://127.0.0.1:30000``."""
        return _base_url(self.host, self.port)

    @property
    def model_name(self) -> str:
        """The base model's name on the OpenAI routes (``served_model_name``, else ``model_path``)."""
        return self.served_model_name or self.model_path

    def env(self) -> dict[str, str]:
        """Extra environment variables for the server process (SGLang needs none)."""
        return {}

    def command(self, python: str = sys.executable) -> list[str]:
        """The argument list that starts this server with interpreter ``python``."""
        cmd = [python, "-m", "sglang.launch_server", "--model-path", self.model_path]
        cmd += ["--host", self.host, "--port", str(self.port)]
        if self.tp_size != 1:
            cmd += ["--tp-size", str(self.tp_size)]
        if self.mem_fraction_static is not None:
            cmd += ["--mem-fraction-static", repr(float(self.mem_fraction_static))]
        if self.served_model_name is not None:
            cmd += ["--served-model-name", self.served_model_name]
        if self.is_embedding:
            cmd.append("--is-embedding")
        cmd += self._lora_args()
        if self.schedule_policy is not None:
            cmd += ["--schedule-policy", self.schedule_policy]
        if self.disable_radix_cache:
            cmd.append("--disable-radix-cache")
        if self.enable_metrics:
            cmd.append("--enable-metrics")
        if self.enable_cache_report:
            cmd.append("--enable-cache-report")
        return [*cmd, *self.extra_args]

    def _lora_args(self) -> list[str]:
        if not self.enable_lora:
            return []
        args = ["--enable-lora"]
        if self.lora_paths:
            args += ["--lora-paths", *(f"{name}={path}" for name, path in self.lora_paths)]
        if self.max_loras_per_batch is not None:
            args += ["--max-loras-per-batch", str(self.max_loras_per_batch)]
        if self.max_lora_rank is not None:
            args += ["--max-lora-rank", str(self.max_lora_rank)]
        if self.lora_target_modules:
            args += ["--lora-target-modules", *self.lora_target_modules]
        return args


@dataclass(frozen=True, slots=True)
class SGLangRouterSpec:
    """One ``python -m sglang_router.launch_router`` process in front of SGLang workers.

    ``cache_aware`` (the router's default) sends a request to the worker whose cache best matches
    its prefix; ``manual`` pins requests by the ``x-smg-routing-key`` header (one key per search
    tree keeps that tree's prefixes on one worker; treeloop's clients send it, see
    ``agent.clients.routing``). The router also serves Prometheus metrics, on port 29000 unless
    ``prometheus_port`` says otherwise: two routers on one machine need different ones.
    """

    worker_urls: tuple[str, ...]
    policy: RouterPolicy = "cache_aware"
    host: str = "127.0.0.1"
    port: int = 30000
    prometheus_port: int | None = None
    extra_args: tuple[str, ...] = ()

    health_path = "/health"

    def __post_init__(self) -> None:
        _set(self, "worker_urls", _str_tuple("worker_urls", self.worker_urls))
        _set(self, "extra_args", _str_tuple("extra_args", self.extra_args))
        _check_address(self.host, self.port)
        if self.prometheus_port is not None:
            _check_address(self.host, self.prometheus_port)
            if self.prometheus_port == self.port:
                raise ConfigError(f"prometheus_port must differ from the router's port {self.port}")
        if self.policy not in _ROUTER_POLICIES:
            raise ConfigError(f"policy must be one of {sorted(_ROUTER_POLICIES)}, got {self.policy!r}")
        if not self.worker_urls:
            raise ConfigError("the router needs at least one worker URL")
        for url in self.worker_urls:
            if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
                raise ConfigError(f"worker URL must be http(s)://host:port without spaces, got {url!r}")
        normalised = [url.rstrip("/") for url in self.worker_urls]
        if len(set(normalised)) != len(normalised):
            raise ConfigError(f"worker URLs must be unique, got {list(self.worker_urls)}")
        if self.base_url in normalised:
            raise ConfigError(f"the router's own address {self.base_url} is listed as a worker")

    @property
    def base_url(self) -> str:
        """The router's root URL as a client on this machine reaches it."""
        return _base_url(self.host, self.port)

    def env(self) -> dict[str, str]:
        """Extra environment variables for the router process (none)."""
        return {}

    def command(self, python: str = sys.executable) -> list[str]:
        """The argument list that starts this router with interpreter ``python``."""
        return [
            python,
            "-m",
            "sglang_router.launch_router",
            "--worker-urls",
            *self.worker_urls,
            "--policy",
            self.policy,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *(
                ["--prometheus-host", self.host, "--prometheus-port", str(self.prometheus_port)]
                if self.prometheus_port is not None
                else []
            ),
            *self.extra_args,
        ]


def sglang_policy(
    model_path: str | os.PathLike[str],
    *,
    adapters: Mapping[str, str | os.PathLike[str]] | None = None,
    **kw: Any,
) -> SGLangSpec:
    """A generating policy server, optionally with LoRA ``adapters`` (name → path) preloaded."""
    return SGLangSpec(model_path=os.fspath(model_path), lora_paths=_adapter_pairs(adapters or {}), **kw)


def sglang_critic(model_path: str | os.PathLike[str], **kw: Any) -> SGLangSpec:
    """A reward/value model served with ``--is-embedding``; score with ``POST /classify``."""
    return SGLangSpec(model_path=os.fspath(model_path), is_embedding=True, **kw)


def sglang_lora_host(
    model_path: str | os.PathLike[str],
    adapters: Mapping[str, str | os.PathLike[str]],
    *,
    max_lora_rank: int,
    target_modules: Iterable[str],
    **kw: Any,
) -> SGLangSpec:
    """One base model serving the policy and the critics as LoRA adapters (the default deployment).

    ``adapters`` may be empty: the server then starts with none and they are hot-loaded later, which
    is why ``max_lora_rank`` and ``target_modules`` (the largest rank and the union of the modules
    of every adapter it will ever hold) are always required here.
    """
    return SGLangSpec(
        model_path=os.fspath(model_path),
        lora_paths=_adapter_pairs(adapters),
        enable_lora=True,
        max_lora_rank=max_lora_rank,
        lora_target_modules=tuple(target_modules),
        **kw,
    )


def launch(
    spec: SGLangSpec | SGLangRouterSpec, *, log_file: Path, startup_timeout: float = 600.0
) -> ManagedProcess:
    """Start ``spec`` and wait until its health URL answers; see ``servers.process``."""
    from servers.process import ManagedProcess

    return ManagedProcess.start(
        spec.command(),
        env=spec.env(),
        health_url=spec.base_url + spec.health_path,
        log_file=log_file,
        startup_timeout=startup_timeout,
    )


# Validation helpers. The specs are frozen, so normalised values are written with object.__setattr__.


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _path(what: str, value: object) -> str:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{what} must be a string or path, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what} must be a non-empty path or model id")
    return text


def _str_tuple(what: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ConfigError(f"{what} must be a sequence of strings, not {type(values).__name__}")
    items = tuple(values)
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigError(f"{what} must hold non-empty strings, got {items!r}")
    return items


def _adapter_pairs(adapters: object) -> tuple[tuple[str, str], ...]:
    if isinstance(adapters, Mapping):
        adapters = adapters.items()
    if isinstance(adapters, str | bytes) or not isinstance(adapters, Iterable):
        raise ConfigError("adapters must be (name, path) pairs or a name -> path mapping")
    pairs: list[tuple[str, str]] = []
    for item in adapters:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConfigError(f"an adapter must be a (name, path) pair, got {item!r}")
        name, path = item
        if not isinstance(name, str) or not name or any(c in name for c in ":=") or _has_space(name):
            raise ConfigError(f"adapter name must be non-empty, without ':', '=' or spaces, got {name!r}")
        pairs.append((name, _path(f"path of adapter {name!r}", path)))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"adapter names must be unique, got {names}")
    return tuple(pairs)


def _has_space(text: str) -> bool:
    return any(c.isspace() for c in text)


def _check_int(what: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _check_fraction(what: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ConfigError(f"{what} must be in (0, 1], got {value!r}")


def _check_optional_name(what: str, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value or _has_space(value)):
        raise ConfigError(f"{what} must be a non-empty string without spaces, got {value!r}")


def _check_address(host: str, port: int) -> None:
    if not isinstance(host, str) or not host or _has_space(host) or "/" in host:
        raise ConfigError(f"host must be a bare host name or IP address, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port must be an integer in 1..65535, got {port!r}")


def _base_url(host: str, port: int) -> str:
    host = _WILDCARD_HOSTS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
