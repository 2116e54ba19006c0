"""The backend protocol and the plain data that crosses it.

A backend turns a prompt into ``n`` completions over HTTP and says whether its server is healthy.
Everything above the clients (solvers, search, critics) sees only these types: no vendor objects,
no vendor exceptions. Retries, concurrency limits and timeouts are not a backend's business; they
are layered on by ``agent.clients.endpoint.Endpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "Backend",
    "Completion",
    "CompletionResult",
    "FinishReason",
    "Sampling",
    "TokenLogprob",
    "Usage",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to decode. ``temperature=0`` is greedy; ``logprobs=k`` asks for the top-k per token."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs}")


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token, its log-probability and the most likely alternatives at its position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated continuation of the prompt (stop strings are not included in ``text``)."""

    text: str
    finish_reason: FinishReason
    stop_matched: str | None = None  # the stop string that ended it, when the server says
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """What requests cost. Adds up: per request, per problem, per run."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            seconds=self.seconds + other.seconds,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached_ratio(self) -> float:
        """Share of prompt tokens the server took from its prefix cache."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True, slots=True)
class CompletionResult:
    completions: tuple[Completion, ...]
    usage: Usage = field(default_factory=Usage)


class Backend(Protocol):
    """One model server, spoken to in its own dialect."""

    url: str
    dialect: str  # "llamacpp", "sglang" or "openai": the server's native routes (load signals)

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        """``n`` completions of ``prompt``. Raises an ``EndpointError`` subclass on failure."""
        ...

    async def health(self) -> None:
        """Return when the server is up and serving; raise an ``EndpointError`` otherwise."""
        ...

    def with_adapter(self, adapter: str) -> Backend:
        """The same server and connection pool, with requests routed to a LoRA adapter: a llama.cpp
        adapter index, an SGLang adapter name, or an OpenAI-style model name (vLLM: the adapter's
        name; SGLang: ``base:adapter``)."""
        ...

    async def aclose(self) -> None: ...
