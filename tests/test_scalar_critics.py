"""Scalar reward-model critics against recorded server contracts (httpx.MockTransport), and the
tool-checked ORM on a table of solutions (arithmetic, LaTeX math, code run in the sandbox)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from agent.clients import RetryPolicy
from agent.critics import Critic
from agent.critics.scalar import (
    ScalarEndpoint,
    SGLangRewardCritic,
    VLLMRewardCritic,
    default_render,
    to_probability,
)
from agent.critics.tools import P_CODE_AGREES, ToolCheckedORM, code_blocks, math_pairs
from agent.errors import ConfigError, EndpointProtocolError, EndpointRejected, EndpointTimeout
from agent.tasks.grading import Grader

pytestmark = pytest.mark.anyio

URL = "http://rm.test"
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)
QUESTION = "Tom has 3 boxes of 4 apples. He eats 2. How many are left?"
STEPS = ("3 * 4 = 12 apples.", "12 - 2 = 10. The answer is 10.")
Handler = Callable[[httpx.Request], Any]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class Server:
    """A fake server: records request bodies and answers from a list (the last one repeats)."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = responses
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, json.loads(request.content)))
        return self.responses[min(len(self.requests), len(self.responses)) - 1]


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def sglang_body(score: float) -> list[dict[str, Any]]:
    """What SGLang's ``/classify`` sends for one text (``--is-embedding`` reward model)."""
    return [{"embedding": [score], "meta_info": {"id": "r1", "prompt_tokens": 42, "e2e_latency": 0.01}}]


def vllm_pooling_body(data: Any) -> dict[str, Any]:
    return {
        "id": "pool-1", "object": "list", "created": 0, "model": "rm",
        "data": [{"index": 0, "object": "pooling", "data": data}],
        "usage": {"prompt_tokens": 17, "total_tokens": 17},
    }  # fmt: skip


def vllm_classify_body(probs: list[float]) -> dict[str, Any]:
    return {
        "id": "classify-1", "object": "list", "created": 0, "model": "rm",
        "data": [{"index": 0, "label": "LABEL_1", "probs": probs, "num_classes": len(probs)}],
        "usage": {"prompt_tokens": 17, "total_tokens": 17},
    }  # fmt: skip


async def score_with(make: Callable[[httpx.AsyncClient], Any], handler: Handler) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        critic = make(client)
        return await critic.score(QUESTION, STEPS)


# --- SGLang /classify ----------------------------------------------------------------------------


async def test_sglang_posts_the_rendered_text_and_reads_embedding_zero() -> None:
    server = Server(ok(sglang_body(1.5)))
    score = await score_with(
        lambda c: SGLangRewardCritic(URL + "/v1/", role="orm", model="rm", client=c, retry=FAST_RETRY), server
    )
    assert server.requests == [("/classify", {"text": [default_render(QUESTION, STEPS)], "model": "rm"})]
    assert score.p == pytest.approx(sigmoid(1.5)) and not score.missing
    assert (score.usage.requests, score.usage.prompt_tokens) == (1, 42)


async def test_sglang_without_model_and_with_a_custom_render_and_identity() -> None:
    server = Server(ok(sglang_body(0.7)))

    def render(question: str, steps: Any) -> str:
        return f"<user>{question}</user><assistant>{' '.join(steps)}</assistant>"

    score = await score_with(
        lambda c: SGLangRewardCritic(URL, role="value", transform="identity", render=render, client=c), server
    )
    assert server.requests[0][1] == {"text": [render(QUESTION, STEPS)]}
    assert score.p == pytest.approx(0.7)


async def test_identity_refuses_a_logit() -> None:
    with pytest.raises(EndpointProtocolError, match="not a probability"):
        await score_with(
            lambda c: SGLangRewardCritic(URL, role="orm", transform="identity", client=c),
            Server(ok(sglang_body(2.5))),
        )


@pytest.mark.parametrize(
    "body",
    [[], [{"embedding": []}], [{"meta_info": {}}], {"error": "x"}, [{"embedding": ["high"]}], [[1.0]]],
    ids=["empty", "no-score", "no-embedding", "error-object", "string", "bare-list"],
)
async def test_sglang_unexpected_shapes_are_protocol_errors(body: Any) -> None:
    with pytest.raises(EndpointProtocolError):
        await score_with(lambda c: SGLangRewardCritic(URL, role="orm", client=c), Server(ok(body)))


# --- vLLM /pooling and /classify -------------------------------------------------------------


