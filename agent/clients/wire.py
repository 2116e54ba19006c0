"""Shared wire-level helpers: one HTTP call with error mapping, and logprob normalization.

Servers disagree on how they spell log-probabilities. Four shapes arrive here and leave as
``TokenLogprob`` tuples:

- chat style (llama.cpp ``/v1/completions`` and ``/completion``, OpenAI chat):
  ``{"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}``
  (llama.cpp's native endpoint sends the same list bare, as ``completion_probabilities``);
- legacy OpenAI completions: ``{"tokens": [...], "token_logprobs": [...], "top_logprobs": [{tok: lp}]}``;
- SGLang native: ``output_token_logprobs`` ``[[logprob, token_id, text], ...]`` and
  ``output_top_logprobs`` ``[[[logprob, token_id, text], ...], ...]``.
"""

from __future__ import annotations

import copy
import datetime
import email.utils
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from agent.clients.base import TokenLogprob
from agent.clients.routing import ROUTING_HEADER, current_routing_key
from agent.errors import (
    EndpointError,
    EndpointGarbled,
    EndpointRejected,
    EndpointTimeout,
    EndpointUnreachable,
    PromptTooLong,
    TransientEndpointError,
)

__all__ = [
    "classify_status",
    "http_client",
    "normalize_logprobs",
    "post_json",
    "replace_backend",
    "retry_after_seconds",
    "send",
    "sglang_logprobs",
]

B = TypeVar("B")

_CONTEXT_PATTERN = re.compile(r"context (size|length|window)|exceeds|too long|maximum context", re.I)


def classify_status(
    status: int, message: str, *, url: str, headers: Mapping[str, str] | None = None
) -> EndpointError:
    """The error for an HTTP error status: 429 and 5xx are transient (with the server's
    ``Retry-After``, if it sent one), other 4xx are rejections."""
    text = f"{url} answered HTTP {status}: {message[:500]}"
    if status == 429 or status >= 500:
        retry_after = retry_after_seconds((headers or {}).get("retry-after"))
        return TransientEndpointError(text, url=url, status=status, retry_after=retry_after)
    if status in (400, 413, 422) and _CONTEXT_PATTERN.search(message):
        return PromptTooLong(text, url=url, status=status)
    return EndpointRejected(text, url=url, status=status)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def http_client(*, timeout: float, connections: int) -> httpx.AsyncClient:
    """The HTTP client the backends use: httpx's API on aiohttp's connection pool.

    httpx's own pool (httpcore) scans every pooled connection on each request event, so its CPU cost
    per request grows with the pool: 2.8 ms at 4 connections and 10.5 ms at 256 on this project's
    2-core benchmark machine, against 1.3-2.2 ms through aiohttp (``bench/http_client.py``).
    ``httpx-aiohttp`` (the transport the OpenAI SDK offers for the same reason) keeps the httpx
    interface that the clients, the OpenAI SDK and the recorded-contract tests are written against.
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=timeout, limits=limits, transport=_Transport(limits=limits))


class _Transport(AiohttpTransport):
    """``AiohttpTransport`` with aiohttp's connection errors mapped as httpx's own transport maps them:
    a refused or failed connect is ``ConnectError``, a dropped or reset connection ``ReadError``
    (the library reports both as ``ConnectTimeout``)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
                raise httpx.ReadError(str(cause) or type(cause).__name__, request=request) from cause
            raise


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    payload: Any = None,
    *,
    message: Callable[[httpx.Response], str] = lambda r: r.text,
) -> httpx.Response:
    """One HTTP request; transport failures and error statuses become ``EndpointError``s. Inside
    ``agent.clients.routing.routed`` it carries the search's routing key as a header.

    ``message`` picks the server's error text out of an error response (default: the body).
    """
    key = current_routing_key()
    headers = {ROUTING_HEADER: key} if key else None
    try:
        response = await client.request(method, url, json=payload, headers=headers)
    except httpx.TimeoutException as exc:
        raise EndpointTimeout(f"{url} did not answer in time: {exc!r}", url=url) from exc
    except httpx.ConnectError as exc:
        raise EndpointUnreachable(f"could not connect to {url}: {exc}", url=url) from exc
    except httpx.TransportError as exc:
        raise TransientEndpointError(f"transport error talking to {url}: {exc!r}", url=url) from exc
    if response.status_code >= 400:
        raise classify_status(response.status_code, message(response), url=url, headers=response.headers)
    return response


async def post_json(client: httpx.AsyncClient, url: str, payload: Mapping[str, Any]) -> Any:
    """POST JSON, return the decoded JSON answer; every failure becomes an ``EndpointError``."""
    response = await send(client, "POST", url, payload)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EndpointGarbled(
            f"{url} answered with something that is not JSON: {response.text[:200]!r}", url=url
        ) from exc


def replace_backend(backend: B, **changes: Any) -> B:
    """A shallow copy of ``backend`` (sharing its HTTP client) with some attributes changed."""
    twin = copy.copy(backend)
    for name, value in changes.items():
        setattr(twin, name, value)
    return twin


def normalize_logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    """Token logprobs from a chat-style, bare-list or legacy completions ``logprobs`` value."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping) and "content" in raw:
        raw = raw["content"] or []
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return tuple(_chat_token(entry) for entry in raw)
    if isinstance(raw, Mapping) and "token_logprobs" in raw:
        return _legacy(raw)
    raise ValueError(f"unrecognized logprobs shape: {str(raw)[:200]}")


def _chat_token(entry: Mapping[str, Any]) -> TokenLogprob:
    top = tuple((str(t["token"]), float(t["logprob"])) for t in entry.get("top_logprobs") or ())
    return TokenLogprob(token=str(entry["token"]), logprob=float(entry["logprob"]), top=top)


def _legacy(raw: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    tokens = raw.get("tokens") or []
    logprobs = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    if not len(tokens) == len(logprobs) == len(tops):
        raise ValueError("legacy logprobs arrays differ in length")
    return tuple(
        TokenLogprob(
            token=str(token),
            logprob=float(lp) if lp is not None else 0.0,
            top=tuple((str(k), float(v)) for k, v in (top or {}).items()),
        )
        for token, lp, top in zip(tokens, logprobs, tops, strict=True)
    )


def sglang_logprobs(meta: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """Token logprobs from SGLang's ``meta_info`` (needs ``return_text_in_logprobs``)."""
    tokens = meta.get("output_token_logprobs") or []
    tops = meta.get("output_top_logprobs") or [[] for _ in tokens]
    return tuple(
        TokenLogprob(
            token=str(text if text is not None else token_id),
            logprob=float(lp),
            top=tuple((str(t[2] if t[2] is not None else t[1]), float(t[0])) for t in (top or [])),
        )
        for (lp, token_id, text), top in zip(tokens, tops, strict=False)
    )
