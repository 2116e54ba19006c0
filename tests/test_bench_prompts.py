"""bench/prompts.py on fakes: the runs it makes per set, variant and method, resuming, the table and
the default it chooses by the numbers. The "model" is a ``FunctionBackend`` that answers right only
when the prompt shows the short worked examples (and, for one-step problems, only then), so the
choice the benchmark makes is decided by results, not by names."""

from __future__ import annotations

import argparse
import json
import re
import sys
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
from agent.tasks import Problem

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import prompts

        yield prompts
    finally:
        sys.path.remove(str(BENCH))


def model(prompt: str, sampling: Sampling, index: int) -> str:
    """Copies the first worked example's answer unless the prompt has 'Lena has 14' (mixed/plain)."""
    gold = re.search(r"GOLD(\d+)", prompt.rsplit("<|im_start|>user\n", 1)[1])
    answer = gold.group(1) if gold and "Lena has 14" in prompt else "0"
    return f"1 + 1 = 2\nThe answer is {answer}."


def policy(backend: FunctionBackend) -> Policy:
    endpoint = Endpoint(backend, max_concurrency=4, retry=RetryPolicy(attempts=1))
    return Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)


def args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    base = {"variants": ["house", "mixed-4"], "sc_limit": 2, "sc_variants": None, "seed": 0, "concurrency": 4}
    base["out"] = tmp_path
    return argparse.Namespace(**{**base, **kw})


def problems(task: str, n: int) -> list[Problem]:
    return [
        Problem(f"{task}-{i}", f"Question {i}: GOLD{i + 3} apples?", str(i + 3), {"steps": 1 + i % 3})
        for i in range(n)
    ]


@pytest.mark.anyio
async def test_runs_every_variant_and_method_then_chooses_by_the_numbers(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [
        bench.DataSet("arith-dev", "arith", problems("arith", 4)),
        bench.DataSet("gsm8k-train", "gsm8k", problems("gsm8k", 3)),
    ]
    backend = FunctionBackend(model)
    rows = await bench.run_all(args(tmp_path), policy(backend), sets)
    assert [(r.set, r.variant, r.method, r.n) for r in rows] == [
        ("arith-dev", "house", "greedy", 4),
        ("arith-dev", "house", "sc8", 2),
        ("arith-dev", "mixed-4", "greedy", 4),
        ("arith-dev", "mixed-4", "sc8", 2),
        ("gsm8k-train", "house", "greedy", 3),
        ("gsm8k-train", "house", "sc8", 2),
        ("gsm8k-train", "mixed-4", "greedy", 3),
        ("gsm8k-train", "mixed-4", "sc8", 2),
    ]
    assert [r.correct for r in rows] == [0, 0, 4, 2, 0, 0, 3, 2]
    mixed = rows[2]
    assert mixed.by_steps == {1: (2, 2), 2: (1, 1), 3: (1, 1)}
    run = json.loads((tmp_path / "arith-dev" / "mixed-4" / "greedy" / "run.json").read_text())
    assert run["prompt"]["name"] == "mixed-4" and run["method"] == "greedy"

    calls = backend.calls
    again = await bench.run_all(args(tmp_path), policy(backend), sets)  # resumes: nothing solved twice
    assert backend.calls == calls and [r.correct for r in again] == [r.correct for r in rows]
    only = await bench.run_all(args(tmp_path, sc_variants=["mixed-4"]), policy(backend), sets[:1])
    assert [(r.variant, r.method) for r in only] == [
        ("house", "greedy"),
        ("mixed-4", "greedy"),
        ("mixed-4", "sc8"),
    ]

    capsys.readouterr()
    assert bench.report(rows, tmp_path) == "mixed-4"
    printed = capsys.readouterr().out
    assert "chosen default: mixed-4" in printed and "1 step" in printed
    data = json.loads((tmp_path / "prompts.json").read_text())
    assert data["chosen"] == "mixed-4" and len(data["rows"]) == 8
    lo, hi = data["rows"][2]["ci95"]
    assert data["rows"][2]["accuracy"] == 1.0 and lo < 1.0 == hi
    assert "| arith-dev | mixed-4 | greedy | 4 |" in (tmp_path / "prompts.md").read_text()


def test_choice_needs_every_dev_set_and_breaks_ties_by_prompt_length(bench: ModuleType) -> None:
    def row(set_name: str, variant: str, correct: int, method: str = "greedy") -> object:
        return bench.Row(set_name, variant, method, 10, correct, {}, 100.0, 50.0, 1.0)

    rows = [
        row("arith-dev", "a", 5),
        row("gsm8k-train", "a", 3),
        row("arith-dev", "b", 4),
        row("gsm8k-train", "b", 4),
        row("arith-dev", "c", 9),  # scored on one set only: not comparable
        row("arith-dev", "d", 9, "sc8"),  # SC does not choose the default
        row("arith-test", "e", 10),  # the test split never chooses
    ]
    assert bench.choose_default(rows, {"a": 900.0, "b": 400.0}) == "b"
    assert bench.choose_default(rows, {"a": 300.0, "b": 400.0}) == "a"
    with pytest.raises(ConfigError, match="nothing to choose"):
        bench.choose_default([row("arith-test", "e", 1)], {})


def test_command_line_against_the_fake_server(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prompts"
    argv = ["--variants", "house", "zero-shot", "--arith-limit", "3", "--gsm8k-limit", "0"]
    argv += ["--sc-limit", "0", "--test", "zero-shot", "--out", str(out)]
    with FakeServer(0.0, 8) as server:
        assert bench.main([*argv, "--url", server.url, "--backend", "llamacpp"]) == 0
    data = json.loads((out / "prompts.json").read_text())
    assert [(r["set"], r["variant"]) for r in data["rows"]] == [
        ("arith-dev", "house"),
        ("arith-dev", "zero-shot"),
        ("arith-test", "zero-shot"),
    ]
    assert data["chosen"] in ("house", "zero-shot") and "chosen default" in capsys.readouterr().out
    assert bench.main(["--arith-limit", "0", "--gsm8k-limit", "5", "--out", str(out)]) == 2  # no --gsm8k-data
