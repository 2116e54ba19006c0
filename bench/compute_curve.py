"""Benchmark: the test-time compute picture, accuracy against completion tokens per problem.

On a held-out task (the generated arith test split by default, or a GSM8K JSONL with ``--task gsm8k
--data PATH``), runs every point of the curve through the ``agent.evaluate.evaluate`` library call:
self-consistency at each ``--sc-k`` sample count (SC@k, majority vote), ORM re-rank at the same
counts (re-rank@k, the ``--critics`` ORM; ``trained`` by default, the adapters of
``AGENT_CRITIC_ADAPTERS``) and ηMCTS at each ``--mcts-sims`` simulation count (``--preset`` with
``--set``, ``--rollouts`` and ``--workers`` applied, the ``--critics`` critics). The policy is the one
``agent.evaluate`` would use: ``--url`` or the ``AGENT_POLICY__*`` settings, else the embedded model.

Each point is a run directory ``<method>-<budget>`` under ``--out`` (default
``runs/bench/compute_curve``), so an interrupted curve resumes where it stopped: finished problems
are not solved again. Each point's ``timing.json`` adds up the wall time of the sessions that solved
its problems and how many they solved.

Columns: accuracy (over the recorded problems) with its 95% Wilson interval; coverage (the gold
answer is among the answers the method found: the k samples' answers, or the tree's terminal
answers; the ``covered`` field of each record); completion tokens per problem (everything the
server generated for the problem, the critics' requests included); wall seconds per problem (wall
time of the sessions that solved the problems / problems solved in them; problems run
``--concurrency`` at a time, so this is throughput, not latency).

Writes ``compute_curve.json`` (every point) and ``compute_curve.png`` (accuracy against completion
tokens per problem, log x, one line per method with the Wilson intervals as error bars, coverage
dotted) under ``--out``.

    PYTHONPATH=. python bench/compute_curve.py --limit 200 --critics trained
    PYTHONPATH=. python bench/compute_curve.py --task gsm8k --data ../shared/data/gsm8k/test.jsonl \\
        --url http://127.0.0.1:30000 --preset gsm8k-small --mcts-sims 8 16 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
from _common import print_table, wilson_interval

from agent.cli import add_policy_args, add_search_args, policy_overrides, run_cli, search_config
from agent.errors import ConfigError
from agent.evaluate import EvalSummary, evaluate
from agent.runs import write_json_atomic
from agent.runtime import Policy, open_policy
from agent.search.config import SearchConfig
from agent.settings import load_settings
from agent.solvers import CRITICS, CriticsKind, SolverConfig, build_critics
from agent.tasks import TASKS, Problem, Task, get_task, load_task_problems

__all__ = [
    "CURVE_METHODS",
    "Point",
    "PointResult",
    "build_parser",
    "curve_points",
    "main",
    "report",
    "run_points",
]

CURVE_METHODS = ("sc", "rerank", "mcts")


@dataclass(frozen=True)
class Point:
    """One point of the curve: a method at one budget (samples for sc and rerank, simulations for mcts)."""

    method: str
    budget: int
    config: SolverConfig

    @property
    def name(self) -> str:
        return f"{self.method}@{self.budget}"

    @property
    def dirname(self) -> str:
        return f"{self.method}-{self.budget}"


@dataclass
class PointResult:
    point: Point
    summary: EvalSummary
    wall_seconds: float  # summed over the sessions that solved this point's problems
    solved: int  # problems solved in those sessions

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.summary.correct, self.summary.problems)

    @property
    def seconds_per_problem(self) -> float | None:
        return self.wall_seconds / self.solved if self.solved else None

    def as_dict(self) -> dict[str, Any]:
        s = self.summary.as_dict()
        low, high = self.interval
        data = {
            "method": self.point.method,
            "budget": self.point.budget,
            "name": self.point.name,
            "dir": self.point.dirname,
            "problems": self.summary.problems,
            "failed": self.summary.failed,
            "correct": self.summary.correct,
            "accuracy": s["accuracy"],
            "accuracy_ci95": [round(low, 4), round(high, 4)],
            "covered": self.summary.covered,
            "coverage": s["coverage"],
            "distinct_answers_per_problem": s["distinct_answers_per_problem"],
            "completion_tokens_per_problem": s["tokens_per_problem"]["completion"],
            "prompt_tokens_per_problem": s["tokens_per_problem"]["prompt"],
            "requests_per_problem": s["requests_per_problem"],
            "wall_seconds_per_problem": None
            if self.seconds_per_problem is None
            else round(self.seconds_per_problem, 3),
            "timed_problems": self.solved,
            "config": self.point.config.as_dict(),
        }
        if "terminals_per_tree" in s:
            data["terminals_per_tree"] = s["terminals_per_tree"]
        return data


def curve_points(
    methods: Sequence[str],
    *,
    sc_k: Sequence[int],
    mcts_sims: Sequence[int],
    search: SearchConfig,
    critics: CriticsKind,
    max_tokens: int = 320,
    temperature: float = 0.7,
) -> list[Point]:
    """The points of the curve, method by method in ``CURVE_METHODS`` order, budgets ascending."""
    unknown = sorted(set(methods) - set(CURVE_METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {', '.join(unknown)}; choose from {', '.join(CURVE_METHODS)}")
    points: list[Point] = []
    for method in (m for m in CURVE_METHODS if m in methods):
        if method == "mcts":
            for sims in sorted(set(mcts_sims)):
                budget = search.with_overrides(
                    simulations=sims, max_simulations=max(sims, search.max_simulations)
                )
                config = SolverConfig(
                    method="mcts",
                    max_tokens=max_tokens,
                    temperature=temperature,
                    search=budget,
                    critics=critics,
                )
                points.append(Point("mcts", sims, config))
            continue
        for k in sorted(set(sc_k)):
            config = SolverConfig(
                method="rerank" if method == "rerank" else "sc",
                n=k,
                max_tokens=max_tokens,
                temperature=temperature,
                search=search,  # rerank splits a sample into steps with its option rule
            )
            if method == "rerank":
                config = replace(config, critics=critics)
            points.append(Point(method, k, config))
    if not points:
        raise ConfigError("no points to run: give --methods and at least one budget")
    return points


def _check_critics(points: Sequence[Point], policy: Policy) -> None:
    """Fail before the first request when a method's critics cannot be built (say, trained critics
    without AGENT_CRITIC_ADAPTERS, or re-rank without an ORM), not after the points before it ran."""
    for point in points:
        if point.method not in ("rerank", "mcts"):
            continue
        critics = build_critics(
            point.config.critics,
            policy=policy.endpoint,
            fmt=policy.fmt,
            adapters=policy.critic_adapters,
            temperatures=policy.critic_temperatures,
        )
        if point.method == "rerank" and "orm" not in critics:
            raise ConfigError(f"rerank needs an ORM; --critics {point.config.critics} has none")


def _read_timing(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"wall_seconds": 0.0, "problems": 0}


async def run_points(
    problems: Sequence[Problem],
    *,
    task: Task,
    policy: Policy,
    points: Sequence[Point],
    out: Path,
    concurrency: int = 8,
    run_info: dict[str, Any] | None = None,
) -> list[PointResult]:
    """Evaluate every point into ``out/<method>-<budget>`` (resuming what is there), one after another."""
    _check_critics(points, policy)
    results = []
    for point in points:
        directory = out / point.dirname
        solved = 0

        def count(record: dict[str, Any]) -> None:
            nonlocal solved
            solved += 1

        start = time.perf_counter()
        summary = await evaluate(
            problems,
            task=task,
            policy=policy,
            config=point.config,
            out=directory,
            concurrency=concurrency,
            run_info={"bench": "compute_curve", **(run_info or {})},
            on_result=count,
        )
        wall = time.perf_counter() - start
        timing_path = directory / "timing.json"
        timing = await anyio.to_thread.run_sync(_read_timing, timing_path)
        if solved:
            timing = {
                "wall_seconds": round(float(timing["wall_seconds"]) + wall, 3),
                "problems": int(timing["problems"]) + solved,
            }
            await anyio.to_thread.run_sync(write_json_atomic, timing_path, timing)
        result = PointResult(point, summary, float(timing["wall_seconds"]), int(timing["problems"]))
        low, high = result.interval
        print(
            f"  {point.name}: accuracy {summary.accuracy:.3f} [{low:.3f}, {high:.3f}], "
            f"coverage {summary.coverage:.3f}, {summary.problems} problems ({solved} solved now)",
            flush=True,
        )
        results.append(result)
    return results


def report(results: Sequence[PointResult], out: Path, *, title: str, info: dict[str, Any]) -> dict[str, Any]:
    """Print the table; write ``compute_curve.json`` and ``compute_curve.png`` under ``out``."""
    rows = []
    for r in results:
        d = r.as_dict()
        low, high = r.interval
        rows.append(
            [
                r.point.method,
                r.point.budget,
                d["problems"],
                d["failed"],
                f"{d['accuracy']:.3f}",
                f"[{low:.3f}, {high:.3f}]",
                f"{d['coverage']:.3f}",
                round(d["completion_tokens_per_problem"]),
                d["wall_seconds_per_problem"],
                d.get("terminals_per_tree"),
            ]
        )
    print_table(
        title,
        [
            "method",
            "budget",
            "problems",
            "failed",
            "accuracy",
            "95% CI (Wilson)",
            "coverage",
            "completion tok/problem",
            "s/problem (wall)",
            "terminals/tree",
        ],
        rows,
        notes=[
            "budget = samples (sc, rerank) or simulations per tree (mcts). ideal = accuracy equal to "
            "coverage: the method picks the gold answer whenever it found it.",
            "completion tok/problem counts every request the problem made, the critics' included; "
            "s/problem = wall time of the sessions that solved the problems / problems they solved.",
        ],
    )
    data = {**info, "points": [r.as_dict() for r in results]}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "compute_curve.json", data)
    plot(data["points"], out / "compute_curve.png", title=title)
    return data


def plot(points: Sequence[dict[str, Any]], path: Path, *, title: str) -> None:
    """Accuracy against completion tokens per problem (log x), one line per method with Wilson error
    bars; coverage dotted in the same colour. Points with no tokens (nothing solved) are left out."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    handles: list[Any] = []  # each method: its accuracy (error bars), then its coverage line
    for i, method in enumerate(CURVE_METHODS):
        mine = sorted(
            (p for p in points if p["method"] == method and p["completion_tokens_per_problem"] > 0),
            key=lambda p: p["completion_tokens_per_problem"],
        )
        if not mine:
            continue
        colour = f"C{i}"
        x = [p["completion_tokens_per_problem"] for p in mine]
        y = [p["accuracy"] for p in mine]
        errors = [
            [max(0.0, p["accuracy"] - p["accuracy_ci95"][0]) for p in mine],
            [max(0.0, p["accuracy_ci95"][1] - p["accuracy"]) for p in mine],
        ]
        label = {"sc": "SC@k", "rerank": "re-rank@k", "mcts": "ηMCTS"}[method]
        handles.append(
            ax.errorbar(x, y, yerr=errors, color=colour, marker="o", capsize=3, label=f"{label} accuracy")
        )
        (covered,) = ax.plot(
            x, [p["coverage"] for p in mine], color=colour, linestyle=":", label=f"{label} coverage"
        )
        handles.append(covered)
        for p in mine:
            ax.annotate(
                str(p["budget"]),
                (p["completion_tokens_per_problem"], p["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
                color=colour,
            )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("completion tokens per problem (log)")
    ax.set_ylabel("accuracy (95% Wilson interval); coverage dotted")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, which="both", alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=8)
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/compute_curve.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", choices=TASKS, default="arith", help="default: arith (generated)")
    parser.add_argument("--data", help="JSONL file in the task's official format (gsm8k, math)")
    parser.add_argument("--split", default="test", help="split of the generated problems (test)")
    parser.add_argument("--limit", type=int, default=200, help="the first N problems (200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated arith problems (0)")
    parser.add_argument(
        "--methods", nargs="+", choices=CURVE_METHODS, default=list(CURVE_METHODS), help="(sc rerank mcts)"
    )
    parser.add_argument("--sc-k", type=int, nargs="+", default=[1, 2, 4, 8], help="samples k (1 2 4 8)")
    parser.add_argument(
        "--mcts-sims", type=int, nargs="+", default=[4, 8, 16, 24], help="simulations per tree (4 8 16 24)"
    )
    parser.add_argument(
        "--critics",
        choices=CRITICS,
        default="trained",
        help="critics of rerank and mcts (trained: AGENT_CRITIC_ADAPTERS, else the shipped critic)",
    )
    parser.add_argument("--max-tokens", type=int, default=320, help="tokens per sc/rerank solution (320)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sc/rerank sampling temperature")
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight at once (8)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/compute_curve"), help="parent directory")
    add_search_args(parser)
    add_policy_args(parser)
    return parser


def _options(args: argparse.Namespace) -> tuple[list[Point], dict[str, Any]]:
    if args.simulations is not None:
        raise ConfigError("the curve sets the simulations per point: give --mcts-sims, not --simulations")
    if min([*args.sc_k, *args.mcts_sims]) < 1:
        raise ConfigError("--sc-k and --mcts-sims take positive counts")
    points = curve_points(
        args.methods,
        sc_k=args.sc_k,
        mcts_sims=args.mcts_sims,
        search=search_config(args),
        critics=args.critics,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    data = args.data or f"generated:seed={args.seed}:split={args.split}"
    info = {
        "task": args.task,
        "data": data,
        "limit": args.limit,
        "critics": args.critics,
        "preset": args.preset,
    }
    return points, info


async def _main(
    args: argparse.Namespace, points: list[Point], problems: list[Problem], info: dict[str, Any]
) -> int:
    settings = load_settings(**policy_overrides(args))
    async with open_policy(settings, critics=args.critics) as policy:
        results = await run_points(
            problems,
            task=get_task(args.task, prompt=settings.prompt),
            policy=policy,
            points=points,
            out=args.out,
            concurrency=args.concurrency,
            run_info={"data": info["data"], "limit": args.limit},
        )
        model = policy.describe()
    title = (
        f"Test-time compute on {args.task} ({info['data']}, {len(problems)} problems); "
        f"critics {args.critics}, preset {args.preset}; policy {model['url']}"
    )
    info = {**info, "problems": len(problems), "policy": model}
    await anyio.to_thread.run_sync(lambda: report(results, args.out, title=title, info=info))
    print(f"-> {args.out}/compute_curve.json, {args.out}/compute_curve.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    async def start() -> int:
        points, info = _options(args)
        problems = await anyio.to_thread.run_sync(
            lambda: load_task_problems(
                args.task, data=args.data, split=args.split, limit=args.limit, seed=args.seed
            )
        )
        return await _main(args, points, problems, info)

    return run_cli(start, level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
