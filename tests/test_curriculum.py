"""The curriculum over problem difficulty: the rule, and cycles that move to harder problems once the
searches keep the easier ones."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent.clients import Endpoint, Sampling
from agent.errors import ConfigError
from agent.fakes.backend import FunctionBackend
from agent.improve.curriculum import (
    CurriculumConfig,
    LevelStats,
    cycle_levels,
    difficulty,
    draw,
    frontier,
    level_rates,
    more_terminals,
    plan,
)
from agent.improve.cycle import CycleConfig, _write_problems, real_prompts, step_search
from agent.improve.report import write_report
from agent.improve.select import Decision, FilterConfig
from agent.prompts import get_format
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.tasks import Problem
from agent.tasks.gsm8k import solution_steps


def _p(pid: str, steps: int) -> Problem:
    return Problem(pid, f"question {pid}", "1", meta={"steps": steps})


def test_difficulty_is_the_steps_or_the_math_level() -> None:
    assert difficulty(_p("a", 2)) == 2
    assert difficulty(Problem("m", "q", "1", meta={"level": 5, "subject": "Algebra"})) == 5
    assert difficulty(Problem("x", "q", "1", meta={"source": "a", "kind": "rephrase"})) is None
    answer = "Sam buys 3 * 4 = <<3*4=12>>12 pens.\nHe gives 2 away: 12 - 2 = <<12-2=10>>10.\n#### 10"
    assert solution_steps(answer) == 2


def test_the_frontier_is_the_easiest_level_not_passed() -> None:
    levels = [1, 2, 3]

    def at(history: list[dict[int, LevelStats]], min_searched: int = 10) -> int:
        return frontier(levels, level_rates(levels, history, min_searched), 0.25)

    assert at([]) == 1  # the first cycle starts at the easiest
    assert at([{1: LevelStats(40, 8)}]) == 1  # 20% kept: not passed
    assert at([{1: LevelStats(40, 12)}]) == 2
    # The latest cycles that searched a level decide: level 1 slipped below, so back to it.
    assert at([{1: LevelStats(40, 12)}, {1: LevelStats(20, 2), 2: LevelStats(20, 9)}]) == 1
    assert at([{1: LevelStats(40, 12)}, {2: LevelStats(20, 9)}]) == 3  # level 1 not searched in cycle 2
    assert at([{1: LevelStats(9, 9), 2: LevelStats(9, 9), 3: LevelStats(9, 9)}]) == 3  # all passed
    # A few review prompts do not decide alone: 0 of 3 pooled with the cycle before is 12 of 43.
    history = [{1: LevelStats(40, 12)}, {1: LevelStats(3, 0), 2: LevelStats(20, 9)}]
    assert level_rates(levels, history, 10)[1] == LevelStats(43, 12)
    assert at(history) == 3
    assert at(history, min_searched=1) == 1


def test_the_plan_puts_a_share_at_the_frontier_and_reviews_the_rest() -> None:
    assert plan([1, 2, 3], 1, 40, 0.5) == {1: 40}
    assert plan([1, 2, 3], 2, 40, 0.5) == {1: 20, 2: 20}
    assert plan([1, 2, 3], 3, 40, 0.5) == {1: 10, 2: 10, 3: 20}
    assert plan([1, 2, 3], 3, 41, 0.5) == {1: 10, 2: 11, 3: 20}  # the odd one to the harder review level
    assert sum(plan([2, 3, 4, 5, 6], 6, 7, 0.5).values()) == 7
    with pytest.raises(ConfigError, match="--advance"):
        CurriculumConfig(kind="steps", advance=0.0)


def test_draw_takes_unused_problems_first_and_each_once() -> None:
    pool = [_p("a", 1), _p("b", 2), _p("c", 1), _p("d", 1), _p("e", 2), _p("f", 3)]
    assert [p.id for p in draw(pool, {1: 2, 2: 1}, used=set())] == ["a", "c", "b"]
    assert [p.id for p in draw(pool, {1: 2, 2: 1}, used={"a", "b"})] == ["c", "d", "e"]
    assert [p.id for p in draw(pool, {1: 3}, used={"a"})] == ["c", "d", "a"]  # then the used ones
    # Level 2 has two problems for four places: the rest go to the nearest levels, harder first.
    assert [p.id for p in draw(pool, {1: 1, 2: 4}, used=set())] == ["a", "c", "b", "e", "f"]
    assert len(draw(pool, {1: 9}, used=set())) == 6  # the pool runs out


def _gsm8k_steps_file(path: Path, steps: list[int]) -> str:
    rows = []
    for i, n in enumerate(steps):
        lines = "".join(f"Step {j} gives {j + i}.\n" for j in range(n))
        rows.append({"question": f"Tom has {i} pens and {n} cups. How many?", "answer": f"{lines}#### {i}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.anyio
async def test_cycles_move_to_harder_problems_once_the_searches_keep_the_easy_ones(tmp_path: Path) -> None:
    """Real prompts chosen, searched by ηMCTS with a policy that solves only one-step problems,
    and the next cycle's prompts chosen from what that search kept."""
    cfg = CycleConfig(
        name="cur",
        runs_dir=tmp_path,
        train_prompts=12,
        curriculum=CurriculumConfig(kind="steps", advance=0.5),
        search=SearchConfig(simulations=3, max_simulations=12, workers=1, max_depth=2, merge="none"),
        filter=FilterConfig(gamma=0.0, require_correct=True, pick="correct"),
    )
    first, chosen_by = real_prompts(1, cfg)
    assert {p.meta["steps"] for p in first} == {1} and chosen_by["frontier"] == 1
    assert len(first) == 12 == len({p.id for p in first})
    by_question = {p.question: p for p in first}

    def solve_one_step_problems(prompt: str, sampling: Sampling, index: int) -> str:
        problem = next(p for q, p in by_question.items() if q in prompt)
        return f"The answer is {problem.gold if problem.meta['steps'] == 1 else 0}.\n"

    async def search(k: int, prompts: list[Problem], terminals: dict[int, int] | None) -> list[Decision]:
        by_question.update({p.question: p for p in prompts})
        async with Endpoint(FunctionBackend(solve_one_step_problems), max_concurrency=4) as endpoint:
            policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)
            out = tmp_path / "cur" / f"cycle_{k}" / "search"
            return await step_search(cfg, policy, prompts, out, critics="none", terminals=terminals)

    imagined = Problem(
        "img-1", "An imagined question?", "4", meta={"source": first[0].id, "kind": "rephrase"}
    )
    cycle = tmp_path / "cur" / "cycle_1"
    _write_problems(cycle / "prompts" / "prompts.jsonl", [*first, imagined])
    assert all(d.kept for d in await search(1, first, None))
    assert cycle_levels(cycle) == {1: LevelStats(12, 12, 12)}  # the imagined prompt is not counted

    second, chosen_by = real_prompts(2, cfg)
    assert chosen_by == {"frontier": 2, "per_level": {"1": 6, "2": 6}, "rates": {"1": [12, 12]}}
    assert sorted(p.meta["steps"] for p in second) == [1] * 6 + [2] * 6
    assert not {p.id for p in second} & {p.id for p in first}  # arith: each cycle generates its own
    assert real_prompts(2, cfg) == (second, chosen_by)  # a resumed cycle draws the same prompts

    # More terminals where few trees find the gold: every one-step tree found it, so level 1 stays
    # at the base; two-step trees never do, so the third cycle's two-step trees get twice as many.
    assert more_terminals(tmp_path / "cur", 2, base=2, cap=12) == {}
    _write_problems(tmp_path / "cur" / "cycle_2" / "prompts" / "prompts.jsonl", second)
    decisions = await search(2, second, {})
    assert sum(d.kept for d in decisions) == 6
    assert cycle_levels(tmp_path / "cur" / "cycle_2") == {1: LevelStats(6, 6, 6), 2: LevelStats(6, 0, 0)}
    raised = more_terminals(tmp_path / "cur", 3, base=2, cap=12)
    assert raised == {2: 4}
    third, _ = real_prompts(3, cfg)
    _write_problems(tmp_path / "cur" / "cycle_3" / "prompts" / "prompts.jsonl", third)
    await search(3, third, raised)
    results = (tmp_path / "cur" / "cycle_3" / "search" / "results.jsonl").read_text()
    records = [json.loads(line) for line in results.splitlines()]
    steps = {p.id: p.meta["steps"] for p in third}
    assert all(len(r["terminals"]) >= 4 for r in records if steps[r["id"]] == 2)
    assert all(len(r["terminals"]) == 3 for r in records if steps[r["id"]] == 1)  # not raised
    done = json.loads((tmp_path / "cur" / "cycle_3" / "search" / "done.json").read_text())
    assert done["min_terminals"] == {"2": 4}
    assert more_terminals(tmp_path / "cur", 4, base=2, cap=6) == {2: 6}  # doubled again, capped

    manifest = {
        "cycle": 1,
        "before": {},
        "after": {},
        "kept": 12,
        "promoted": False,
        "why": "test",
        "adapter": {"path": None},
        "prompts": {"curriculum": {"frontier": 1}},
        "levels": {"1": [12, 12, 12]},
        "search": {"min_terminals": {"1": 4}},
    }
    (cycle / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(tmp_path / "cur").read_text()
    assert (
        "| cycle | curriculum frontier | 1 |" in text and "| 1 | 1 | 12 / 12 (12), min 4 terminals |" in text
    )


def test_a_dataset_curriculum_skips_searched_problems_and_refuses_problems_without_steps(
    tmp_path: Path,
) -> None:
    train = _gsm8k_steps_file(tmp_path / "train.jsonl", [1, 2, 1, 3, 1, 2, 1])
    test = _gsm8k_steps_file(tmp_path / "test.jsonl", [4])
    cfg = CycleConfig(
        name="g",
        runs_dir=tmp_path,
        task="gsm8k",
        data=train,
        heldout_data=test,
        train_prompts=2,
        curriculum=CurriculumConfig(kind="steps"),
    )
    first, _ = real_prompts(1, cfg)
    assert [p.meta["steps"] for p in first] == [1, 1]
    _write_problems(tmp_path / "g" / "cycle_1" / "prompts" / "prompts.jsonl", first)
    second, chosen_by = real_prompts(2, cfg)  # cycle 1 has no search results: level 1 not passed
    assert chosen_by["frontier"] == 1 and [p.meta["steps"] for p in second] == [1, 1]
    assert not {p.id for p in first} & {p.id for p in second}

    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"problem": "What is 2 + 2?", "solution": "$\\boxed{4}$"}) + "\n")
    rows = [
        {"problem": "What is 1 + 1?", "solution": "$\\boxed{2}$", "level": "Level ?"},
        {"problem": "What is 1 + 2?", "solution": "$\\boxed{3}$", "level": "Level 2"},
        {"problem": "What is 1 + 3?", "solution": "$\\boxed{4}$", "level": "Level 1"},
    ]
    train_math = tmp_path / "math.jsonl"
    train_math.write_text("".join(json.dumps(r) + "\n" for r in rows))
    math = CycleConfig(
        task="math",
        data=str(train_math),
        heldout_data=str(held),
        train_prompts=3,
        curriculum=CurriculumConfig(kind="steps"),
        runs_dir=tmp_path,
    )
    chosen, info = real_prompts(1, math)  # the level-less problem is left out; level 1 first
    assert [p.question for p in chosen] == ["What is 1 + 3?", "What is 1 + 2?"]
    assert info["frontier"] == 1 and info["per_level"] == {"1": 1, "2": 1}
    levelless = tmp_path / "levelless.jsonl"
    levelless.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(ConfigError, match=r"no training problem has a difficulty.*without --curriculum"):
        real_prompts(1, replace(math, data=str(levelless)))
