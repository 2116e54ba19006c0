"""Synthetic critic data: references and controlled corruptions with a known first wrong step, and
exact step labels for the policy's own solutions."""

from __future__ import annotations

import random
import re

import pytest

from agent.critics.arithmetic import check_claims
from agent.errors import ConfigError, DataError
from agent.improve.critic_data import labelled_rows, mix_rows
from agent.improve.synth import (
    KINDS,
    LabelledSolution,
    corrupt,
    label_policy_steps,
    reference,
    synthetic_solutions,
)
from agent.tasks.answers import extract_answer
from agent.tasks.arith import generate_problems
from agent.tasks.base import Problem

PROBLEMS = generate_problems(300, split="train", seed=3)
BY_ID = {p.id: p for p in PROBLEMS}


def _final(solution: LabelledSolution) -> str | None:
    return extract_answer("\n".join(solution.steps))


def test_references_are_right_and_end_with_the_gold_answer() -> None:
    for problem in PROBLEMS:
        ref = reference(problem)
        assert ref.first_wrong is None and ref.correct and _final(ref) == problem.gold
        assert all(claim.ok for step in ref.steps for claim in check_claims(step))
        assert label_policy_steps(problem, ref.steps) is None


@pytest.mark.parametrize("kind", KINDS)
def test_each_corruption_has_a_known_first_wrong_step_and_a_wrong_answer(kind: str) -> None:
    made = 0
    for problem in PROBLEMS:
        bad = corrupt(problem, kind, random.Random(problem.id))  # type: ignore[arg-type]
        if bad is None:
            continue
        made += 1
        ref = reference(problem)
        assert not bad.correct and bad.source == f"synthetic:{kind}" and _final(bad) != problem.gold
        assert bad.first_wrong is not None and 0 <= bad.first_wrong < len(bad.steps)
        # every step before the first wrong one is the reference's own step
        assert bad.steps[: bad.first_wrong] == ref.steps[: bad.first_wrong]
        assert (
            bad.steps[bad.first_wrong] != ref.steps[min(bad.first_wrong, len(ref.steps) - 1)]
            or kind == "skip"
        )
        # the labeller that judges the policy's solutions finds the same step
        assert label_policy_steps(problem, bad.steps) == bad.first_wrong or kind in ("operand", "operation")
        if kind == "slip":  # the slip is a miscomputation; the steps after it compute right from it
            claims = [[c.ok for c in check_claims(step)] for step in bad.steps]
            assert claims[bad.first_wrong] == [False]
            assert all(all(ok) for ok in claims[bad.first_wrong + 1 :])
        if kind in ("operation", "operand"):  # computed right, but not what the problem needs
            assert all(c.ok for step in bad.steps for c in check_claims(step))
    assert made >= 50, f"only {made} {kind} corruptions from {len(PROBLEMS)} problems"


def test_later_steps_carry_the_wrong_value_forward() -> None:
    problem = Problem(
        "p",
        "Noah has 44 marbles. He loses 8 and wins 20. How many does he have?",
        "56",
        {
            "solution": "After the first game he has 44 - 8 = 36 marbles.\n"
            "After the second game he has 36 + 20 = 56 marbles.\nThe answer is 56."
        },
    )
    for seed in range(40):
        bad = corrupt(problem, "slip", random.Random(seed))
        assert bad is not None
        if bad.first_wrong == 0:
            wrong = int(re.search(r"= (\d+)", bad.steps[0]).group(1))  # type: ignore[union-attr]
            assert (
                f"{wrong} + 20 = {wrong + 20}" in bad.steps[1]
                and bad.steps[2] == f"The answer is {wrong + 20}."
            )
            return
    pytest.fail("no slip in the first step in 40 draws")


