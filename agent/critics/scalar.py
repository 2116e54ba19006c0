"""Critics backed by a served scalar reward model (SGLang or vLLM), for users who serve one.

One request per score. The state is rendered to one string by ``render(question, steps)``
(default: the question, a blank line, then the steps one per line). Reward models expect their
own chat template: pass a ``render`` that applies it, e.g. with the model's tokenizer.

Wire formats (see design/serving-facts.md §1.7 and §2):

- SGLang, launched with ``--is-embedding``: ``POST /classify`` with ``{"text": [text]}`` (plus
  ``"model"`` when given) answers a list of ``{"embedding": [score, ...], "meta_info": ...}``;
  the reward is ``embedding[0]`` of the first item.
- vLLM, ``route="pooling"``: ``POST /pooling`` with ``{"model", "input"}`` answers
  ``{"data": [{"data": ...}]}``; ``data[0].data`` must hold exactly one number, flat (``[x]``) or
  nested (``[[x]]``). Per-token outputs (ALL pooling) are refused: configure LAST pooling.
- vLLM, ``route="classify"``: ``POST /classify`` with ``{"model", "input"}`` answers
  ``{"data": [{"probs": [...]}]}``; the score is ``probs[positive_index]``.

Raw scores become probabilities by a transform. ``"sigmoid"`` reads the score as a logit:
``p = 1 / (1 + exp(-x))`` (the default for reward heads). ``"identity"`` takes the score as a
probability already (the default for vLLM's /classify) and refuses values outside [0, 1] with
``EndpointProtocolError``, as it does non-numbers and answers of the wrong shape.

Requests go through the same layers as ``agent.clients.Endpoint`` (which wraps completion
backends only): ``ScalarEndpoint`` retries ``TransientEndpointError`` alone with jittered
exponential backoff, takes its capacity limiter per attempt and bounds each attempt by
``timeout``. Each critic owns one ``ScalarEndpoint``; two critics on the same server can share
one by passing it as ``url``.

Left out on purpose: batching several states per request, process reward models that score every
step in one pass, and calibration of the reward.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import anyio
import httpx
import structlog

from agent.clients.base import Usage
from agent.clients.endpoint import Guard, RetryPolicy
from agent.clients.wire import http_client, post_json
from agent.critics.base import CriticRole, CriticScore
from agent.errors import ConfigError, EndpointProtocolError

__all__ = [
    "Render",
    "SGLangRewardCritic",
    "ScalarEndpoint",
    "Transform",
    "VLLMRewardCritic",
    "default_render",
    "to_probability",
]

log = structlog.get_logger(__name__)

Transform = Literal["sigmoid", "identity"]
Render = Callable[[str, Sequence[str]], str]


def default_render(question: str, steps: Sequence[str]) -> str:
    """The question, a blank line, then the steps one per line."""
    return question + "\n\n" + "\n".join(steps)


def to_probability(raw: float, transform: Transform, *, url: str) -> float:
    """``raw`` mapped to [0, 1]; EndpointProtocolError for non-finite or (identity) out-of-range."""
    if not math.isfinite(raw):
        raise EndpointProtocolError(f"{url} returned a non-finite score {raw}", url=url)
    if transform == "identity":
        if not 0.0 <= raw <= 1.0:
            raise EndpointProtocolError(
                f"{url} returned {raw}, not a probability; use transform='sigmoid' for logits", url=url
            )
        return raw
    return 1.0 / (1.0 + math.exp(-raw)) if raw >= 0 else math.exp(raw) / (1.0 + math.exp(raw))


class ScalarEndpoint:
    """One reward-model server: POST JSON under retry, a shared capacity limiter and a timeout.

    ``url`` is the server root; a trailing ``/v1`` is dropped (these routes are not under it).
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"reward model URL must start with http:// or https://, got {url!r}")
        if timeout <= 0 or max_concurrency < 1:
            raise ConfigError("timeout must be > 0 and max_concurrency >= 1")
        self.url = url.rstrip("/").removesuffix("/v1")
        self.guard = Guard(self.url, max_concurrency=max_concurrency, timeout=timeout, retry=retry)
        self._owns_client = client is None
        self._client = client or http_client(timeout=timeout, connections=2 * max_concurrency)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        return self.guard.limiter

    async def post(self, route: str, payload: Mapping[str, Any]) -> tuple[Any, float]:
        """The decoded answer of ``POST {url}{route}`` and the seconds it took, retries included."""
        start = time.perf_counter()
        data = await self.guard.call(lambda: post_json(self._client, self.url + route, payload))
        return data, time.perf_counter() - start

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _log_retry(self, state: object) -> None:
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "request_retried", url=self.url, attempt=getattr(state, "attempt_number", 0), error=str(error)
        )


