"""Critics without training: the generative critic against recorded server contracts (MockTransport)
and, once, the real embedded server; the arithmetic checker; self-consistency; the value mix."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import httpx
import pytest

import agent.critics as critics
from agent.clients import Endpoint, LlamaCppBackend, OpenAIBackend, RetryPolicy, Usage
from agent.critics import (
    ArithmeticCritic,
    Critic,
    CriticRole,
    CriticScore,
    CriticWeights,
    GenerativeCritic,
    SelfConsistencyScorer,
    check_claims,
    combine,
)
from agent.critics.generative import INSTRUCTION
from agent.errors import ConfigError, EndpointProtocolError
from agent.prompts import get_format
from agent.tasks.answers import extract_answer

pytestmark = pytest.mark.anyio

URL = "http://model.test"
FAST_RETRY = RetryPolicy(attempts=2, initial_wait=0.0, max_wait=0.0)
QUESTION = "Tom has 3 boxes of 4 apples. He eats 2. How many apples are left?"
Pairs = list[tuple[str, float]]  # the first token's top-k (token, logprob)
STEPS = ("3 boxes * 4 apples = 12 apples.", "12 - 2 = 10 apples are left.", "The answer is 10.")


def top(*pairs: tuple[str, float]) -> list[dict]:
    return [{"id": i, "token": t, "logprob": lp} for i, (t, lp) in enumerate(pairs)]


def llamacpp_item(pairs: Pairs) -> dict:
    """What llama.cpp's native ``/completion`` sends for ``n_predict=1, n_probs=k``."""
    first = top(*pairs)
    return {
        "index": 0, "content": "Yes", "id_slot": 0, "stop": True, "model": "smollm2",
        "tokens_predicted": 1, "tokens_evaluated": 120, "tokens_cached": 120,
        "stop_type": "limit", "stopping_word": "",
        "timings": {"cache_n": 100, "prompt_n": 20, "predicted_n": 1},
        "completion_probabilities": [{**first[0], "top_logprobs": first}] if pairs else [],
    }  # fmt: skip


def openai_body(pairs: Pairs, *, legacy: bool) -> dict:
    """llama.cpp's ``/v1/completions`` (chat-style logprobs) or vLLM's (legacy logprobs)."""
    first = top(*pairs)
    chat = {"content": [{**first[0], "top_logprobs": first}]}
    old = {"tokens": [pairs[0][0]], "token_logprobs": [pairs[0][1]], "top_logprobs": [dict(pairs)]}
    choice = {"index": 0, "text": pairs[0][0], "finish_reason": "length", "logprobs": old if legacy else chat}
    usage = {"prompt_tokens": 120, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 100}}
    return {"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": [choice], "usage": usage}


