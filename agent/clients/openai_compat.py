"""Any OpenAI-compatible server (SGLang, vLLM, llama.cpp, hosted APIs) via ``/v1/completions``.

Uses the ``openai`` SDK with its own retries off (``max_retries=0``): retrying is the job of the one
retry layer in ``agent.clients.endpoint``. SDK exceptions are translated into the project's error
tree here and nowhere else. Cached prompt tokens are read from ``usage.prompt_tokens_details``
(SGLang needs ``--enable-cache-report``, vLLM ``--enable-prompt-tokens-details``; absent means 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import openai

from agent.clients.base import Completion, CompletionResult, Sampling, Usage
from agent.clients.routing import ROUTING_HEADER, current_routing_key
from agent.clients.wire import classify_status, http_client, normalize_logprobs, replace_backend
from agent.errors import (
    EndpointError,
    EndpointGarbled,
    EndpointTimeout,
    EndpointUnreachable,
)

__all__ = ["OpenAIBackend"]


class OpenAIBackend:
    dialect = "openai"  # which load signals it publishes (agent.clients.load)

    def __init__(
        self,
        url: str,
        *,
        model: str = "default",
        api_key: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 300.0,
        connections: int = 64,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.extra_body = dict(extra_body or {})
        base_url = self.url if self.url.endswith("/v1") else f"{self.url}/v1"
        self._sdk = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
            http_client=client or http_client(timeout=timeout, connections=connections),
        )

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "n": n,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if sampling.logprobs is not None:
            kwargs["logprobs"] = sampling.logprobs
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        if key := current_routing_key():
            kwargs["extra_headers"] = {ROUTING_HEADER: key}
        url = f"{self._sdk.base_url}completions"
        try:
            response = await self._sdk.completions.create(**kwargs)
        except openai.APIError as exc:
            raise _translate(exc, url=url) from exc
        except json.JSONDecodeError as exc:  # a body cut off mid-JSON: the SDK lets the decoder's error out
            raise EndpointGarbled(f"{url} sent a completion that is not JSON: {exc}", url=url) from exc
        try:
            return _parse(response.model_dump(), n=n)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EndpointGarbled(f"{url} sent an unexpected completion: {exc!r}", url=url) from exc

    def with_adapter(self, adapter: str) -> OpenAIBackend:
        return replace_backend(self, model=adapter)

    async def health(self) -> None:
        url = f"{self._sdk.base_url}models"
        try:
            await self._sdk.models.list()
        except openai.APIError as exc:
            raise _translate(exc, url=url) from exc

    async def aclose(self) -> None:
        await self._sdk.close()


def _translate(exc: openai.APIError, *, url: str) -> EndpointError:
    if isinstance(exc, openai.APITimeoutError):
        return EndpointTimeout(f"{url} did not answer in time", url=url)
    if isinstance(exc, openai.APIConnectionError):
        return EndpointUnreachable(f"could not connect to {url}: {exc.__cause__ or exc}", url=url)
    if isinstance(exc, openai.APIStatusError):
        return classify_status(exc.status_code, _status_message(exc), url=url, headers=exc.response.headers)
    return EndpointGarbled(f"{url} sent an answer the OpenAI client cannot read: {exc}", url=url)


def _status_message(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text
    except httpx.ResponseNotRead:
        return str(exc)


def _parse(data: Mapping[str, Any], *, n: int) -> CompletionResult:
    choices = sorted(data["choices"], key=lambda c: c.get("index") or 0)
    if len(choices) != n:
        raise ValueError(f"{len(choices)} choices, asked {n}")
    if any(not isinstance(choice.get("text"), str) for choice in choices):
        raise ValueError("a choice without its text")
    completions = tuple(
        Completion(
            text=choice["text"],
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            logprobs=normalize_logprobs(choice.get("logprobs")),
        )
        for choice in choices
    )
    usage_raw = data.get("usage") or {}
    details = usage_raw.get("prompt_tokens_details") or {}
    usage = Usage(
        requests=1,
        prompt_tokens=int(usage_raw.get("prompt_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        completion_tokens=int(usage_raw.get("completion_tokens") or 0),
    )
    return CompletionResult(completions, usage)