class _RewardCritic(ABC):
    """What both servers' critics share: validation, rendering, the transform, the score."""

    server = ""

    def __init__(
        self,
        url: str | ScalarEndpoint,
        *,
        role: CriticRole,
        transform: Transform,
        render: Render,
        client: httpx.AsyncClient | None,
        timeout: float,
        max_concurrency: int,
        retry: RetryPolicy,
    ) -> None:
        if role not in get_args(CriticRole):
            raise ConfigError(f"unknown critic role {role!r}; choose one of value, prm, orm")
        if transform not in get_args(Transform):
            raise ConfigError(f"unknown transform {transform!r}; choose sigmoid or identity")
        if isinstance(url, ScalarEndpoint):
            self.endpoint = url
        else:
            self.endpoint = ScalarEndpoint(
                url, client=client, timeout=timeout, max_concurrency=max_concurrency, retry=retry
            )
        self.role: CriticRole = role
        self.transform: Transform = transform
        self.render = render
        self.name = f"{self.server}-rm-{role}"

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        route, payload = self._request(self.render(question, steps))
        data, seconds = await self.endpoint.post(route, payload)
        url = self.endpoint.url + route
        try:
            raw, prompt_tokens = self._read(data)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise EndpointProtocolError(f"{url} sent an unexpected answer: {exc!r}", url=url) from exc
        p = to_probability(raw, self.transform, url=url)
        return CriticScore(p, usage=Usage(requests=1, prompt_tokens=prompt_tokens, seconds=seconds))

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    @abstractmethod
    def _request(self, text: str) -> tuple[str, dict[str, Any]]:
        """The route and JSON body that ask the server to score ``text``."""

    @abstractmethod
    def _read(self, data: Any) -> tuple[float, int]:
        """The raw score and the prompt tokens counted, from the decoded answer."""


class SGLangRewardCritic(_RewardCritic):
    """A reward model served by SGLang (``--is-embedding``), read from ``/classify``."""

    server = "sglang"

    def __init__(
        self,
        url: str | ScalarEndpoint,
        *,
        role: CriticRole,
        model: str | None = None,
        transform: Transform = "sigmoid",
        render: Render = default_render,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        super().__init__(
            url,
            role=role,
            transform=transform,
            render=render,
            client=client,
            timeout=timeout,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        self.model = model

    def _request(self, text: str) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"text": [text]}
        if self.model is not None:
            payload["model"] = self.model
        return "/classify", payload

    def _read(self, data: Any) -> tuple[float, int]:
        item = data[0] if isinstance(data, list) else data
        meta = item.get("meta_info") or {}
        return _number(item["embedding"][0]), _tokens(meta.get("prompt_tokens"))


class VLLMRewardCritic(_RewardCritic):
    """A reward model served by vLLM (``--runner pooling``), from ``/pooling`` or ``/classify``.

    ``transform`` defaults to "sigmoid" for /pooling and "identity" for /classify (probabilities).
    ``positive_index`` picks the class whose probability is the score on /classify.
    """

    server = "vllm"

    def __init__(
        self,
        url: str | ScalarEndpoint,
        *,
        role: CriticRole,
        model: str,
        route: Literal["pooling", "classify"] = "pooling",
        positive_index: int = 1,
        transform: Transform | None = None,
        render: Render = default_render,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        if route not in ("pooling", "classify"):
            raise ConfigError(f"unknown vLLM route {route!r}; choose pooling or classify")
        if not model:
            raise ConfigError("vLLM needs the served model's name")
        if positive_index < 0:
            raise ConfigError(f"positive_index must be >= 0, got {positive_index}")
        chosen: Transform = transform or ("sigmoid" if route == "pooling" else "identity")
        super().__init__(
            url,
            role=role,
            transform=chosen,
            render=render,
            client=client,
            timeout=timeout,
            max_concurrency=max_concurrency,
            retry=retry,
        )
        self.model, self.route, self.positive_index = model, route, positive_index

    def _request(self, text: str) -> tuple[str, dict[str, Any]]:
        return f"/{self.route}", {"model": self.model, "input": text}

    def _read(self, data: Any) -> tuple[float, int]:
        item = data["data"][0]
        tokens = _tokens((data.get("usage") or {}).get("prompt_tokens"))
        if self.route == "classify":
            probs = item["probs"]
            if not isinstance(probs, list) or self.positive_index >= len(probs):
                raise ValueError(f"no class {self.positive_index} in probs {str(probs)[:100]}")
            return _number(probs[self.positive_index]), tokens
        value = item["data"]
        while isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, list):
            raise ValueError(f"expected one number, got {len(value)} (use LAST pooling): {str(value)[:100]}")
        return _number(value), tokens


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