def fake_endpoint(kind: str, *answers: Pairs) -> tuple[Endpoint, list[dict]]:
    """A fake server's endpoint sending ``answers`` in turn in ``kind``'s shape; the bodies it saw."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        pairs = answers[min(len(seen), len(answers)) - 1]
        body = llamacpp_item(pairs) if kind == "llamacpp" else openai_body(pairs, legacy=kind == "legacy")
        return httpx.Response(200, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    backend = LlamaCppBackend(URL, client=client) if kind == "llamacpp" else OpenAIBackend(URL, client=client)
    return Endpoint(backend, retry=FAST_RETRY), seen


KINDS = ["llamacpp", "openai", "legacy"]


async def run_critic(kind: str, pairs: Pairs, **kw) -> tuple[GenerativeCritic, CriticScore, list[dict]]:
    """One PRM (unless ``role=`` says otherwise) score of QUESTION/STEPS against a fake server."""
    endpoint, seen = fake_endpoint(kind, pairs)
    async with endpoint as ep:
        critic = GenerativeCritic(ep, get_format("chatml"), role=kw.pop("role", "prm"), **kw)
        score = await critic.score(QUESTION, STEPS)
    return critic, score, seen


@pytest.mark.parametrize("kind", KINDS)
async def test_generative_score_is_yes_over_yes_plus_no(kind: str) -> None:
    critic, score, _ = await run_critic(kind, [("Yes", -0.1), ("No", -2.4), ("The", -4.0)])
    p = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.4))
    assert score.p == pytest.approx(p) and round(score.p, 3) == 0.909
    assert (score.missing, critic.calls, critic.missing_count) == (False, 1, 0)
    u = score.usage
    assert (u.requests, u.prompt_tokens, u.cached_tokens, u.completion_tokens) == (1, 120, 100, 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_label_variants_are_summed(kind: str) -> None:
    pairs = [("Yes", -0.5), (" yes", -1.0), ("YES", -3.0), ("No", -1.5), (" no", -2.0), ("Maybe", -2.5)]
    _, score, _ = await run_critic(kind, pairs)
    p_yes = math.exp(-0.5) + math.exp(-1.0) + math.exp(-3.0)
    p_no = math.exp(-1.5) + math.exp(-2.0)
    assert score.p == pytest.approx(p_yes / (p_yes + p_no))
    assert not score.missing

    pairs = [("True", -0.3), ("False", -1.2), ("Yes", -2.0)]
    _, score, _ = await run_critic(kind, pairs, yes=("True", "correct"), no=("False",))
    assert score.p == pytest.approx(math.exp(-0.3) / (math.exp(-0.3) + math.exp(-1.2)))


@pytest.mark.parametrize("kind", KINDS)
async def test_missing_labels_are_bounded_or_one_half_and_counted(kind: str) -> None:
    no_no = [("Yes", -0.2), ("The", -2.0), ("I", -3.0)]
    no_yes = [("The", -0.3), ("No", -1.0), ("I", -4.0)]
    neither = [("The", -0.5), ("I", -1.0)]
    endpoint, _ = fake_endpoint(kind, no_no, no_yes, neither, [("Yes", -0.1), ("No", -2.4)])
    async with endpoint as ep:
        critic = GenerativeCritic(ep, get_format("chatml"), role="prm")
        scores = [await critic.score(QUESTION, STEPS) for _ in range(4)]
    # An absent label is bounded by the smallest listed probability; with both absent p is 0.5.
    assert scores[0].p == pytest.approx(math.exp(-0.2) / (math.exp(-0.2) + math.exp(-3.0)))
    assert scores[1].p == pytest.approx(math.exp(-4.0) / (math.exp(-4.0) + math.exp(-1.0)))
    assert scores[2].p == 0.5
    assert [score.missing for score in scores] == [True, True, True, False]
    assert (critic.calls, critic.missing_count) == (4, 3)


@pytest.mark.parametrize("kind", KINDS)
async def test_request_asks_for_one_greedy_token_and_top_k_logprobs(kind: str) -> None:
    _, _, requests = await run_critic(kind, [("Yes", -0.1), ("No", -2.4)], top_logprobs=7)
    (body,) = requests
    if kind == "llamacpp":
        assert (body["n_predict"], body["n_probs"], body["cache_prompt"]) == (1, 7, True)
    else:
        assert (body["max_tokens"], body["logprobs"]) == (1, 7)
    assert body["temperature"] == 0 and body["prompt"].startswith("<|im_start|>system\n" + INSTRUCTION)
    assert "Step 2: 12 - 2 = 10 apples are left." in body["prompt"]


ROLE_QUESTIONS = {
    "value": "Will this solution reach the correct final answer?",
    "prm": "Is the last step correct?",
    "orm": "Is the final answer correct?",
}


@pytest.mark.parametrize("role", ROLE_QUESTIONS)
async def test_role_question_name_and_steps(role: str) -> None:
    critic, _, requests = await run_critic("llamacpp", [("Yes", -0.1), ("No", -2.4)], role=role)
    assert critic.name == f"generative-{role}" and critic.role == role and isinstance(critic, Critic)
    assert f"{ROLE_QUESTIONS[role]} Answer with Yes or No." in requests[0]["prompt"]
    assert requests[0]["prompt"].rstrip().endswith("<|im_start|>assistant")
    if role == "value":
        assert "(no steps yet)" in critic.prompt(QUESTION, [])
    else:
        with pytest.raises(ValueError, match="at least one step"):
            critic.prompt(QUESTION, [])


async def test_prompt_prefix_is_stable_across_states_and_roles() -> None:
    endpoint, seen = fake_endpoint("llamacpp", [("Yes", -0.1), ("No", -2.4)])
    async with endpoint as ep:
        prm = GenerativeCritic(ep, get_format("chatml"), role="prm")
        value = GenerativeCritic(ep, get_format("chatml"), role="value")
        await prm.score(QUESTION, STEPS[:1])
        await prm.score(QUESTION, STEPS[:2])
        await value.score(QUESTION, STEPS[:2])
    first, second, other_role = (body["prompt"] for body in seen)
    shared = first[: first.index(STEPS[0]) + len(STEPS[0])]
    assert INSTRUCTION in shared and QUESTION in shared
    assert second.startswith(shared) and other_role.startswith(shared)
    assert other_role[: other_role.index(STEPS[1])] == second[: second.index(STEPS[1])]


async def test_no_logprobs_is_a_protocol_error_not_a_score() -> None:
    async with fake_endpoint("llamacpp", [])[0] as ep:  # the server sends no completion_probabilities
        critic = GenerativeCritic(ep, get_format("plain"), role="orm")
        with pytest.raises(EndpointProtocolError, match="log-probabilities"):
            await critic.score(QUESTION, STEPS)
    assert critic.calls == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"role": "judge"}, {"top_logprobs": 0}, {"no": (" yes",)}, {"yes": "Yes"}, {"no": ()}],
    ids=["role", "top_logprobs", "overlap", "string", "empty"],
)
async def test_generative_critic_rejects_bad_configuration(kwargs: dict) -> None:
    async with fake_endpoint("llamacpp", [])[0] as ep:
        with pytest.raises(ConfigError):
            GenerativeCritic(ep, get_format("chatml"), **{"role": "prm", **kwargs})


CLAIM_TABLE = [
    ("2 + 3 = 5", [True]), ("2 + 3 = 6", [False]), ("2 + 3 + 4 = 9", [True]), ("10 - 4 = 5", [False]),
    ("2 + 3 * 4 = 14", [True]), ("2 + 3 * 4 = 20", [False]), ("20 - 12 / 4 = 17", [True]),  # precedence
    ("12 / 4 * 3 = 9", [True]),  # left to right
    ("1,200 / 4 = 300", [True]), ("It costs $1,200 / 4 = $300.", [True]), ("0.5 * 3 = 1.5", [True]),
    ("10 / 3 = 3.33", [True]), ("2 / 3 = 0.6", [True]),  # rounded or truncated to the written digits
    ("10 / 3 = 3", [False]), ("2 / 3 = 0.5", [False]),  # whole numbers exact, decimals to one digit
    ("3 × 4 = 12", [True]), ("12 ÷ 4 = 3", [True]), ("3 x 4 = 12", [True]), ("3x4=12", [True]),
    ("10 − 4 = 6", [True]), ("\\(3 \\times 4 = 12\\)", [True]), ("-3 + 5 = 2", [True]),
    ("5 / 0 = 0", [False]), ("4 * 2 = 8 and 8 + 1 = 10.", [True, False]),
    ("- 3 + 4 = 7\n- 2 * 2 = 5", [True, False]),  # list bullets are not minus signs
    ("3 * 4 = 12 / 2 = 6", [True]),  # a running chain: only "12 / 2 = 6" is compared
    ("The answer is 5.", []), ("He has 5 apples.", []), ("2x + 3 = 7", []), ("x - 3 + 5 = 7", []),
    ("(2 + 3) * 4 = 20", []), ("2^3 + 1 = 9", []), ("2 + 3 = 1 + 4", []), ("20% * 50 = 10", []),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), CLAIM_TABLE)
def test_check_claims_table(text: str, expected: list[bool]) -> None:
    assert [claim.ok for claim in check_claims(text)] == expected


def test_claim_fields() -> None:
    (claim,) = check_claims("So 1,250 + 2.5 * 2 = $1,255 in total.")
    assert claim.text == "1,250 + 2.5 * 2 = $1,255"
    assert (claim.stated, claim.computed, claim.ok) == (Fraction(1255), Fraction(1255), True)
    (zero,) = check_claims("7 / 0 = 1")
    assert (zero.computed, zero.ok) == (None, False)


@pytest.mark.parametrize(
    ("role", "steps", "p", "missing"),
    [
        ("prm", ["2 + 2 = 5", "5 * 2 = 10"], 0.9, False), ("prm", ["2 + 2 = 4", "4 * 2 = 9"], 0.1, False),
        ("prm", ["2 + 2 = 4", "So she is happy."], 0.5, True), ("prm", [], 0.5, True),  # last step only
        ("orm", ["2 + 2 = 5", "5 * 2 = 10"], 0.1, False), ("orm", ["2 + 2 = 4", "So 4."], 0.9, False),
        ("value", ["The answer is 4."], 0.5, True), ("value", ["2 + 2 = 4", "4 * 2 = 8"], 0.9, False),
    ],
)  # fmt: skip
async def test_arithmetic_critic_scores(role: str, steps: list[str], p: float, missing: bool) -> None:
    critic = ArithmeticCritic(role)  # type: ignore[arg-type]
    score = await critic.score("q", steps)
    assert (score.p, score.missing, score.usage) == (p, missing, Usage())
    assert critic.name == f"arithmetic-{role}" and isinstance(critic, Critic)
    with pytest.raises(ConfigError):
        ArithmeticCritic("judge")  # type: ignore[arg-type]


async def test_self_consistency_scores_agreement_not_correctness() -> None:
    scorer = SelfConsistencyScorer(list, extract=extract_answer)
    assert "not a verifier" in scorer.name and scorer.role == "orm"
    assert scorer.score_with(["10", "$10", "10.0", "7"], "10").p == pytest.approx(4 / 5)
    assert scorer.score_with(["7", "7", None], "10").p == pytest.approx(1 / 4)
    assert scorer.score_with(["7"], None).p == 0.0
    assert scorer.score_with([], "10") == CriticScore(0.5, missing=True)

    others: list[str | None] = ["10", "7"]  # what the tree's callable returns
    scorer = SelfConsistencyScorer(lambda: others, extract=extract_answer)
    assert isinstance(scorer, Critic)
    score = await scorer.score("q", ["12 - 2 = 10.", "The answer is 10."])
    assert score.p == pytest.approx(2 / 3) and not score.missing
    others.append("10")
    assert (await scorer.score("q", ["#### 10"])).p == pytest.approx(3 / 4)


def test_combine_is_the_weighted_mean_of_active_roles() -> None:
    scores: dict[CriticRole, float] = {"value": 0.2, "prm": 0.6, "orm": 1.0}
    assert combine(CriticWeights(), scores) == pytest.approx(0.6)
    assert combine(CriticWeights(value=2.0, prm=1.0, orm=1.0), scores) == pytest.approx((0.4 + 0.6 + 1.0) / 4)
    weights = CriticWeights(value=0.0, prm=1.0, orm=3.0)
    assert weights.active == ("prm", "orm")
    assert combine(weights, {"prm": 0.6, "orm": 1.0}) == pytest.approx(0.9)
    assert combine(weights, {**scores, "value": 0.0}) == pytest.approx(0.9)  # weight 0 is ignored
    with pytest.raises(ValueError, match="no orm score"):
        combine(CriticWeights(), {"value": 0.5, "prm": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        combine(CriticWeights(), {"value": 1.5, "prm": 0.5, "orm": 0.5})


@pytest.mark.parametrize(
    "kwargs", [{"value": -1.0}, {"prm": math.nan}, {"orm": math.inf}, {"value": 0, "prm": 0, "orm": 0}]
)
def test_weights_are_validated(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CriticWeights(**kwargs)


def test_public_api() -> None:
    for name in critics.__all__:
        assert hasattr(critics, name), name
    assert {"Critic", "CriticRole", "CriticScore", "combine", "CriticWeights"} <= set(critics.__all__)


@pytest.mark.server
async def test_generative_prm_on_the_real_server(embedded_url: str) -> None:
    async with Endpoint(LlamaCppBackend(embedded_url), timeout=300) as ep:
        critic = GenerativeCritic(ep, get_format("chatml"), role="prm")
        score = await critic.score(QUESTION, STEPS[:2])
    assert 0.0 <= score.p <= 1.0 and (critic.calls, critic.missing_count) == (1, int(score.missing))
    assert (score.usage.requests, score.usage.completion_tokens) == (1, 1) and score.usage.prompt_tokens > 0


async def test_generative_temperature_rescales_the_score() -> None:
    from agent.improve.calibration import apply_temperature

    pairs = [("Yes", -0.1), ("No", -2.4)]
    _, raw, _ = await run_critic("llamacpp", pairs)
    _, hot, _ = await run_critic("llamacpp", pairs, temperature=2.0)
    assert hot.p == pytest.approx(apply_temperature(raw.p, 2.0)) and 0.5 < hot.p < raw.p
    with pytest.raises(ConfigError):
        GenerativeCritic(None, get_format("chatml"), role="orm", temperature=0.0)  # type: ignore[arg-type]


class _Counting:
    """A learned critic stand-in that records what it was asked."""

    name, role = "learned-orm", "orm"

    def __init__(self, p: float) -> None:
        self.p, self.asked = p, 0

    async def score(self, question: str, steps: object) -> CriticScore:
        self.asked += 1
        return CriticScore(self.p)


@pytest.mark.parametrize("role", ["orm", "prm", "value"])
async def test_checked_critic_caps_a_wrong_computation_and_passes_the_rest(role: str) -> None:
    learned = _Counting(0.9)
    learned.role = role  # type: ignore[misc]
    checked = critics.CheckedCritic(learned)  # type: ignore[arg-type]
    right = await checked.score(QUESTION, STEPS)
    assert right.p == 0.9 and learned.asked == 1 and checked.name == "checked-learned-orm"
    wrong_first = ("3 * 4 = 14 apples.", "14 - 2 = 12 apples are left.", "The answer is 12.")
    capped = await checked.score(QUESTION, wrong_first)
    if role == "prm":  # a PRM judges the last step, which computes right
        assert capped.p == 0.9 and learned.asked == 2
    else:
        assert capped.p == critics.arithmetic.P_CAP and learned.asked == 1 and checked.capped == 1
    assert (await checked.score(QUESTION, ["3 * 4 = 13"])).p == critics.arithmetic.P_CAP
