"""bench/critics.py's pure parts: labels of the policy's paths, the downstream table (self-consistency
and re-rank at k = 1, 2, 4, 8 samples), the markdown and the plot, with stand-in critics."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent.critics.base import CriticScore
from agent.improve.critic_data import Trajectory
from agent.tasks.arith import generate_problems

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import critics

        yield critics
    finally:
        sys.path.remove(str(BENCH))


class Oracle:
    """An ORM stand-in that scores right solutions ``high`` and wrong ones 0.1."""

    name, role = "oracle-orm", "orm"

    def __init__(self, gold: dict[str, str], high: float = 0.9) -> None:
        self.gold, self.high = gold, high

    async def score(self, question: str, steps: object) -> CriticScore:
        last = list(steps)[-1]  # type: ignore[call-overload]
        return CriticScore(self.high if last == f"The answer is {self.gold[question]}." else 0.1)


def paths_for(problems: list, answers: list[list[int]]) -> list[Trajectory]:
    out = []
    for problem, row in zip(problems, answers, strict=True):
        for a in row:
            steps = ("Some step.", f"The answer is {a}.")
            out.append(
                Trajectory(problem.id, problem.question, problem.gold, steps, str(a), str(a) == problem.gold)
            )
    return out


@pytest.mark.anyio
async def test_downstream_counts_votes_reranks_and_coverage_per_k(bench: ModuleType, tmp_path: Path) -> None:
    problems = generate_problems(3, split="test", seed=5)
    g = [int(p.gold) for p in problems]
    # problem 0: right first; problem 1: right only in the 4th sample; problem 2: never right
    answers = [[g[0], 1, 1, 1, 2, 2, 2, 2], [1, 1, 2, g[1], 3, 3, 3, 3], [7, 7, 7, 7, 7, 7, 7, 7]]
    paths = paths_for(problems, answers)
    gold = {p.question: p.gold for p in problems}
    sets = {"oracle": {"orm": Oracle(gold)}}
    tokens = {p.id: 800 for p in problems}
    result = await bench.downstream(sets, paths, tokens, 8)
    by = {(p["method"], p["k"]): p for p in result["points"]}
    # a tie goes to the answer seen first (k=2 on problem 0)
    assert [by[("self-consistency", k)]["correct"] for k in (1, 2, 4, 8)] == [1, 1, 0, 0]
    assert [by[("rerank oracle", k)]["correct"] for k in (1, 2, 4, 8)] == [1, 1, 2, 2]
    assert [by[("rerank oracle", k)]["coverage"] for k in (1, 2, 4, 8)] == pytest.approx(
        [1 / 3, 1 / 3, 2 / 3, 2 / 3]
    )
    assert by[("self-consistency", 4)]["completion_tokens"] == 400.0
    args = argparse.Namespace(task="arith", data=None, samples=8)
    results = {
        "paths": {"problems": 3, "paths": 24, "correct": 2, "covered": 2},
        "table": {},
        "downstream": result,
        "curve": result["points"],
    }
    text = bench.format_markdown(results, args)
    assert "| rerank oracle | 8 | 2/3 = 0.667 |" in text
    pytest.importorskip("matplotlib")
    bench.plot_curve(result["points"], tmp_path / "curve.png", "test")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_policy_paths_get_exact_step_labels(bench: ModuleType) -> None:
    problems = generate_problems(2, split="test", seed=5)
    ref = problems[0].meta["solution"].split("\n")
    paths = [
        Trajectory(
            problems[0].id, problems[0].question, problems[0].gold, tuple(ref), problems[0].gold, True
        ),
        Trajectory(
            problems[1].id,
            problems[1].question,
            problems[1].gold,
            ("1 + 1 = 3", "The answer is 3."),
            "3",
            False,
        ),
    ]
    rows, wrong = bench.labelled(argparse.Namespace(task="arith"), problems, paths)
    assert [w.first_wrong for w in wrong] == [0]
    assert sorted(r.label for r in rows.orm) == [False, True]


def test_evaluate_runs_join_the_curve_on_its_own_problems(bench: ModuleType, tmp_path: Path) -> None:
    import json

    run = tmp_path / "mcts-run"
    run.mkdir()
    (run / "summary.json").write_text(
        json.dumps({"settings": {"solver": {"method": "mcts", "search": {"simulations": 24}}}})
    )
    rows = [("a", True, True, 300), ("b", False, True, 500), ("c", True, True, 100)]
    lines = [
        json.dumps({"id": i, "correct": c, "covered": v, "tokens": {"completion_tokens": t}})
        for i, c, v, t in rows
    ]
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    (point,) = bench.extra_points([run], ids={"a", "b", "z"})
    assert point["method"] == "mcts-run (n=2)" and point["k"] == 24
    assert (point["correct"], point["problems"], point["coverage"], point["completion_tokens"]) == (
        1,
        2,
        1.0,
        400.0,
    )
    assert bench.extra_points([run], ids={"z"}) == []