@pytest.mark.parametrize("data", [[0.3], [[0.3]], 0.3], ids=["flat", "nested", "bare"])
async def test_vllm_pooling_reads_one_number(data: Any) -> None:
    server = Server(ok(vllm_pooling_body(data)))
    score = await score_with(lambda c: VLLMRewardCritic(URL, role="prm", model="rm", client=c), server)
    assert server.requests == [("/pooling", {"model": "rm", "input": default_render(QUESTION, STEPS)})]
    assert score.p == pytest.approx(sigmoid(0.3)) and score.usage.prompt_tokens == 17


async def test_vllm_pooling_refuses_per_token_outputs() -> None:
    with pytest.raises(EndpointProtocolError, match="LAST pooling"):
        await score_with(
            lambda c: VLLMRewardCritic(URL, role="orm", model="rm", client=c),
            Server(ok(vllm_pooling_body([[0.1], [0.2], [0.3]]))),
        )


@pytest.mark.parametrize(("index", "expected"), [(1, 0.8), (0, 0.2)])
async def test_vllm_classify_takes_the_positive_class_probability(index: int, expected: float) -> None:
    server = Server(ok(vllm_classify_body([0.2, 0.8])))
    score = await score_with(
        lambda c: VLLMRewardCritic(
            URL, role="orm", model="rm", route="classify", positive_index=index, client=c
        ),
        server,
    )
    assert server.requests == [("/classify", {"model": "rm", "input": default_render(QUESTION, STEPS)})]
    assert score.p == pytest.approx(expected)


async def test_vllm_classify_missing_class_is_a_protocol_error() -> None:
    with pytest.raises(EndpointProtocolError, match="no class 1"):
        await score_with(
            lambda c: VLLMRewardCritic(URL, role="orm", model="rm", route="classify", client=c),
            Server(ok(vllm_classify_body([0.9]))),
        )


# --- retries, errors, limits -----------------------------------------------------------------


async def test_503_is_retried() -> None:
    server = Server(httpx.Response(503, text="busy"), ok(sglang_body(0.0)))
    score = await score_with(
        lambda c: SGLangRewardCritic(URL, role="orm", client=c, retry=FAST_RETRY), server
    )
    assert len(server.requests) == 2 and score.p == pytest.approx(0.5)


async def test_400_is_not_retried() -> None:
    server = Server(httpx.Response(400, text="bad input"))
    with pytest.raises(EndpointRejected):
        await score_with(
            lambda c: VLLMRewardCritic(URL, role="orm", model="rm", client=c, retry=FAST_RETRY), server
        )
    assert len(server.requests) == 1


