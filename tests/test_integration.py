"""End to end on the real embedded llama.cpp server with the bundled SmolLM2-135M-Instruct.

One server is shared by the whole session (``embedded_url`` in conftest). Assertions are about what
the real server really did: parsed answers, counted usage, prefix-cache reuse, files written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.clients import Endpoint, LlamaCppBackend, OpenAIBackend, Sampling
from agent.errors import InputError
from agent.evaluate import evaluate
from agent.evaluate import main as evaluate_main
from agent.prompts import get_format
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.solve import main as solve_main
from agent.solve import solve
from agent.solvers import SolverConfig, solve_problem
from agent.tasks import get_task, load_task_problems

pytestmark = [pytest.mark.anyio, pytest.mark.server]


@pytest.fixture
async def policy(embedded_url: str) -> AsyncIterator[Policy]:
    endpoint = Endpoint(LlamaCppBackend(embedded_url, max_n=8), max_concurrency=8, timeout=300)
    async with endpoint:
        yield Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)


async def test_greedy_and_sc_on_generated_problems(policy: Policy) -> None:
    task = get_task("arith")
    problems = load_task_problems("arith", limit=3, seed=7)
    greedy = [await solve_problem(p, policy=policy.endpoint, task=task, fmt=policy.fmt) for p in problems]
    sc_config = SolverConfig(method="sc", n=4, temperature=0.8, max_tokens=200)
    sc = [
        await solve_problem(p, policy=policy.endpoint, task=task, fmt=policy.fmt, config=sc_config)
        for p in problems
    ]

    assert all(s.usage.requests == 1 and s.usage.completion_tokens > 0 for s in greedy + sc)
    assert sum(s.answer is not None for s in greedy) >= 2  # the few-shot format is followed
    assert all(len(s.samples) == 4 for s in sc)
    assert all(sum(s.votes.values()) <= 4 for s in sc)
    assert any(s.votes for s in sc)
    # Every prompt starts with the same instruction and worked examples: the server reuses them.
    assert all(s.usage.cached_tokens > 0 for s in greedy[1:] + sc)
    assert all(s.usage.cached_tokens < s.usage.prompt_tokens for s in greedy + sc)


async def test_openai_route_of_the_same_server(embedded_url: str) -> None:
    async with Endpoint(OpenAIBackend(embedded_url)) as ep:
        result = await ep.complete("The capital of France is", Sampling(max_tokens=6, logprobs=3), n=2)
    assert len(result.completions) == 2
    first = result.completions[0]
    assert first.logprobs and all(len(t.top) == 3 for t in first.logprobs)
    assert "".join(t.token for t in first.logprobs) == first.text
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


async def test_library_solve_with_a_given_policy(policy: Policy) -> None:
    solution = await solve("Ana has 5 pens and buys 3 more. How many pens does she have?", policy=policy)
    assert solution.text and solution.usage.completion_tokens > 0


async def test_question_longer_than_the_context_is_a_clear_error(policy: Policy) -> None:
    # ~4,000 tokens: under the 20,000-character limit on questions, over the 2,048-token slot
    long_question = "Count the apples. " * 1000
    with pytest.raises(InputError, match="context"):
        await solve(long_question, policy=policy)


async def test_evaluate_writes_results_and_resumes(policy: Policy, tmp_path: Path) -> None:
    problems = load_task_problems("arith", limit=4, seed=3)
    out = tmp_path / "run"
    first = await evaluate(problems[:2], task=get_task("arith"), policy=policy, out=out)
    assert first.problems == 2
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(p.id for p in problems[:2])

    # Simulate a crash in the middle of writing a line: it is dropped and that problem redone.
    with (out / "results.jsonl").open("a") as f:
        f.write('{"id": "torn')
    second = await evaluate(problems, task=get_task("arith"), policy=policy, out=out)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(p.id for p in problems)
    assert second.problems == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 4 and 0.0 <= summary["accuracy"] <= 1.0
    assert summary["settings"]["method"] == "greedy"
    assert summary["tokens_per_problem"]["completion"] > 0
    for record in records:
        assert set(record) >= {"id", "answer", "gold", "correct", "tokens", "seconds"}
        assert record["correct"] == (record["answer"] == record["gold"])


def test_solve_cli_prints_an_answer(embedded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = solve_main(
        [
            "--url",
            embedded_url,
            "--backend",
            "llamacpp",
            "--method",
            "greedy",
            "-v",
            "Tom has 2 cats and gets 1 more. How many cats?",
        ]
    )
    out = capsys.readouterr().out
    assert code in (0, 1)  # 1 only when the tiny model states no answer
    assert "usage: 1 requests" in out
    assert ("answer: " in out) == (code == 0)


def test_evaluate_cli_sc_writes_both_files(embedded_url: str, tmp_path: Path) -> None:
    out = tmp_path / "sc"
    args = ["--task", "arith", "--method", "sc", "--n", "3", "--limit", "2", "--out", str(out)]
    assert evaluate_main([*args, "--url", embedded_url, "--backend", "llamacpp"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["settings"]["n"] == 3
    assert summary["cached_token_ratio"] > 0
    # Same command again: nothing left to do, nothing duplicated.
    assert evaluate_main([*args, "--url", embedded_url, "--backend", "llamacpp"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    # A different method in the same directory is refused, with a way out.
    other = [
        "--task",
        "arith",
        "--method",
        "greedy",
        "--limit",
        "2",
        "--out",
        str(out),
        "--url",
        embedded_url,
    ]
    assert evaluate_main(other) == 2


async def test_small_mcts_on_the_real_server(policy: Policy) -> None:
    task = get_task("arith")
    problem = load_task_problems("arith", limit=1, seed=11)[0]
    config = SolverConfig(method="mcts", search=SearchConfig(simulations=8, workers=4, max_depth=4))
    solution = await solve_problem(problem, policy=policy.endpoint, task=task, fmt=policy.fmt, config=config)
    result = solution.search
    assert result is not None and result.stopped == "budget"
    tree = result.tree
    assert tree.simulations == 8 and tree.in_flight == 0
    assert all(n.virtual_loss == 0 and n.pending == 0 for n in tree.nodes)
    assert len(tree.nodes) > 1 and all(n.option or n.terminal for n in tree.nodes[1:])
    assert all(0.0 <= (n.value or 0.0) <= 1.0 for n in tree.nodes[1:])
    # siblings share the parent's prompt: the server reuses it
    assert result.policy_usage.cached_tokens > 0.5 * result.policy_usage.prompt_tokens
    assert set(result.answers) == {"vote", "greedy", "best_leaf", "orm_rerank"}
    assert solution.text


def test_evaluate_cli_mcts_saves_trees(embedded_url: str, tmp_path: Path) -> None:
    out, trees = tmp_path / "mcts", tmp_path / "trees"
    args = ["--task", "arith", "--method", "mcts", "--simulations", "6", "--limit", "2", "--out", str(out)]
    args += [
        "--save-trees",
        str(trees),
        "--set",
        "max_depth=4",
        "--url",
        embedded_url,
        "--backend",
        "llamacpp",
    ]
    assert evaluate_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["solver"]["search"]["simulations"] == 6
    assert set(summary["settings"]["selector_accuracy"]) == {"vote", "greedy", "best_leaf", "orm_rerank"}
    saved = sorted(trees.glob("*.json"))
    assert len(saved) == 2
    tree = json.loads(saved[0].read_text())
    assert tree["simulations"] == 6 and tree["nodes"][0]["visits"] >= 1
    assert {"option", "visits", "value_sum", "scores", "merged", "tokens"} <= set(tree["nodes"][1])
