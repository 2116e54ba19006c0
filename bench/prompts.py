"""Benchmark: every prompt variant of the word-problem tasks, scored, and the default chosen by the numbers.

For each variant (``agent.tasks.variants``; all of them by default) and each data set, greedy and
self-consistency@8 through the ``agent.evaluate.evaluate`` library call, against one policy (``--url``
or the ``AGENT_POLICY__*`` settings, else the embedded bundled model):

- ``arith-dev``: ``--arith-limit`` generated problems of the TRAIN split under seed ``--dev-seed``
  (a development set: never the test split the README's numbers come from), with accuracy per
  number of steps (1, 2, 3);
- ``gsm8k-train``: the first ``--gsm8k-limit`` problems of a GSM8K training JSONL (``--gsm8k-data``;
  the test set is never used to choose a prompt);
- ``arith-test`` (only with ``--test [VARIANT ...]``): the generated test split, for the before/after
  table of the chosen default.

SC@8 runs on the first ``--sc-limit`` problems of each set (it costs eight solutions a problem), for
the ``--sc-variants`` (default: every variant scored).
Every run is a resumable ``agent.evaluate`` run directory ``<set>/<variant>/<method>`` under ``--out``
(default ``runs/bench/prompts``): an interrupted benchmark resumes where it stopped.

Columns: accuracy with its 95% Wilson interval, accuracy by steps (arith), prompt and completion
tokens per problem, and the wall seconds this invocation spent on the run (0 when it only resumed a
finished one). The chosen default is the variant with the highest mean greedy
accuracy over the development sets (``arith-dev`` and ``gsm8k-train``), ties going to the shorter
prompt. Writes ``prompts.md`` and ``prompts.json`` under ``--out``.

    PYTHONPATH=. python bench/prompts.py --gsm8k-data ../shared/data/gsm8k/train.jsonl
    PYTHONPATH=. python bench/prompts.py --variants house mixed-8 --sc-limit 0 --test
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import print_table, wilson_interval

from agent.cli import add_policy_args, policy_overrides, run_cli
from agent.errors import ConfigError
from agent.evaluate import evaluate
from agent.runs import write_json_atomic
from agent.runtime import Policy, open_policy
from agent.settings import load_settings
from agent.solvers import SolverConfig
from agent.tasks import Problem, get_task, load_task_problems
from agent.tasks.variants import prompt_names

__all__ = ["DataSet", "Row", "build_parser", "choose_default", "load_sets", "main", "row_from_run"]

DEV_SETS = ("arith-dev", "gsm8k-train")


@dataclass(frozen=True)
class DataSet:
    """A named list of problems of one task."""

    name: str
    task: str
    problems: list[Problem]
    variants: tuple[str, ...] = ()  # scored on this set (empty: --variants, else all of the task's)


@dataclass(frozen=True)
class Row:
    """One (set, variant, method) run, summed up."""

    set: str
    variant: str
    method: str
    n: int
    correct: int
    by_steps: dict[int, tuple[int, int]]  # steps -> (correct, n)
    prompt_tokens: float
    completion_tokens: float
    wall_seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.correct, self.n)
        return {
            "set": self.set,
            "variant": self.variant,
            "method": self.method,
            "n": self.n,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "by_steps": {str(k): {"correct": c, "n": n} for k, (c, n) in sorted(self.by_steps.items())},
            "prompt_tokens_per_problem": round(self.prompt_tokens, 1),
            "completion_tokens_per_problem": round(self.completion_tokens, 1),
            "wall_seconds": round(self.wall_seconds, 1),
        }


def load_sets(args: argparse.Namespace) -> list[DataSet]:
    sets = []
    if args.arith_limit > 0:
        dev = load_task_problems("arith", split="train", limit=args.arith_limit, seed=args.dev_seed)
        sets.append(DataSet("arith-dev", "arith", dev))
    if args.gsm8k_limit > 0:
        if args.gsm8k_data is None:
            raise ConfigError(
                "gsm8k-train needs --gsm8k-data (a GSM8K training JSONL), or pass --gsm8k-limit 0"
            )
        train = load_task_problems("gsm8k", data=args.gsm8k_data, limit=args.gsm8k_limit)
        sets.append(DataSet("gsm8k-train", "gsm8k", train))
    if args.test is not None:
        test = load_task_problems("arith", split="test", limit=args.arith_limit or 300, seed=0)
        sets.append(DataSet("arith-test", "arith", test, tuple(args.test)))
    if not sets:
        raise ConfigError("no data set to score: give --arith-limit, --gsm8k-limit or --test")
    return sets


def row_from_run(
    out: Path,
    *,
    set_name: str,
    variant: str,
    method: str,
    problems: Sequence[Problem],
    summary: dict[str, Any],
) -> Row:
    """A ``Row`` from a finished run directory: its results.jsonl joined with the problems' steps."""
    steps = {p.id: int(p.meta["steps"]) for p in problems if "steps" in p.meta}
    wanted = {p.id for p in problems}
    by_steps: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    correct = n = 0
    for line in (out / "results.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record["id"] not in wanted:
            continue
        n += 1
        correct += bool(record["correct"])
        if record["id"] in steps:
            cell = by_steps[steps[record["id"]]]
            cell[0] += bool(record["correct"])
            cell[1] += 1
    tokens = summary["tokens_per_problem"]
    return Row(
        set_name,
        variant,
        method,
        n,
        correct,
        {k: (c, t) for k, (c, t) in by_steps.items()},
        tokens["prompt"],
        tokens["completion"],
        summary["wall_seconds"],
    )


def choose_default(rows: Sequence[Row], prompt_tokens: dict[str, float]) -> str:
    """The variant with the highest mean greedy accuracy over the development sets it was scored on
    (all of them); ties go to the shorter prompt."""
    scores: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.method == "greedy" and row.set in DEV_SETS:
            scores[row.variant].append(row.accuracy)
    if not scores:
        raise ConfigError("no greedy run on a development set: nothing to choose from")
    most = max(len(v) for v in scores.values())
    complete = {v: sum(s) / len(s) for v, s in scores.items() if len(s) == most}
    return max(complete, key=lambda v: (complete[v], -prompt_tokens.get(v, 0.0)))


def _methods(args: argparse.Namespace) -> list[tuple[str, SolverConfig, int | None]]:
    methods: list[tuple[str, SolverConfig, int | None]] = [("greedy", SolverConfig(method="greedy"), None)]
    if args.sc_limit > 0:
        methods.append(("sc8", SolverConfig(method="sc", n=8, seed=args.seed), args.sc_limit))
    return methods


async def run_all(args: argparse.Namespace, policy: Policy, sets: list[DataSet]) -> list[Row]:
    rows: list[Row] = []
    for data in sets:
        variants = data.variants or args.variants or list(prompt_names(data.task))
        for variant in variants:
            task = get_task(data.task, prompt=variant)
            for method, config, limit in _methods(args):
                if method != "greedy" and args.sc_variants and variant not in args.sc_variants:
                    continue
                problems = data.problems[:limit] if limit else data.problems
                out = args.out / data.name / variant / method
                summary = await evaluate(
                    problems,
                    task=task,
                    policy=policy,
                    config=config,
                    out=out,
                    concurrency=args.concurrency,
                    run_info={"data": data.name, "limit": len(problems)},
                )
                row = row_from_run(
                    out,
                    set_name=data.name,
                    variant=variant,
                    method=method,
                    problems=problems,
                    summary=summary.as_dict(),
                )
                print(
                    f"{data.name} {variant} {method}: {row.correct}/{row.n} "
                    f"({row.accuracy:.3f}), {row.completion_tokens:.0f} completion tokens/problem",
                    flush=True,
                )
                rows.append(row)
    return rows


def report(rows: Sequence[Row], out: Path) -> str:
    """Print the table, write prompts.md and prompts.json; return the chosen default."""
    prompt_tokens = {r.variant: r.prompt_tokens for r in rows if r.method == "greedy"}
    chosen = choose_default(rows, prompt_tokens)
    columns = [
        "set",
        "variant",
        "method",
        "n",
        "accuracy [95% CI]",
        "1 step",
        "2 steps",
        "3 steps",
        "prompt tok",
        "completion tok",
        "wall s (this run)",
    ]
    table = []
    for r in rows:
        lo, hi = wilson_interval(r.correct, r.n)
        steps = [
            f"{r.by_steps[k][0] / r.by_steps[k][1]:.2f} ({r.by_steps[k][1]})" if k in r.by_steps else "-"
            for k in (1, 2, 3)
        ]
        table.append(
            [
                r.set,
                r.variant,
                r.method,
                r.n,
                f"{r.accuracy:.3f} [{lo:.2f}, {hi:.2f}]",
                *steps,
                f"{r.prompt_tokens:.0f}",
                f"{r.completion_tokens:.0f}",
                f"{r.wall_seconds:.0f}",
            ]
        )
    notes = [f"chosen default: {chosen} (highest mean greedy accuracy over {', '.join(DEV_SETS)})"]
    print_table("Prompt variants", columns, table, notes=notes)
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(c) for c in line) + " |" for line in table]
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompts.md").write_text("\n".join([*md, "", *notes]) + "\n")
    write_json_atomic(out / "prompts.json", {"chosen": chosen, "rows": [r.as_dict() for r in rows]})
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/prompts.py", description="Score every prompt variant; choose the default by the numbers."
    )
    parser.add_argument("--variants", nargs="+", help="variants to score (default: all of the task's)")
    parser.add_argument("--arith-limit", type=int, default=300, help="generated dev problems (0: skip)")
    parser.add_argument("--dev-seed", type=int, default=7, help="seed of the generated dev problems")
    parser.add_argument("--gsm8k-data", help="a GSM8K training JSONL, e.g. ../shared/data/gsm8k/train.jsonl")
    parser.add_argument("--gsm8k-limit", type=int, default=200, help="GSM8K training problems (0: skip)")
    parser.add_argument("--sc-limit", type=int, default=100, help="problems per set for SC@8 (0: skip)")
    parser.add_argument("--sc-variants", nargs="+", help="variants scored with SC@8 (default: all scored)")
    parser.add_argument(
        "--test",
        nargs="*",
        metavar="VARIANT",
        help="also score the generated test split (these variants; none: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of SC@8")
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight at once")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/prompts"))
    add_policy_args(parser)
    return parser


async def _main(args: argparse.Namespace) -> int:
    sets = load_sets(args)
    async with open_policy(load_settings(**policy_overrides(args))) as policy:
        rows = await run_all(args, policy, sets)
    report(rows, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args), level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
