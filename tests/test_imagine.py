"""Imagination with a fake policy (``FunctionBackend``): rephrasings kept or rejected for the right
reason, backward questions built by template, stable ids, bounded concurrency, usage, and ``mix``.
The fake stands in for the model only; validation, masking and deduplication are the real code."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import anyio
import pytest

import agent.improve.imagine as imagine_module
from agent.clients import CompletionResult, Endpoint, LlamaCppBackend, RetryPolicy, Sampling
from agent.errors import ConfigError, EndpointProtocolError, EndpointUnreachable
from agent.fakes.backend import FunctionBackend
from agent.improve.imagine import REPHRASE_EXAMPLES, ImagineConfig, ImagineResult, imagine, mix
from agent.prompts import get_format
from agent.tasks.arith import generate_problems
from agent.tasks.base import Problem

pytestmark = pytest.mark.anyio

CHATML = get_format("chatml")
NO_RETRY = RetryPolicy(attempts=1)
MIA = Problem("mia", "Mia has 12 apples and buys 5 more. How many apples does she have now?", gold="17")
GOOD = "After buying 5 more apples, how many apples does Mia have if she started with 12?"
GOOD_2 = "Mia starts with 12 apples. She then buys 5 more. What is her total number of apples?"
ONLY_REPH = ImagineConfig(rephrasings_per_seed=2, backward_per_seed=0)
ONLY_BACK = ImagineConfig(rephrasings_per_seed=0, backward_per_seed=1)


def question_of(prompt: str) -> str:
    """The seed question in a chatml rephrasing prompt (the last user turn)."""
    return prompt.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]


def scripted(replies: Mapping[str, Sequence[str]]) -> FunctionBackend:
    """A fake policy that answers seed question q with replies[q][index]."""
    return FunctionBackend(lambda prompt, sampling, i: replies[question_of(prompt)][i])


async def run(
    backend: FunctionBackend,
    seeds: Sequence[Problem] = (MIA,),
    config: ImagineConfig = ONLY_REPH,
    existing: Sequence[str] = (),
) -> ImagineResult:
    policy = Endpoint(backend, retry=NO_RETRY)
    return await imagine(seeds, policy=policy, fmt=CHATML, config=config, existing=existing)


def reasons(result: ImagineResult) -> list[str]:
    return [r.reason for r in result.rejected]


async def test_good_rephrasings_are_kept_with_the_seed_gold() -> None:
    backend = scripted({MIA.question: [GOOD, f"Rephrased question: {GOOD_2}"]})
    result = await run(backend)
    assert [p.question for p in result.problems] == [GOOD, GOOD_2]
    assert [p.id for p in result.problems] == ["mia/reph0", "mia/reph1"]
    assert all(p.gold == "17" for p in result.problems)
    assert result.problems[0].meta == {"source": "mia", "kind": "rephrase"}
    assert result.rejected == []
    # one request per seed, with the fixed instruction and worked examples before the question
    assert backend.calls == 1
    assert REPHRASE_EXAMPLES[1][1] in backend.prompts[0]
    assert backend.prompts[0].endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Mia has 12 apples and buys 6 more. How many apples does she have now?", "numbers_changed"),
        (
            "If Mia starts with twelve apples and buys 5 more, how many apples does she have?",
            "numbers_changed",
        ),
        (
            "Mia had 12 apples, bought 5 more and now counts 17 of them. How many does she have?",
            "numbers_changed",
        ),
        ("Mia starts with 12 apples and then she buys 5 more apples. Count her apples now.", "no_question"),
        ("12 + 5 apples?", "too_short"),
        (f"{GOOD} " * 3, "too_long"),
        ('  "  "  ', "not_parsable"),
        ("mia has 12 apples and buys 5 more.  How many apples does she have now?", "near_duplicate"),
        ("Mia has 12 apples and buys 5 more. How many apples does she have in all?", "near_duplicate"),
    ],
)
async def test_bad_rephrasings_are_rejected_with_a_reason(reply: str, reason: str) -> None:
    result = await run(
        scripted({MIA.question: [reply]}), config=ImagineConfig(rephrasings_per_seed=1, backward_per_seed=0)
    )
    assert result.problems == []
    assert [(r.seed_id, r.kind, r.reason) for r in result.rejected] == [("mia", "rephrase", reason)]


async def test_a_rephrasing_cut_at_max_tokens_is_truncated() -> None:
    config = ImagineConfig(rephrasings_per_seed=1, backward_per_seed=0, max_tokens=10)
    result = await run(scripted({MIA.question: [GOOD]}), config=config)
    assert reasons(result) == ["truncated"]


async def test_near_duplicates_of_kept_existing_and_other_seed_prompts_are_rejected() -> None:
    other = Problem("ben", "Ben has 40 stamps and gives away 8 of them. How many stamps are left?", gold="32")
    existing = "After buying 5 more apples, how many apples does Mia have if she started with 12 apples?"
    ben_shorter = "Ben has 40 stamps, gives away 8. How many stamps are left?"
    replies = {
        MIA.question: [GOOD_2, GOOD_2.replace("total", "whole")],  # the second repeats the first
        other.question: [ben_shorter, other.question.replace("Ben", "Bob")],  # the second is the seed
    }
    result = await run(scripted(replies), seeds=(MIA, other), existing=[existing])
    assert [p.id for p in result.problems] == ["mia/reph0", "ben/reph0"]
    assert [(r.seed_id, r.reason) for r in result.rejected] == [
        ("mia", "near_duplicate"),
        ("ben", "near_duplicate"),
    ]
    # a prompt already in the training set counts too
    result = await run(scripted({MIA.question: [GOOD, GOOD]}), existing=[existing])
    assert reasons(result) == ["near_duplicate", "near_duplicate"]


async def test_backward_question_masks_one_number_and_states_the_answer() -> None:
    result = await run(FunctionBackend(lambda *a: "unused"), config=ONLY_BACK)
    [problem] = result.problems
    assert problem.id == "mia/back0" and problem.meta == {"source": "mia", "kind": "backward"}
    assert problem.gold in {"12", "5"}
    masked, _, fact = problem.question.partition("? ")
    assert masked.replace("X", problem.gold) == MIA.question.removesuffix("?")
    assert (
        fact == "If we know the answer to the above question is 17, what is the value of unknown variable X?"
    )


async def test_backward_never_masks_a_number_that_appears_twice() -> None:
    pens = Problem("pens", "Tom buys 3 pens for $3 each and 4 pencils. How many items does he buy?", gold="7")
    cups = Problem("cups", "Ann has 6 red cups and 6 blue cups. How many cups does she have?", gold="12")
    words = Problem("words", "Ann has a 10th cup. How many cups?", gold="10")
    letter = Problem("letter", "Company X sells 8 cars a day. How many in 2 days?", gold="16")
    config = ImagineConfig(rephrasings_per_seed=0, backward_per_seed=2)
    backend = FunctionBackend(lambda *a: "")
    result = await run(backend, seeds=(pens, cups, words, letter), config=config)
    assert backend.calls == 0  # backward questions are built by template
    [problem] = result.problems
    assert problem.id == "pens/back0" and problem.gold == "4"
    assert "Tom buys 3 pens for $3 each and X pencils." in problem.question
    assert [(r.seed_id, r.reason) for r in result.rejected] == [
        ("pens", "ambiguous_number"),
        ("cups", "ambiguous_number"),
        ("cups", "ambiguous_number"),
        ("words", "no_number"),
        ("words", "no_number"),
        ("letter", "variable_taken"),
        ("letter", "variable_taken"),
    ]


async def test_backward_masks_only_numbers_the_reference_solution_uses() -> None:
    solution = "She has 4 + 2 = 6 cats.\nThe answer is 6."
    question = "Ana has 4 cats. Her street has 30 houses. She gets 2 more cats. How many cats?"
    cats = Problem("cats", question, "6", meta={"solution": solution})
    # the same text with other numbers is another problem, not a duplicate
    dogs = Problem("dogs", question.replace("4", "5"), "7", meta={"solution": "5 + 2 = 7"})
    config = ImagineConfig(rephrasings_per_seed=0, backward_per_seed=3)
    result = await run(FunctionBackend(lambda *a: ""), seeds=(cats, dogs), config=config)
    kept = {(p.meta["source"], p.gold) for p in result.problems}
    assert kept == {("cats", "4"), ("cats", "2"), ("dogs", "5"), ("dogs", "2")}  # never the 30 houses
    assert sorted(p.id for p in result.problems) == ["cats/back0", "cats/back1", "dogs/back0", "dogs/back1"]
    assert [(r.seed_id, r.reason) for r in result.rejected] == [
        ("cats", "unused_number"),
        ("dogs", "unused_number"),
    ]
    arith = generate_problems(30, split="train", distractor_prob=1.0)
    result = await run(
        FunctionBackend(lambda *a: ""), seeds=arith, config=ImagineConfig(rephrasings_per_seed=0)
    )
    solutions = {p.id: re.findall(r"\d+", str(p.meta["solution"])) for p in arith}
    assert len(result.problems) > 20
    for problem in result.problems:
        assert problem.gold in solutions[str(problem.meta["source"])]


async def test_backward_ratio_and_seed_choose_deterministically() -> None:
    seeds = generate_problems(40, split="train")
    config = ImagineConfig(rephrasings_per_seed=0, backward_per_seed=1, backward_ratio=0.5, seed=3)
    first = await run(FunctionBackend(lambda *a: ""), seeds=seeds, config=config)
    again = await run(FunctionBackend(lambda *a: ""), seeds=list(reversed(seeds)), config=config)
    sources = {p.meta["source"] for p in first.problems} | {r.seed_id for r in first.rejected}
    assert 10 < len(sources) < 30  # about half the seeds get a backward question
    # the same seed gets the same question whatever the order of the seeds
    assert sorted((p.id, p.question) for p in first.problems) == sorted(
        (p.id, p.question) for p in again.problems
    )
    other = await run(
        FunctionBackend(lambda *a: ""), seeds=seeds, config=ImagineConfig(rephrasings_per_seed=0)
    )
    assert len(other.problems) + len(other.rejected) == len(seeds)


async def test_ids_and_results_are_stable_across_runs() -> None:
    seeds = generate_problems(6, split="train")
    replies = {
        s.question: [f"Please answer this word problem: {s.question}", "Not a question."] for s in seeds
    }
    first = await run(scripted(replies), seeds=seeds, config=ImagineConfig())
    second = await run(scripted(replies), seeds=seeds, config=ImagineConfig())
    assert (first.problems, first.rejected) == (second.problems, second.rejected)
    ids = [p.id for p in first.problems]
    assert len(ids) == len(set(ids))
    assert all(p.id.startswith(f"{p.meta['source']}/") for p in first.problems)
    assert len(first.problems) + len(first.rejected) == len(seeds) * 3


async def test_usage_is_counted_over_seeds() -> None:
    seeds = generate_problems(3, split="train")
    replies = {s.question: [s.question, s.question] for s in seeds}
    result = await run(scripted(replies), seeds=seeds)
    assert result.usage.requests == 3
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    assert result.reasons() == {"near_duplicate": 6}


async def test_concurrency_over_seeds_is_bounded() -> None:
    seeds = generate_problems(6, split="train")
    in_flight, peak = 0, 0

    class Counting(FunctionBackend):
        async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().complete(prompt, sampling, n=n)
            finally:
                in_flight -= 1

    backend = Counting(lambda *a: "What?", latency=0.02)
    with anyio.fail_after(5):
        await run(backend, seeds=seeds, config=ImagineConfig(concurrency=2))
    assert peak == 2 and backend.calls == 6


async def test_a_failed_call_drops_that_seed_with_a_reason() -> None:
    seeds = generate_problems(2, split="train")

    def fail(call: int) -> EndpointProtocolError | None:
        return EndpointProtocolError("garbled", url="fake://") if call == 1 else None

    backend = FunctionBackend(lambda prompt, s, i: f"{question_of(prompt)} Right?", fail=fail)
    result = await run(backend, seeds=seeds, config=ImagineConfig(concurrency=1))
    assert [(r.seed_id, r.reason) for r in result.rejected][:2] == [(seeds[0].id, "endpoint_error")] * 2
    assert result.usage.requests == 1
    down = FunctionBackend(lambda *a: "", fail=lambda call: EndpointUnreachable("down", url="fake://"))
    with pytest.raises(EndpointUnreachable):
        await run(down, seeds=seeds)


async def test_developer_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="gold"):
        await run(FunctionBackend(lambda *a: ""), seeds=[Problem("q", "How many?")])
    for bad in (
        {"dedup_threshold": 1.5},
        {"concurrency": 0},
        {"backward_per_seed": -1},
        {"length_range": (2.0, 3.0)},
    ):
        with pytest.raises(ConfigError):
            ImagineConfig(**bad)  # type: ignore[arg-type]


def test_mix_has_the_exact_ratio_and_is_deterministic() -> None:
    real = [Problem(f"r{i}", f"real {i}?") for i in range(30)]
    synthetic = [Problem(f"s{i}", f"synthetic {i}?") for i in range(50)]
    mixed = mix(real, synthetic, ratio=0.25, seed=1)
    assert len(mixed) == 40
    assert sum(p.id.startswith("s") for p in mixed) == 10
    assert {p.id for p in real} <= {p.id for p in mixed}
    assert mix(real, synthetic, ratio=0.25, seed=1) == mixed
    assert mix(real, synthetic, ratio=0.25, seed=2) != mixed
    assert sorted(p.id for p in mix(real, synthetic, ratio=0.0, seed=1)) == sorted(p.id for p in real)
    assert len(mix(real, synthetic, ratio=0.625, seed=0)) == 80
    for ratio in (0.7, 1.0, -0.1):
        with pytest.raises(ConfigError):
            mix(real, synthetic, ratio=ratio, seed=0)


def test_public_names_exist() -> None:
    assert all(hasattr(imagine_module, name) for name in imagine_module.__all__)


@pytest.mark.server
async def test_imagine_on_the_real_server(embedded_url: str) -> None:
    seeds = generate_problems(2, split="train")
    config = ImagineConfig(rephrasings_per_seed=2, backward_per_seed=1, temperature=0.7)
    async with Endpoint(LlamaCppBackend(embedded_url, max_n=8), max_concurrency=4, timeout=300) as policy:
        result = await imagine(seeds, policy=policy, fmt=CHATML, config=config)
    assert len(result.problems) + len(result.rejected) == len(seeds) * 3
    assert result.usage.requests == len(seeds) and result.usage.completion_tokens > 0
    assert all(r.reason and r.seed_id in {s.id for s in seeds} for r in result.rejected)
    golds = {s.id: s.gold for s in seeds}
    for problem in result.problems:
        assert problem.gold is not None and problem.question.endswith("?")
        source = str(problem.meta["source"])
        assert problem.id.startswith(f"{source}/")
        if problem.meta["kind"] == "rephrase":
            assert problem.gold == golds[source]
