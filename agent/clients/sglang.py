"""SGLang through its native ``POST /generate`` route.

One prompt per request (``text`` a string), ``n`` completions as ``sampling_params.n``: SGLang answers
a list of ``n`` results and evaluates the prompt once. That shape is also the one ``sglang-router``
accepts (its ``/generate`` takes ``text`` as a string only), so the same client talks to one worker or
to a router in front of many; inside ``agent.clients.routing.routed`` every request carries the
search's routing key. ``meta_info.cached_tokens`` reports the prompt tokens reused from the radix cache.
A LoRA adapter loaded on the server is selected per request with ``lora_path``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from agent.clients.base import Completion, CompletionResult, Sampling, Usage
from agent.clients.wire import http_client, post_json, replace_backend, sglang_logprobs
from agent.errors import EndpointGarbled, EndpointUnreachable, TransientEndpointError

__all__ = ["SGLangBackend"]


class SGLangBackend:
    dialect = "sglang"  # which load signals it publishes (agent.clients.load)

    def __init__(
        self,
        url: str,
        *,
        adapter: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 300.0,
        connections: int = 64,
    ) -> None:
        self.url = url.rstrip("/")
        self.adapter = adapter
        # Keep as many connections open as requests may be in flight.
        self._client = client or http_client(timeout=timeout, connections=connections)

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        params: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            params["sampling_seed"] = sampling.seed
        if n > 1:
            params["n"] = n
        payload: dict[str, Any] = {"text": prompt, "sampling_params": params}
        if sampling.logprobs is not None:
            payload |= {
                "return_logprob": True,
                "top_logprobs_num": sampling.logprobs,
                "return_text_in_logprobs": True,
            }
        if self.adapter:
            payload["lora_path"] = self.adapter
        url = f"{self.url}/generate"
        data = await post_json(self._client, url, payload)
        items = data if isinstance(data, list) else [data]
        if len(items) != n:
            raise EndpointGarbled(f"{url} returned {len(items)} results, asked {n}", url=url)
        try:
            parsed = [_parse_item(item, url=url) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise EndpointGarbled(f"{url} sent an unexpected result: {exc!r}", url=url) from exc
        usage = sum((u for _, u in parsed), Usage(requests=1))
        return CompletionResult(tuple(c for c, _ in parsed), usage)

    def with_adapter(self, adapter: str) -> SGLangBackend:
        return replace_backend(self, adapter=adapter)

    async def health(self) -> None:
        url = f"{self.url}/health"
        try:
            response = await self._client.get(url)
        except httpx.TransportError as exc:
            raise EndpointUnreachable(f"could not connect to {url}: {exc}", url=url) from exc
        if response.status_code != 200:
            raise EndpointUnreachable(f"{url} answered HTTP {response.status_code}", url=url)

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse_item(item: Mapping[str, Any], *, url: str) -> tuple[Completion, Usage]:
    meta = item["meta_info"]
    finish = meta["finish_reason"] or {"type": "stop"}
    kind = finish["type"]
    if kind == "abort":
        # The server dropped the request (shutting down, weights being swapped): try again.
        raise TransientEndpointError(f"{url} aborted the request: {finish.get('message', '')}", url=url)
    matched = finish.get("matched")
    completion = Completion(
        text=str(item["text"]),
        finish_reason="length" if kind == "length" else "stop",
        stop_matched=matched if isinstance(matched, str) else None,
        logprobs=sglang_logprobs(meta),
    )
    usage = Usage(
        prompt_tokens=int(meta["prompt_tokens"]),
        cached_tokens=int(meta.get("cached_tokens", 0)),
        completion_tokens=int(meta["completion_tokens"]),
    )
    return completion, usage