def test_policy_mistakes_are_labelled_at_their_step() -> None:
    problem = Problem(
        "q",
        "Mia has 24 grapes and shares them among 8 friends. How many does each get?",
        "3",
        {"solution": "Each friend gets 24 / 8 = 3 grapes.\nThe answer is 3."},
    )
    assert label_policy_steps(problem, ["Each friend gets 24 / 8 = 2 grapes.", "The answer is 2."]) == 0
    assert label_policy_steps(problem, ["There are 24 grapes.", "24 / 8 = 3", "The answer is 3."]) is None
    assert label_policy_steps(problem, ["24 + 8 = 32", "The answer is 32."]) == 0  # right sum, wrong step
    assert label_policy_steps(problem, ["24 / 8 = 3", "The answer is 8."]) == 1
    assert label_policy_steps(problem, ["The answer is 24 / 8 = 3 grapes."]) is None
    assert label_policy_steps(problem, ["Each friend gets 24 / 8 = 3 grapes."]) == 0  # never answers
    with pytest.raises(DataError):
        label_policy_steps(Problem("x", "?", "1"), ["1"])


def test_synthetic_solutions_are_seeded_and_mix_kinds() -> None:
    a = synthetic_solutions(PROBLEMS[:50], corruptions=3, seed=1)
    assert a == synthetic_solutions(PROBLEMS[:50], corruptions=3, seed=1)
    assert a != synthetic_solutions(PROBLEMS[:50], corruptions=3, seed=2)
    sources = {s.source for s in a}
    assert "reference" in sources and len(sources - {"reference"}) == len(KINDS)
    assert sum(s.source == "reference" for s in a) == 50 and len(a) > 50 * 3
    with pytest.raises(ConfigError):
        synthetic_solutions(PROBLEMS[:1], corruptions=-1)
    with pytest.raises(ConfigError):
        corrupt(PROBLEMS[0], "typo", random.Random(0))  # type: ignore[arg-type]


def test_labelled_rows_stop_the_prm_at_the_first_error() -> None:
    problem = PROBLEMS[0]
    ref = reference(problem)
    bad = LabelledSolution(
        problem.id, problem.question, problem.gold or "", ("x", "y", "z", "w"), 1, False, "t"
    )
    rows = labelled_rows([ref, bad], optimistic=True)
    assert [(r.steps, r.label) for r in rows.prm if r.steps[0] == "x"] == [
        (("x",), True),
        (("x", "y"), False),
    ]
    assert all(r.label for r in rows.prm if r.steps[0] != "x")
    values = {r.steps: r.target for r in rows.value}
    assert values[("x",)] == 1.0 and values[("x", "y")] == 0.0 and values[("x", "y", "z", "w")] == 0.0
    assert values[ref.steps] == 1.0
    assert sorted(r.target for r in rows.orm) == [0.0, 1.0]


def test_policy_value_rows_are_monte_carlo_rates_and_zero_after_an_error() -> None:
    def sol(steps: tuple[str, ...], first_wrong: int | None) -> LabelledSolution:
        return LabelledSolution("p", "q", "3", steps, first_wrong, first_wrong is None, "policy")

    rows = labelled_rows(
        [sol(("a", "b"), None), sol(("a", "c"), 1), sol(("a", "b"), None), sol(("d",), 0)], optimistic=False
    )
    values = {r.steps: (r.target, r.count) for r in rows.value}
    assert values[("a",)] == (2 / 3, 3) and values[("a", "b")] == (1.0, 2)
    assert values[("a", "c")] == (0.0, 1) and values[("d",)] == (0.0, 1)
    assert {r.steps: r.count for r in rows.orm}[("a", "b")] == 2  # identical solutions: one row


def test_mix_keeps_the_policy_rows_and_adds_the_synthetic_share() -> None:
    synthetic = labelled_rows(synthetic_solutions(PROBLEMS[:100]), optimistic=True)
    policy = labelled_rows(
        [LabelledSolution(f"p{i}", "q", "1", (f"s{i}",), 0, False, "policy") for i in range(60)],
        optimistic=False,
    )
    mixed = mix_rows(policy, synthetic, synthetic_share=0.4, seed=0)
    assert mixed.orm[:60] == policy.orm and len(mixed.orm) == 100  # 40 synthetic = 0.4 of 100
    assert mixed == mix_rows(policy, synthetic, synthetic_share=0.4, seed=0)
    only_synthetic = mix_rows(type(policy)(orm=[], value=[], prm=[]), synthetic, synthetic_share=0.4, seed=0)
    assert only_synthetic.orm == synthetic.orm
    with pytest.raises(ConfigError):
        mix_rows(policy, synthetic, synthetic_share=1.0, seed=0)
