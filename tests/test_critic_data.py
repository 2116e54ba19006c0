"""Critic training rows: Monte-Carlo targets on hand-built trajectories, dedupe, the root row, PRM
labels (hard and stricter thresholds), problem-level splits, generative examples, balancing, JSONL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.improve as improve
import agent.improve.calibration as calibration
import agent.improve.critic_data as critic_data
from agent.clients import Endpoint, LlamaCppBackend
from agent.critics import GenerativeCritic
from agent.errors import ConfigError, DataError
from agent.improve import (
    CriticRows,
    Row,
    Trajectory,
    critic_rows,
    heldout_problems,
    read_jsonl,
    split_critic_rows,
    split_rows,
    to_examples,
    write_jsonl,
)
from agent.prompts import get_format

Q1 = "Tom has 3 boxes of 4 apples and eats 2. How many are left?"
Q2 = "What is 2 + 2?"


def traj(pid: str, question: str, steps: tuple[str, ...], correct: bool) -> Trajectory:
    return Trajectory(pid, question, "10", steps, "10" if correct else "7", correct)


# Problem p1: four samples sharing the first step "a", two correct. t3 equals t1 up to blank space.
P1 = [
    traj("p1", Q1, ("a", "b", "c"), True),
    traj("p1", Q1, ("a", "b", "d"), False),
    traj("p1", Q1, (" a", "b ", "c\n"), True),
    traj("p1", Q1, ("a", "e"), False),
]
# Problem p2 reuses the step text "a": its prefixes must not merge with p1's.
P2 = [traj("p2", Q2, ("a", "x"), True), traj("p2", Q2, ("a  ", "y"), True)]


def by_steps(rows: list[Row], pid: str) -> dict[tuple[str, ...], Row]:
    return {row.steps: row for row in rows if row.problem_id == pid}


def test_value_rows_have_exact_monte_carlo_targets_and_counts() -> None:
    value = by_steps(critic_rows(P1 + P2).value, "p1")
    expected = {  # steps: (count, correct among them, label)
        (): (4, 2, True),
        ("a",): (4, 2, True),
        ("a", "b"): (3, 2, True),
        ("a", "b", "c"): (2, 2, True),
        ("a", "b", "d"): (1, 0, False),
        ("a", "e"): (1, 0, False),
    }
    assert {k: (r.count, round(r.target * r.count), r.label) for k, r in value.items()} == expected
    assert {k: r.target for k, r in value.items()} == pytest.approx(
        {k: c / n for k, (n, c, _) in expected.items()}
    )
    assert all(row.role == "value" and row.question == Q1 for row in value.values())


def test_prefixes_are_deduplicated_per_problem_in_first_seen_order() -> None:
    rows = critic_rows(P1 + P2)
    p1 = [row.steps for row in rows.value if row.problem_id == "p1"]
    assert p1 == [(), ("a",), ("a", "b"), ("a", "b", "c"), ("a", "b", "d"), ("a", "e")]
    p2 = by_steps(rows.value, "p2")
    assert set(p2) == {(), ("a",), ("a", "x"), ("a", "y")}
    assert (p2[("a",)].count, p2[("a",)].target) == (2, 1.0)  # not merged with p1's "a"


def test_inner_blank_space_does_not_split_a_prefix() -> None:
    rows = critic_rows([traj("p", Q2, ("2 +  2 = 4",), True), traj("p", Q2, ("2 + 2\t= 4",), False)])
    step_rows = [row for row in rows.value if row.steps]
    assert len(step_rows) == 1
    assert (step_rows[0].steps, step_rows[0].count, step_rows[0].target) == (("2 +  2 = 4",), 2, 0.5)


def test_root_row_once_per_problem_with_the_problem_success_rate() -> None:
    roots = [row for row in critic_rows(P1 + P2).value if not row.steps]
    assert [(r.problem_id, r.count, r.target) for r in roots] == [("p1", 4, 0.5), ("p2", 2, 1.0)]


def test_orm_rows_one_per_trajectory_with_stripped_steps() -> None:
    orm = critic_rows(P1).orm
    assert [(row.steps, row.target, row.label, row.count) for row in orm] == [
        (("a", "b", "c"), 1.0, True, 1),
        (("a", "b", "d"), 0.0, False, 1),
        (("a", "b", "c"), 1.0, True, 1),
        (("a", "e"), 0.0, False, 1),
    ]
    assert {row.role for row in orm} == {"orm"}


def test_prm_hard_estimation_labels_a_step_good_if_any_rollout_succeeds() -> None:
    prm = by_steps(critic_rows(P1).prm, "p1")
    assert () not in prm
    labels = {steps: row.label for steps, row in prm.items()}
    assert labels == {
        ("a",): True,
        ("a", "b"): True,
        ("a", "b", "c"): True,
        ("a", "b", "d"): False,
        ("a", "e"): False,
    }
    assert prm[("a", "b")].target == pytest.approx(2 / 3)  # the soft (SE) estimate stays available


def test_prm_threshold_can_be_stricter() -> None:
    prm = by_steps(critic_rows(P1, prm_threshold=0.75).prm, "p1")
    assert [steps for steps, row in prm.items() if row.label] == [("a", "b", "c")]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="prm_threshold"):
            critic_rows(P1, prm_threshold=bad)


def test_empty_trajectory_counts_at_the_root_only() -> None:
    rows = critic_rows([traj("p", Q2, ("4",), True), traj("p", Q2, (), False)])
    assert [(r.steps, r.count, r.target) for r in rows.value] == [((), 2, 0.5), (("4",), 1, 1.0)]
    assert len(rows.orm) == 1 and len(rows.prm) == 1


def test_one_problem_id_with_two_questions_is_rejected() -> None:
    with pytest.raises(ValueError, match="different questions"):
        critic_rows([traj("p", Q1, ("a",), True), traj("p", Q2, ("a",), True)])


step_text = st.sampled_from(["a", "b", " a", "c "])
trajectories = st.lists(
    st.tuples(st.sampled_from(["p", "q"]), st.lists(step_text, max_size=3).map(tuple), st.booleans()),
    min_size=1,
    max_size=8,
).map(lambda ts: [traj(pid, f"question {pid}", steps, ok) for pid, steps, ok in ts])


@settings(max_examples=60, deadline=None)
@given(trajectories)
def test_prefix_counts_are_consistent(ts: list[Trajectory]) -> None:
    rows = critic_rows(ts)
    for pid in {t.problem_id for t in ts}:
        group = [t for t in ts if t.problem_id == pid]
        value = by_steps(rows.value, pid)
        assert value[()].count == len(group)
        assert value[()].target == pytest.approx(sum(t.correct for t in group) / len(group))
        for steps, row in value.items():
            ended_here = sum(tuple(s.strip() for s in t.steps) == steps for t in group)
            children = [r.count for s, r in value.items() if len(s) == len(steps) + 1 and s[:-1] == steps]
            assert sum(children) + ended_here == row.count  # every trajectory goes on or stops
            assert row.target * row.count == pytest.approx(round(row.target * row.count))
        prm = by_steps(rows.prm, pid)
        assert {s: r.target for s, r in prm.items()} == {s: r.target for s, r in value.items() if s}
    assert len(rows.orm) == sum(bool(t.steps) for t in ts)


def many_problems(n: int) -> CriticRows:
    return critic_rows(
        t
        for i in range(n)
        for t in (traj(f"p{i}", f"q{i}", ("a", "b"), True), traj(f"p{i}", f"q{i}", ("c",), False))
    )


def test_split_by_problem_never_leaks_and_is_deterministic() -> None:
    rows = many_problems(20).value
    train, held = split_rows(rows, holdout=0.25, seed=7)
    train_ids, held_ids = {r.problem_id for r in train}, {r.problem_id for r in held}
    assert not train_ids & held_ids
    assert len(held_ids) == 5 and len(train) + len(held) == len(rows)
    assert split_rows(rows, holdout=0.25, seed=7) == (train, held)
    assert split_rows(list(reversed(rows)), holdout=0.25, seed=7)[1] == list(reversed(held))
    assert {r.problem_id for r in split_rows(rows, holdout=0.25, seed=8)[1]} != held_ids


def test_split_edge_cases() -> None:
    rows = many_problems(3).value
    assert split_rows(rows, holdout=0.0, seed=0) == (rows, [])
    assert len({r.problem_id for r in split_rows(rows, holdout=0.01, seed=0)[1]}) == 1  # at least one
    assert len({r.problem_id for r in split_rows(rows, holdout=0.99, seed=0)[0]}) == 1  # one trains
    one = many_problems(1).value
    assert split_rows(one, holdout=0.5, seed=0) == (one, [])
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="holdout"):
            split_rows(rows, holdout=bad, seed=0)


def test_split_critic_rows_uses_one_heldout_set_for_every_role() -> None:
    rows = many_problems(10)
    train, held = split_critic_rows(rows, holdout=0.3, seed=1)
    expected = heldout_problems((f"p{i}" for i in range(10)), holdout=0.3, seed=1)
    for part in ("orm", "value", "prm"):
        assert {r.problem_id for r in getattr(held, part)} == expected
        assert not {r.problem_id for r in getattr(train, part)} & expected


def fake_prompt(question: str, steps: Sequence[str]) -> str:
    return f"{question}|{'/'.join(steps)}"


def test_to_examples_maps_labels_to_yes_and_no() -> None:
    prm = critic_rows(P1).prm
    examples = to_examples(prm, role="prm", prompt_fn=fake_prompt)
    assert examples[:2] == [(f"{Q1}|a", " Yes"), (f"{Q1}|a/b", " Yes")]
    assert [c for _, c in examples] == [" Yes" if r.label else " No" for r in prm]
    custom = to_examples(prm, role="prm", prompt_fn=fake_prompt, yes="True", no="False")
    assert {c for _, c in custom} == {"True", "False"}


def test_to_examples_uses_the_generative_critics_own_prompt() -> None:
    rows = critic_rows(P1)
    endpoint = Endpoint(LlamaCppBackend("http://model.test"))
    for role in ("orm", "value", "prm"):
        critic = GenerativeCritic(endpoint, get_format("chatml"), role=role)
        part = getattr(rows, role)
        examples = to_examples(part, role=role, prompt_fn=critic.prompt)
        assert [p for p, _ in examples] == [critic.prompt(r.question, r.steps) for r in part]
    value = GenerativeCritic(endpoint, get_format("chatml"), role="value")
    assert "(no steps yet)" in to_examples(rows.value, role="value", prompt_fn=value.prompt)[0][0]


def test_to_examples_rejects_rows_of_another_role() -> None:
    with pytest.raises(ValueError, match="value"):
        to_examples(critic_rows(P1).value, role="prm", prompt_fn=fake_prompt)
    with pytest.raises(ConfigError, match="role"):
        to_examples([], role="judge", prompt_fn=fake_prompt)  # type: ignore[arg-type]


def test_balance_downsamples_the_majority_deterministically() -> None:
    rows = many_problems(6).value  # per problem: root 0.5 (True), a 1.0, a/b 1.0, c 0.0 -> 18 True, 6 False
    examples = to_examples(rows, role="value", prompt_fn=fake_prompt, balance=True, seed=3)
    completions = [c for _, c in examples]
    assert completions.count(" Yes") == completions.count(" No") == 6
    assert examples == to_examples(rows, role="value", prompt_fn=fake_prompt, balance=True, seed=3)
    everything = to_examples(rows, role="value", prompt_fn=fake_prompt)
    assert [e for e in everything if e in examples] == examples  # a subsequence: order kept
    seeds = {
        tuple(to_examples(rows, role="value", prompt_fn=fake_prompt, balance=True, seed=s)) for s in range(5)
    }
    assert len(seeds) > 1


def test_balance_needs_both_classes() -> None:
    rows = critic_rows([traj("p", Q2, ("4",), True)]).orm
    with pytest.raises(ValueError, match="no negative row"):
        to_examples(rows, role="orm", prompt_fn=fake_prompt, balance=True)


def test_row_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="target"):
        Row("p", Q2, ("a",), 1.5, True, 1, "value")
    with pytest.raises(ValueError, match="count"):
        Row("p", Q2, ("a",), 0.5, True, 0, "value")
    with pytest.raises(ValueError, match="role"):
        Row("p", Q2, ("a",), 0.5, True, 1, "judge")  # type: ignore[arg-type]


def test_jsonl_round_trip_is_atomic(tmp_path: Path) -> None:
    rows = critic_rows(P1 + P2)
    path = tmp_path / "value.jsonl"
    write_jsonl(rows.value + rows.prm, path)
    assert read_jsonl(path) == rows.value + rows.prm
    assert [p.name for p in tmp_path.iterdir()] == ["value.jsonl"]  # no temporary file left


def test_read_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl(critic_rows(P1).orm[:1], path)
    good = path.read_text()
    for bad in ("{not json", json.dumps({"steps": ["a"]}), good.replace("true", '"yes"')):
        path.write_text(good + bad + "\n")
        with pytest.raises(DataError, match=r"rows\.jsonl:2"):
            read_jsonl(path)
    with pytest.raises(DataError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_public_names_exist() -> None:
    for module in (improve, critic_data, calibration):
        assert all(hasattr(module, name) for name in module.__all__)
    assert set(critic_data.__all__) | set(calibration.__all__) == set(improve.__all__)
