"""Model endpoint clients: one protocol, three dialects, one retry/limit/timeout wrapper."""

from __future__ import annotations

import httpx

from agent.clients.base import Backend, Completion, CompletionResult, Sampling, TokenLogprob, Usage
from agent.clients.endpoint import Endpoint, RetryPolicy
from agent.clients.llamacpp import LlamaCppBackend
from agent.clients.openai_compat import OpenAIBackend
from agent.clients.sglang import SGLangBackend
from agent.errors import ConfigError
from agent.settings import EndpointSettings, RetrySettings

__all__ = [
    "Backend",
    "Completion",
    "CompletionResult",
    "Endpoint",
    "LlamaCppBackend",
    "OpenAIBackend",
    "RetryPolicy",
    "SGLangBackend",
    "Sampling",
    "TokenLogprob",
    "Usage",
    "make_endpoint",
]


def make_endpoint(
    settings: EndpointSettings,
    *,
    retry: RetrySettings | None = None,
    client: httpx.AsyncClient | None = None,
) -> Endpoint:
    """The endpoint described by ``settings`` (which must have a URL)."""
    if not settings.url:
        raise ConfigError("this endpoint has no URL; set AGENT_POLICY__URL or pass --url")
    if not settings.url.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint URL must start with http:// or https://, got {settings.url!r}")
    backend: Backend
    if settings.backend == "openai":
        key = settings.api_key.get_secret_value() if settings.api_key else None
        backend = OpenAIBackend(
            settings.url,
            model=settings.model,
            api_key=key,
            client=client,
            timeout=settings.timeout,
            connections=2 * settings.max_concurrency,
        )
    elif settings.backend == "sglang":
        backend = SGLangBackend(
            settings.url, client=client, timeout=settings.timeout, connections=2 * settings.max_concurrency
        )
    else:
        backend = LlamaCppBackend(
            settings.url,
            max_n=settings.slots or settings.max_concurrency,
            pin_slots=settings.slots,
            client=client,
            timeout=settings.timeout,
            connections=2 * settings.max_concurrency,
        )
    r = retry or RetrySettings()
    return Endpoint(
        backend,
        max_concurrency=settings.max_concurrency,
        timeout=settings.timeout,
        retry=RetryPolicy(
            attempts=r.attempts,
            initial_wait=r.initial_wait,
            max_wait=r.max_wait,
            max_retry_after=r.max_retry_after,
        ),
    )
