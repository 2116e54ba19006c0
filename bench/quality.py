"""Benchmark: accuracy against tokens and time, per method, on the real embedded model.

On the generated arith test split (``--limit`` problems, seed 0), one embedded llama.cpp server
(bundled SmolLM2-135M-Instruct) runs each method through the ``agent.evaluate.evaluate`` library call
(``--concurrency`` problems at a time), each into a fresh run directory: greedy, self-consistency at
each ``--sc`` size, and MCTS at each ``--budgets`` simulation count (``--preset``, ``--critics``).

Columns: accuracy (the method's answer, graded); coverage (the gold answer is among the answers the
method produced: the samples' answers for sc, the answers of the tree's terminal nodes for mcts;
the ``covered`` field ``agent.evaluate`` records per problem, graded with the grader that grades
the answer; greedy's coverage is its accuracy); completion and prompt tokens per problem and the
cached-token ratio, as the server reported them; seconds per problem = wall time of the whole
evaluation / problems (problems run concurrently, so this is throughput, not latency). A second
table gives, per MCTS budget, the accuracy of the four final-answer selectors and the mean tree size.

    PYTHONPATH=. python bench/quality.py --limit 30
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from _common import Bench, CpuSnapshot, add_server_args, embedded_bench, load_average, print_table

from agent.errors import ConfigError
from agent.evaluate import EvalSummary, evaluate
from agent.search.config import preset
from agent.solvers import CRITICS, SolverConfig
from agent.tasks import Problem, get_task, load_task_problems

__all__ = ["Outcome", "main"]

SELECTORS = ("vote", "greedy", "best_leaf", "orm_rerank")


@dataclass
class Outcome:
    name: str
    config: SolverConfig
    summary: EvalSummary | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    load: str = ""  # load average when the run started
    ours: float = 0.0  # cores used by this benchmark and its server, on average
    others: float = 0.0  # cores used by every other process


def _configs(args: argparse.Namespace) -> list[tuple[str, SolverConfig]]:
    common = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    configs = [("greedy", SolverConfig(method="greedy", **common))]
    configs += [(f"sc@{n}", SolverConfig(method="sc", n=n, **common)) for n in args.sc]
    base = preset(args.preset)
    for sims in args.budgets:
        search = base.with_overrides(simulations=sims, max_simulations=max(sims, base.max_simulations))
        configs.append((f"mcts@{sims}", SolverConfig(method="mcts", search=search, critics=args.critics)))
    return configs


async def _evaluate_all(
    bench: Bench, problems: list[Problem], outcomes: list[Outcome], out: Path, concurrency: int
) -> None:
    task = get_task("arith")
    for outcome in outcomes:
        outcome.load = load_average()
        cpu = CpuSnapshot.take(bench.server)
        outcome.summary = await evaluate(
            problems,
            task=task,
            policy=bench.policy,
            config=outcome.config,
            out=out / outcome.name.replace("@", "-"),
            concurrency=concurrency,
            run_info={"bench": "quality", "limit": len(problems)},
            on_result=outcome.records.append,
        )
        after = CpuSnapshot.take(bench.server)
        outcome.ours, outcome.others = after.ours_since(cpu), after.others_since(cpu)
        print(
            f"  {outcome.name}: accuracy {outcome.summary.accuracy:.3f}, "
            f"coverage {outcome.summary.coverage:.3f}, "
            f"{outcome.summary.wall_seconds:.0f} s, other processes {outcome.others:.2f} cores",
            flush=True,
        )


async def _run(args: argparse.Namespace) -> None:
    problems = load_task_problems("arith", limit=args.limit, seed=args.seed, split="test")
    outcomes = [Outcome(name, config) for name, config in _configs(args)]
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        out = args.out or Path(tmp)
        for outcome in outcomes:
            target = out / outcome.name.replace("@", "-")
            if target.exists():
                raise ConfigError(
                    f"{target} exists: seconds per problem need a fresh run; remove it or pick another --out"
                )
        async with embedded_bench(args) as bench:
            describe = bench.describe()
            await _evaluate_all(bench, problems, outcomes, out, args.concurrency)
    _report(args, outcomes, describe, load_start)


def _report(args: argparse.Namespace, outcomes: list[Outcome], describe: str, load_start: str) -> None:
    rows = []
    for o in outcomes:
        assert o.summary is not None
        s = o.summary.as_dict()
        n = max(o.summary.problems, 1)
        tokens = s["tokens_per_problem"]
        rows.append(
            [
                o.name,
                f"{o.summary.accuracy:.3f}",
                f"{o.summary.coverage:.3f}",
                o.summary.problems,
                o.summary.failed,
                round(tokens["completion"]),
                round(tokens["prompt"]),
                f"{s['cached_token_ratio']:.2f}",
                round(o.summary.wall_seconds / n, 2),
                f"{o.ours:.2f}",
                f"{o.others:.2f}",
                o.load,
            ]
        )
    print_table(
        f"Quality vs cost on arith (test split, seed {args.seed}, {args.limit} problems, "
        f"{args.concurrency} at a time); mcts: preset {args.preset}, critics {args.critics}; {describe}",
        [
            "method",
            "accuracy",
            "coverage",
            "problems",
            "failed",
            "completion tok/problem",
            "prompt tok/problem",
            "cached ratio",
            "s/problem (wall)",
            "our CPU",
            "others' CPU",
            "load avg at start",
        ],
        rows,
        notes=[
            "ideal = accuracy equal to coverage: the method's final choice always picks the gold answer "
            "when it produced it (greedy's coverage is its accuracy).",
            "accuracy and coverage are over the problems recorded (failed problems are left out and counted "
            "in 'failed'); s/problem = wall time of the evaluation / problems, with problems in parallel.",
            "our CPU / others' CPU = cores used on average by this benchmark and its server / by every "
            "other process on the machine during that run (from /proc); others' CPU above ~0.1 means "
            "the times are disturbed.",
            f"load average before the server started {load_start}, after the last run {load_average()}.",
        ],
    )
    searched = [o for o in outcomes if o.config.method == "mcts"]
    if not searched:
        return
    rows = []
    for o in searched:
        assert o.summary is not None
        selectors = o.summary.settings.get("selector_accuracy", {})
        trees = [r["search"] for r in o.records if "search" in r]
        rows.append(
            [
                o.name,
                *(f"{selectors[name]:.3f}" if name in selectors else "-" for name in SELECTORS),
                f"{o.summary.coverage:.3f}",
                _mean(trees, "simulations"),
                _mean(trees, "nodes"),
                _mean(trees, "terminals"),
                _mean(trees, "merges"),
                sum(t["failed_simulations"] for t in trees),
            ]
        )
    print_table(
        f"MCTS final-answer selectors (summary['settings']['selector_accuracy']; '{args.preset}' "
        f"selects with '{preset(args.preset).final}')",
        [
            "method",
            *SELECTORS,
            "coverage",
            "simulations/tree",
            "nodes/tree",
            "terminals/tree",
            "merges/tree",
            "failed sims",
        ],
        rows,
        notes=["ideal = a selector as accurate as the coverage (gold among the tree's terminal answers)."],
    )


def _mean(trees: list[dict[str, Any]], key: str) -> float:
    return round(sum(t[key] for t in trees) / len(trees), 1) if trees else 0.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=30, help="problems of the arith test split (30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated problems (0)")
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight at once (8)")
    parser.add_argument("--sc", type=int, nargs="*", default=[4, 8], help="self-consistency sizes (4 8)")
    parser.add_argument("--budgets", type=int, nargs="*", default=[8, 16, 32], help="mcts simulations")
    parser.add_argument("--preset", default="cpu-small", help="mcts search preset (cpu-small)")
    parser.add_argument("--critics", choices=CRITICS, default="arithmetic", help="mcts critics")
    parser.add_argument("--max-tokens", type=int, default=320, help="greedy/sc tokens per solution")
    parser.add_argument("--temperature", type=float, default=0.7, help="sc sampling temperature")
    parser.add_argument("--out", type=Path, help="parent of the run directories (default: a temp dir)")
    add_server_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    anyio.run(_run, args)


if __name__ == "__main__":
    main()
