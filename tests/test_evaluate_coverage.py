"""Coverage before choice: ``agent.evaluate`` records whether the gold answer was found at all.

With an in-process fake policy (``FunctionBackend``) whose samples and search steps are scripted,
so which answers exist, and which one each method picks, is known in advance.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.evaluate import evaluate
from agent.fakes.backend import FunctionBackend
from agent.prompts import get_format
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.solvers import SolverConfig
from agent.tasks import Problem, get_task

pytestmark = pytest.mark.anyio

QUESTION = "Ann has 3 bags with 4 apples each. How many apples?"
SAMPLES = [
    "3 * 4 = 11 apples.\nThe answer is 11.",
    "3 * 4 = 11 apples.\nThe answer is 11.",
    "3 * 4 = 11 apples.\nThe answer is 11.",
    "3 * 4 = 12 apples.\nThe answer is 12.",
    "I am not sure.",
]
# The majority answer (11) is wrong for every problem; 12 is found by one sample in five.
FOUND = Problem(id="found", question=QUESTION, gold="12")
MISSED = Problem(id="missed", question=QUESTION + " ", gold="13")
MAJORITY = Problem(id="majority", question=QUESTION + "  ", gold="11")


def sampled(prompt: str, sampling: Sampling, index: int) -> str:
    return SAMPLES[0] if sampling.temperature == 0 else SAMPLES[index % len(SAMPLES)]


def searched(prompt: str, sampling: Sampling, index: int) -> str:
    """Two 'Step' lines, then a final line whose answer (5 or 6) depends on the path and the index."""
    depth = prompt.rsplit("<|im_start|>assistant\n", 1)[1].count("\n")
    variant = 0 if sampling.temperature == 0 else index + 1 + zlib.crc32(prompt.encode()) % 7
    if depth >= 2:
        return f"The answer is {5 if variant % 3 else 6}.\n"
    return f"Step {depth}: {2 + variant} + {3 * variant} is a partial sum number {variant}\n"


def fake_policy(fn: Any, backend: FunctionBackend | None = None) -> Policy:
    backend = backend or FunctionBackend(fn)
    endpoint = Endpoint(backend, max_concurrency=16, retry=RetryPolicy(attempts=1))
    return Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)


def read_results(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def read_summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


async def test_sc_coverage_counts_an_answer_the_vote_did_not_pick(tmp_path: Path) -> None:
    out = tmp_path / "sc"
    summary = await evaluate(
        [FOUND, MISSED, MAJORITY],
        task=get_task("gsm8k", prompt="house"),
        policy=fake_policy(sampled),
        config=SolverConfig(method="sc", n=5),
        out=out,
    )
    records = read_results(out)
    assert {i: (r["correct"], r["covered"]) for i, r in records.items()} == {
        "found": (False, True),  # 12 was sampled once; the majority (11) outvoted it
        "missed": (False, False),  # nobody answered 13
        "majority": (True, True),
    }
    assert all(r["distinct_answers"] == 2 for r in records.values())  # 11 and 12; "not sure" has none
    assert (summary.covered, summary.coverage) == (2, pytest.approx(2 / 3))
    s = read_summary(out)
    assert s["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["coverage"] == pytest.approx(2 / 3, abs=1e-4) and s["covered"] == 2
    assert s["distinct_answers_per_problem"] == 2.0
    assert "terminals_per_tree" not in s


async def test_rerank_coverage_is_over_the_samples(tmp_path: Path) -> None:
    out = tmp_path / "rerank"
    await evaluate(
        [FOUND, MISSED],
        task=get_task("gsm8k", prompt="house"),
        policy=fake_policy(sampled),
        config=SolverConfig(method="rerank", n=5, critics="arithmetic"),
        out=out,
    )
    records = read_results(out)
    assert records["found"]["correct"] and records["found"]["covered"]  # the ORM picks the right sample
    assert not records["missed"]["correct"] and not records["missed"]["covered"]
    assert records["found"]["selectors"]["majority"]["correct"] is False
    assert read_summary(out)["coverage"] == 0.5


async def test_greedy_coverage_is_correctness(tmp_path: Path) -> None:
    out = tmp_path / "greedy"
    summary = await evaluate(
        [FOUND, MAJORITY],
        task=get_task("gsm8k", prompt="house"),
        policy=fake_policy(sampled),
        config=SolverConfig(method="greedy"),
        out=out,
    )
    records = read_results(out)
    assert all(r["covered"] == r["correct"] and r["distinct_answers"] == 1 for r in records.values())
    assert summary.coverage == summary.accuracy == 0.5


async def test_mcts_coverage_is_over_the_terminal_answers(tmp_path: Path) -> None:
    # One question, three golds: one worker per tree makes the three trees the same.
    question = "Ann has 2 apples and buys some more. How many apples?"
    problems = [
        Problem(id=w, question=question, gold=g) for w, g in (("five", "5"), ("six", "6"), ("seven", "7"))
    ]
    search = SearchConfig(
        simulations=16, max_simulations=32, workers=1, c_min_root=3, c_min=2, max_depth=5, merge="none"
    )
    out, trees = tmp_path / "mcts", tmp_path / "trees"
    summary = await evaluate(
        problems,
        task=get_task("gsm8k", prompt="house"),
        policy=fake_policy(searched),
        config=SolverConfig(method="mcts", search=search, critics="none"),
        out=out,
        save_trees=trees,
    )
    records = read_results(out)
    for pid, record in records.items():
        tree = json.loads((trees / f"{pid}.json").read_text())
        terminal_answers = {n["answer"] for n in tree["nodes"] if n["terminal"] and n["answer"] is not None}
        assert record["distinct_answers"] == len(terminal_answers)
        assert record["covered"] == (record["gold"] in terminal_answers)
        assert record["search"]["terminals"] == sum(n["terminal"] for n in tree["nodes"])
    # Both 5 and 6 turn up among the terminals (the fake hashes the house prompt); 7 never does.
    assert records["five"]["covered"] and records["six"]["covered"]
    assert not records["seven"]["covered"] and not records["seven"]["correct"]
    # The same tree picks the same answer for all three: at most one is correct, two are covered.
    assert len({r["answer"] for r in records.values()}) == 1
    assert summary.correct <= 1 and summary.coverage > summary.accuracy
    s = read_summary(out)
    assert s["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    terminals = [r["search"]["terminals"] for r in records.values()]
    assert s["terminals_per_tree"] == pytest.approx(sum(terminals) / 3, abs=0.01)
    assert s["terminals_per_tree"] >= s["distinct_answers_per_problem"] >= 2
    # Tokens by phase: with critics "none" there are no rollouts and no critic requests.
    expansions = sum(r["search"]["policy_tokens"]["requests"] for r in records.values()) / 3
    assert s["phases"]["expansions"]["requests_per_tree"] == pytest.approx(expansions, abs=0.01)
    assert s["phases"]["rollouts"]["requests_per_tree"] == 0 == s["phases"]["critics"]["requests_per_tree"]


async def test_resuming_a_run_without_coverage_fills_it_from_the_vote_tables(tmp_path: Path) -> None:
    out = tmp_path / "old"
    backend = FunctionBackend(sampled)
    policy = fake_policy(sampled, backend)
    config = SolverConfig(method="sc", n=5)
    await evaluate(
        [FOUND, MISSED], task=get_task("gsm8k", prompt="house"), policy=policy, config=config, out=out
    )
    # Rewrite the results as a run from before coverage was recorded would have left them.
    old = [
        {k: v for k, v in r.items() if k not in ("covered", "distinct_answers")}
        for r in read_results(out).values()
    ]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))

    calls = backend.calls
    summary = await evaluate(
        [FOUND, MISSED, MAJORITY],
        task=get_task("gsm8k", prompt="house"),
        policy=policy,
        config=config,
        out=out,
    )
    assert backend.calls == calls + 1  # only the new problem was solved
    assert summary.problems == 3 and summary.covered == 2  # found (backfilled), majority (new)
    s = read_summary(out)
    assert s["coverage"] == pytest.approx(2 / 3, abs=1e-4) and s["distinct_answers_per_problem"] == 2.0


def test_shards_split_the_problems_between_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--shard 1/2`` and ``--shard 2/2`` evaluate disjoint halves that together are the whole set,
    each in its own default run directory, and say so in ``summary.json``."""
    from agent.evaluate import main as evaluate_main
    from agent.fakes import FakeServer

    monkeypatch.chdir(tmp_path)
    with FakeServer(0.0, 4) as server:
        argv = ["--url", server.url, "--backend", "llamacpp", "--task", "arith", "--limit", "5"]
        assert [evaluate_main([*argv, "--shard", shard]) for shard in ("1/2", "2/2")] == [0, 0]
    ids = []
    for shard in ("1of2", "2of2"):
        run = tmp_path / "runs" / f"arith-greedy-shard{shard}"
        ids.append([json.loads(line)["id"] for line in (run / "results.jsonl").read_text().splitlines()])
        assert f'"shard": "{shard.replace("of", "/")}"' in (run / "summary.json").read_text()
    assert len(ids[0]) == 3 and len(ids[1]) == 2 and not set(ids[0]) & set(ids[1])