async def test_an_answer_that_is_not_json_is_a_protocol_error_retried_like_a_5xx() -> None:
    server = Server(httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(EndpointProtocolError):
        await score_with(lambda c: SGLangRewardCritic(URL, role="orm", client=c, retry=FAST_RETRY), server)
    assert len(server.requests) == FAST_RETRY.attempts  # a cut or garbled body: EndpointGarbled


async def test_each_attempt_has_a_timeout() -> None:
    calls = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(5)
        return ok(sglang_body(0.0))

    retry = RetryPolicy(attempts=2, initial_wait=0.0, max_wait=0.0)
    with pytest.raises(EndpointTimeout):
        await score_with(
            lambda c: SGLangRewardCritic(URL, role="orm", client=c, timeout=0.05, retry=retry), slow
        )
    assert calls == 2


async def test_one_capacity_limiter_per_endpoint() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return ok(vllm_pooling_body([0.0]))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        endpoint = ScalarEndpoint(URL, client=client, max_concurrency=2)
        value = VLLMRewardCritic(endpoint, role="value", model="rm")
        orm = VLLMRewardCritic(endpoint, role="orm", model="rm")  # the same server, the same limiter
        async with anyio.create_task_group() as tg:
            for critic in (value, orm) * 4:
                tg.start_soon(critic.score, QUESTION, STEPS)
    assert peak == 2


# --- transforms and configuration ------------------------------------------------------------


def test_transforms() -> None:
    assert to_probability(0.0, "sigmoid", url=URL) == 0.5
    assert to_probability(-1000.0, "sigmoid", url=URL) == pytest.approx(0.0)
    assert to_probability(1000.0, "sigmoid", url=URL) == pytest.approx(1.0)
    assert to_probability(2.0, "sigmoid", url=URL) == pytest.approx(sigmoid(2.0))
    assert to_probability(0.25, "identity", url=URL) == 0.25
    for raw, transform in (
        (1.01, "identity"),
        (-0.1, "identity"),
        (math.nan, "sigmoid"),
        (math.inf, "sigmoid"),
    ):
        with pytest.raises(EndpointProtocolError):
            to_probability(raw, transform, url=URL)  # type: ignore[arg-type]


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError):
        SGLangRewardCritic(URL, role="judge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SGLangRewardCritic(URL, role="orm", transform="softmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SGLangRewardCritic("rm.test:30000", role="orm")
    with pytest.raises(ConfigError):
        VLLMRewardCritic(URL, role="orm", model="rm", route="score")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        VLLMRewardCritic(URL, role="orm", model="")
    critic = VLLMRewardCritic(URL, role="prm", model="rm", route="classify")
    assert isinstance(critic, Critic) and critic.name == "vllm-rm-prm" and critic.transform == "identity"
    assert SGLangRewardCritic(URL, role="value").name == "sglang-rm-value"


# --- the tool-checked ORM --------------------------------------------------------------------


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    shared = Grader(max_workers=1)
    yield shared
    shared.close()


BOXED_10 = "The answer is \\boxed{10}."


def python(source: str) -> str:
    return f"Compute it:\n```python\n{source}\n```"


def latex_sum(result: str) -> list[str]:
    return [f"$\\frac{{3}}{{4}} + \\frac{{1}}{{8}} = {result}$.", f"The answer is \\boxed{{{result}}}."]


ORM_TABLE = {
    "arithmetic right": (["3 * 4 = 12 apples.", "12 - 2 = 10 apples left.", "The answer is 10."], 0.9, False),
    "arithmetic wrong": (["3 * 4 = 13 apples.", "The answer is 13."], 0.1, False),
    "code agrees": ([python("print(3 * 4 - 2)"), BOXED_10], P_CODE_AGREES, False),
    "code disagrees": ([python("print(3 * 4)"), BOXED_10], 0.1, False),
    "code errors": ([python("print(1 / 0)"), BOXED_10], 0.1, False),
    "code prints nothing": ([python("x = 10"), BOXED_10], 0.1, False),
    "code agrees, a fraction": ([python("print(1 / 2)"), "\\boxed{\\frac{1}{2}}"], P_CODE_AGREES, False),
    "nothing checkable": (["Think about it carefully.", "The answer is 10."], 0.5, True),
    "latex right": (latex_sum("\\frac{7}{8}"), 0.9, False),
    "latex wrong": (latex_sum("\\frac{5}{8}"), 0.1, False),
    "answer line inconsistent": (["So $x = 3 \\cdot 4 = 12$, and the answer is \\boxed{13}."], 0.1, False),
    "variables are not checked": (["$2x + 3 = 7$, so $x = 2$.", "The answer is \\boxed{2}."], 0.5, True),
}


@pytest.mark.parametrize(("steps", "p", "missing"), ORM_TABLE.values(), ids=ORM_TABLE.keys())
async def test_tool_checked_orm_table(grader: Grader, steps: list[str], p: float, missing: bool) -> None:
    orm = ToolCheckedORM(grader=grader)
    score = await orm.score(QUESTION, steps)
    assert (score.p, score.missing) == (p, missing)


async def test_tool_checked_orm_switches(grader: Grader) -> None:
    code = [python("print(3 * 4)"), BOXED_10]
    assert (await ToolCheckedORM(sandbox=False, grader=grader).score(QUESTION, code)).missing
    latex = ORM_TABLE["latex wrong"][0]
    assert (await ToolCheckedORM(math_check=False, grader=grader).score(QUESTION, latex)).missing
    orm = ToolCheckedORM()
    assert isinstance(orm, Critic) and (orm.name, orm.role) == ("tool-checked-orm", "orm")
    async with orm:
        assert (await orm.score(QUESTION, ORM_TABLE["code agrees"][0])).p == P_CODE_AGREES


def test_math_pairs_and_code_blocks() -> None:
    blocks, prose = code_blocks("a\n```python\nprint(1)\n```\nb\n```text\nnot code\n```")
    assert blocks == ["print(1)\n"] and "print" not in prose and "not code" in prose
    text = "$\\sqrt{16} = 4$, $3.3 = \\frac{10}{3}$, $1 < 2 = 2$, $\\frac{1}{2}=0.5$\n12 - 2 = \\boxed{10}"
    assert math_pairs(text, "10") == [("4", "\\sqrt{16}")]
    assert math_pairs("We get $5 \\times 2 = 10$, so the answer is 11.", "11") == [
        ("10", "5 \\times 2"),
        ("10", "11"),
    ]


def test_public_names_exist() -> None:
    import agent.critics.scalar as scalar
    import agent.critics.tools as tools

    for module in (scalar, tools):
        assert all(hasattr(module, name) for name in module.__all__)
