"""bench/compute_curve.py on fakes: the points it runs, resuming, the table, JSON and plot it writes.

The core (``run_points`` and ``report``) runs on the in-process ``FunctionBackend``; the command line
runs once against ``FakeServer`` (a real HTTP server on a loopback port). No model is involved.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.errors import ConfigError
from agent.fakes import FakeServer
from agent.fakes.backend import FunctionBackend
from agent.prompts import get_format
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.tasks import Problem, get_task

BENCH = Path(__file__).resolve().parent.parent / "bench"
PROBLEMS = [
    Problem(id=f"q{i}", question=f"Ann has 2 apples and buys {i} more. How many apples?", gold=str(2 + i))
    for i in range(3)
]
SEARCH = SearchConfig(
    simulations=4, max_simulations=8, workers=2, c_min_root=2, c_min=2, max_depth=4, merge="none"
)


@pytest.fixture(scope="module")
def curve() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))  # the scripts import their shared helpers as `_common`
    try:
        import compute_curve

        yield compute_curve
    finally:
        sys.path.remove(str(BENCH))


def solution(prompt: str, sampling: Sampling, index: int) -> str:
    """One step, then an answer that is right for one (prompt, index) in three; the search's option
    rule cuts it at the end of the line, so the same text serves samples and tree nodes."""
    question = prompt.rsplit("buys ", 1)[1].split(" ", 1)[0]
    right = 2 + int(question) if question.isdigit() else 0
    done = prompt.rsplit("<|im_start|>assistant\n", 1)[1].count("\n")
    answer = right + (index + zlib.crc32(prompt.encode())) % 3
    lines = [f"Step 1: 2 + {question} = {right}", f"The answer is {answer}."]
    return "\n".join(lines[min(done, 1) :])


def fake_policy(backend: FunctionBackend, **kw: object) -> Policy:
    endpoint = Endpoint(backend, max_concurrency=8, retry=RetryPolicy(attempts=1))
    return Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False, **kw)  # type: ignore[arg-type]


def test_wilson_interval(curve: ModuleType) -> None:
    from _common import wilson_interval

    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)  # the textbook example
    assert wilson_interval(0, 10)[0] == 0.0 and 0 < wilson_interval(0, 10)[1] < 0.3
    assert wilson_interval(10, 10)[1] == 1.0 and 0.7 < wilson_interval(10, 10)[0] < 1
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_points_cover_each_method_and_budget(curve: ModuleType) -> None:
    points = curve.curve_points(
        ["mcts", "sc", "rerank"], sc_k=[4, 1], mcts_sims=[16, 4], search=SEARCH, critics="arithmetic"
    )
    assert [p.name for p in points] == ["sc@1", "sc@4", "rerank@1", "rerank@4", "mcts@4", "mcts@16"]
    mcts16 = points[-1].config
    assert mcts16.search.simulations == 16 and mcts16.search.max_simulations == 16
    assert points[0].config.as_dict().get("critics") is None and points[2].config.critics == "arithmetic"
    with pytest.raises(ConfigError):
        curve.curve_points(["beam"], sc_k=[1], mcts_sims=[1], search=SEARCH, critics="none")


@pytest.mark.anyio
async def test_core_runs_resumes_and_writes_table_json_and_plot(
    curve: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = curve.curve_points(
        ["sc", "rerank", "mcts"], sc_k=[1, 2], mcts_sims=[2, 4], search=SEARCH, critics="arithmetic"
    )
    backend = FunctionBackend(solution)
    policy = fake_policy(backend)
    task = get_task("gsm8k")
    results = await curve.run_points(PROBLEMS, task=task, policy=policy, points=points, out=tmp_path)
    assert [r.point.dirname for r in results] == ["sc-1", "sc-2", "rerank-1", "rerank-2", "mcts-2", "mcts-4"]
    for r in results:
        assert (tmp_path / r.point.dirname / "results.jsonl").exists()
        assert r.summary.problems == 3 and r.solved == 3 and r.seconds_per_problem is not None
        assert r.summary.coverage >= r.summary.accuracy or r.point.method == "mcts"
    timing = json.loads((tmp_path / "sc-1" / "timing.json").read_text())
    assert timing["problems"] == 3

    # Resuming solves nothing again and keeps each point's timing.
    calls = backend.calls
    again = await curve.run_points(PROBLEMS, task=task, policy=policy, points=points, out=tmp_path)
    assert backend.calls == calls
    assert [r.solved for r in again] == [3] * 6
    assert json.loads((tmp_path / "sc-1" / "timing.json").read_text()) == timing

    capsys.readouterr()
    data = curve.report(again, tmp_path, title="fake curve", info={"task": "gsm8k"})
    table = capsys.readouterr().out
    assert "fake curve" in table and "95% CI (Wilson)" in table and "coverage" in table
    assert all(name in table for name in ("sc", "rerank", "mcts"))
    written = json.loads((tmp_path / "compute_curve.json").read_text())
    assert written == json.loads(json.dumps(data)) and written["task"] == "gsm8k"
    assert [(p["method"], p["budget"]) for p in written["points"]] == [
        ("sc", 1),
        ("sc", 2),
        ("rerank", 1),
        ("rerank", 2),
        ("mcts", 2),
        ("mcts", 4),
    ]
    for p in written["points"]:
        low, high = p["accuracy_ci95"]
        assert 0 <= low <= p["accuracy"] <= high <= 1
        assert p["completion_tokens_per_problem"] > 0 and p["wall_seconds_per_problem"] >= 0
        assert ("terminals_per_tree" in p) == (p["method"] == "mcts")
    sc1, sc2 = written["points"][:2]
    assert sc2["completion_tokens_per_problem"] > sc1["completion_tokens_per_problem"]
    png = (tmp_path / "compute_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


@pytest.mark.anyio
async def test_trained_critics_without_adapters_fail_before_any_request(
    curve: ModuleType, tmp_path: Path
) -> None:
    points = curve.curve_points(["sc", "rerank"], sc_k=[1], mcts_sims=[], search=SEARCH, critics="trained")
    backend = FunctionBackend(solution)
    with pytest.raises(ConfigError, match="AGENT_CRITIC_ADAPTERS"):
        await curve.run_points(
            PROBLEMS, task=get_task("gsm8k"), policy=fake_policy(backend), points=points, out=tmp_path
        )
    assert backend.calls == 0 and not (tmp_path / "sc-1").exists()


def test_command_line_against_the_fake_server(
    curve: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "curve"
    args = [
        *("--limit", "2", "--methods", "sc", "mcts", "--sc-k", "1", "2", "--mcts-sims", "2"),
        *("--critics", "arithmetic", "--set", "c=1.5", "--workers", "2", "--out", str(out)),
    ]
    with FakeServer(0.0, 8) as server:
        assert curve.main([*args, "--url", server.url, "--backend", "llamacpp"]) == 0
    printed = capsys.readouterr().out
    assert "compute_curve.json" in printed and "mcts" in printed
    data = json.loads((out / "compute_curve.json").read_text())
    assert [p["name"] for p in data["points"]] == ["sc@1", "sc@2", "mcts@2"]
    assert data["problems"] == 2 and data["data"] == "generated:seed=0:split=test"
    assert (out / "compute_curve.png").exists() and (out / "mcts-2" / "summary.json").exists()
    assert curve.main([*args, "--simulations", "8"]) == 2  # the curve sets the simulations itself
