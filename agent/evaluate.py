"""Evaluate a solver on many problems: bounded concurrency, graded, resumable, summarized.

    python -m agent.evaluate --task arith --method greedy --limit 50
    python -m agent.evaluate --task gsm8k --data ../shared/data/gsm8k/test.jsonl --method sc --n 8 \
        --limit 100 --out runs/gsm8k-sc8

Writes ``results.jsonl`` (id, answer, gold, correct, covered, distinct answers, tokens, seconds
per problem) and ``summary.json`` (accuracy, coverage, tokens per problem, cached-token ratio, wall
time, settings; for mcts also requests, tokens and cached-token ratio per tree by phase: expansions,
rollouts, critics) under ``--out``. Rerunning with the same ``--out`` skips the problems already
finished. As a library call: ``await evaluate(problems, task=..., policy=...)``.

Coverage comes before choice: a selector can only pick an answer the sampling or the search found.
A problem is *covered* when the gold answer is among the distinct answers the method produced
before choosing, each graded with the grader that grades the final answer: the N samples' answers
for sc and rerank, the answers of the tree's terminal nodes for mcts; for greedy, covered is
correct. Coverage is the ceiling a perfect selector would reach, except that an mcts selector that
ends on a non-terminal node completes it, so an mcts answer can be correct without being covered.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from agent import __version__
from agent.cli import add_policy_args, add_solver_args, policy_overrides, run_cli, solver_config
from agent.clients import Usage
from agent.driver import SharedBudget
from agent.errors import AgentError, ConfigError, TransientEndpointError, single_error
from agent.runs import RunDir, write_json_atomic
from agent.runtime import Policy, open_policy
from agent.settings import load_settings
from agent.solvers import Solution, SolverConfig, solve_with
from agent.tasks import TASKS, Problem, Task, get_task, load_task_problems
from agent.tasks.answers import normalize_number
from agent.tasks.grading import Grader

__all__ = ["EvalSummary", "evaluate", "main"]

log = structlog.get_logger(__name__)


@dataclass
class EvalSummary:
    """What an evaluation found, over every problem recorded in the run (this session and before)."""

    problems: int
    correct: int
    failed: int
    usage: Usage
    wall_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    covered: int = 0  # problems whose gold answer is among the answers found (see the module docstring)
    distinct_answers: int = 0  # distinct answers found, summed over the problems
    trees: int = 0  # mcts: problems with a search tree recorded
    terminals: int = 0  # mcts: terminal nodes, summed over those trees
    phases: dict[str, Usage] = field(default_factory=dict)  # mcts: tokens by phase, over the trees

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0

    @property
    def coverage(self) -> float:
        """Share of the problems whose gold answer the method found: the best any selector could do."""
        return self.covered / self.problems if self.problems else 0.0

    def as_dict(self) -> dict[str, Any]:
        per = max(self.problems, 1)
        data: dict[str, Any] = {
            "accuracy": round(self.accuracy, 4),
            "coverage": round(self.coverage, 4),
            "problems": self.problems,
            "correct": self.correct,
            "covered": self.covered,
            "distinct_answers_per_problem": round(self.distinct_answers / per, 2),
            "failed": self.failed,
            "failures": self.failures,
            "tokens_per_problem": {
                "prompt": round(self.usage.prompt_tokens / per, 1),
                "cached": round(self.usage.cached_tokens / per, 1),
                "completion": round(self.usage.completion_tokens / per, 1),
            },
            "requests_per_problem": round(self.usage.requests / per, 2),
            "cached_token_ratio": round(self.usage.cached_ratio, 4),
            # Mean time to solve one problem (problems run concurrently, so this is latency, not cost).
            "solve_seconds_mean": round(self.usage.seconds / per, 3),
            "wall_seconds": round(self.wall_seconds, 2),
            "settings": self.settings,
        }
        if self.trees:
            data["terminals_per_tree"] = round(self.terminals / self.trees, 2)
        if self.phases:
            data["phases"] = {
                name: {
                    "requests_per_tree": round(u.requests / self.trees, 2),
                    "prompt_tokens_per_tree": round(u.prompt_tokens / self.trees, 1),
                    "completion_tokens_per_tree": round(u.completion_tokens / self.trees, 1),
                    "cached_token_ratio": round(u.cached_ratio, 4),
                }
                for name, u in self.phases.items()
            }
        return data


def _record(
    problem: Problem, solution: Solution, correct: bool, found: list[str], covered: bool
) -> dict[str, Any]:
    return {
        "id": problem.id,
        "answer": solution.answer,
        "gold": problem.gold,
        "correct": correct,
        "covered": covered,
        "distinct_answers": len(found),
        "tokens": solution.usage.as_dict(),
        "seconds": round(solution.seconds, 3),
        "votes": solution.votes,
        "solution": solution.text,
    }


def _found_answers(solution: Solution) -> list[str]:
    """The distinct answers the method produced before choosing (normalized, first seen first): the
    answers of the tree's terminal nodes for mcts, else the samples' answers (greedy's one sample)."""
    if solution.search is not None:
        answers: list[str | None] = [n.answer for n in solution.search.tree.terminals()]
    else:
        answers = list(solution.votes)  # the samples' answers, as vote() counted them
    return list(dict.fromkeys(normalize_number(a) for a in answers if a is not None))


async def _covered(grader: Grader, found: list[str], gold: str | None) -> bool:
    """Whether ``gold`` is among the ``found`` answers, each graded as a final answer would be."""
    if gold is None or not found:
        return False
    return any(await grader.grade_many((answer, gold) for answer in found))


async def _backfill_coverage(grader: Grader, records: list[dict[str, Any]], method: str) -> None:
    """Add ``covered`` and ``distinct_answers`` (in memory) to records of a run that predates them,
    from each record's vote table: the samples' answers, or the terminal nodes' answers for mcts."""
    for record in records:
        if "covered" in record:
            continue
        found = [normalize_number(a) for a in record.get("votes") or {}]
        record["distinct_answers"] = len(found)
        if method == "greedy":
            record["covered"] = bool(record["correct"])
        else:
            record["covered"] = await _covered(grader, found, record.get("gold"))


async def _selector_record(solution: Solution, problem: Problem, grader: Grader) -> dict[str, Any]:
    """Each answer selector's pick (rerank and mcts report several) and whether it is correct."""
    selectors = {}
    for name, answer in solution.answers.items():
        ok = problem.gold is not None and await grader.grade(answer, problem.gold)
        selectors[name] = {"answer": answer, "correct": ok}
    return selectors


def _search_record(solution: Solution) -> dict[str, Any]:
    """What one search did: tree size, why it stopped, what the policy and the critics spent."""
    result = solution.search
    assert result is not None
    return {
        "nodes": len(result.tree.nodes),
        "simulations": result.tree.simulations,
        "terminals": len(result.tree.terminals()),
        "merges": sum(len(n.merged) for n in result.tree.nodes),
        "stopped": result.stopped,
        "failed_simulations": result.failed_simulations,
        "critic_missing": result.critic_missing,
        "policy_tokens": result.policy_usage.as_dict(),
        "critic_tokens": result.critic_usage.as_dict(),
        "rollout_tokens": result.rollout_usage.as_dict(),
    }


def _phases(trees: list[dict[str, Any]]) -> dict[str, Usage]:
    """Tokens of the searches by phase: policy expansions (and the final completions), rollouts,
    critics. Records written before rollouts were counted apart put them under expansions."""

    def total(key: str) -> Usage:
        return sum((_usage_of({"tokens": t.get(key)}) for t in trees), Usage())

    if not trees:
        return {}
    rollouts = total("rollout_tokens")
    policy = total("policy_tokens")
    expansions = Usage(
        requests=policy.requests - rollouts.requests,
        prompt_tokens=policy.prompt_tokens - rollouts.prompt_tokens,
        cached_tokens=policy.cached_tokens - rollouts.cached_tokens,
        completion_tokens=policy.completion_tokens - rollouts.completion_tokens,
    )
    return {"expansions": expansions, "rollouts": rollouts, "critics": total("critic_tokens")}


def _selector_accuracy(records: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of each answer selector over the records that report selectors."""
    reported = [r["selectors"] for r in records if r.get("selectors")]
    if not reported:
        return {}
    names = sorted({name for s in reported for name in s})
    return {
        name: round(sum(s[name]["correct"] for s in reported if name in s) / len(reported), 4)
        for name in names
    }


def save_tree(directory: Path, problem_id: str, tree: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in problem_id)
    write_json_atomic(directory / f"{safe}.json", tree)


def _usage_of(record: dict[str, Any]) -> Usage:
    t = record.get("tokens") or {}
    return Usage(
        requests=int(t.get("requests", 0)),
        prompt_tokens=int(t.get("prompt_tokens", 0)),
        cached_tokens=int(t.get("cached_tokens", 0)),
        completion_tokens=int(t.get("completion_tokens", 0)),
        seconds=float(record.get("seconds", 0.0)),
    )


async def evaluate(
    problems: Sequence[Problem],
    *,
    task: Task,
    policy: Policy,
    config: SolverConfig = SolverConfig(),
    out: Path | None = None,
    concurrency: int = 8,
    run_info: dict[str, Any] | None = None,
    save_trees: Path | None = None,
    shared: SharedBudget | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> EvalSummary:
    """Solve and grade every problem not already recorded under ``out``; return the summary."""
    if not 1 <= concurrency <= 4096:
        raise ConfigError(f"--concurrency must be between 1 and 4096, got {concurrency}")
    start = time.perf_counter()
    settings = {
        "task": task.name,
        "prompt": task.prompt.identity(),
        "method": config.method,
        "n": config.n if config.method in ("sc", "rerank") else 1,
        "solver": config.as_dict(),
        "policy": policy.describe(),
        "concurrency": concurrency,
        "treeloop": __version__,
        **(run_info or {}),
    }
    run = RunDir(out) if out is not None else None
    records = await anyio.to_thread.run_sync(run.open, settings) if run else []
    done = {r["id"] for r in records}
    todo = [p for p in problems if p.id not in done]
    if on_start:
        on_start(len(problems) - len(todo))
    failures: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async with Grader() as grader:

        async def one(problem: Problem) -> None:
            async with limiter:
                try:
                    solution = await solve_with(policy, problem, task=task, config=config, shared=shared)
                except (TransientEndpointError, ConfigError):
                    # The server kept failing past the retry layer, or the setup is wrong: every
                    # problem would fail the same way. Stop; what is recorded stays recorded.
                    raise
                except AgentError as exc:
                    failures[problem.id] = str(exc)
                    log.warning("problem_failed", problem_id=problem.id, error=str(exc))
                    return
                correct = problem.gold is not None and await grader.grade(solution.answer, problem.gold)
                found = _found_answers(solution)
                if config.method == "greedy":
                    covered = correct  # the one sample is the answer
                else:
                    covered = await _covered(grader, found, problem.gold)
                record = _record(problem, solution, correct, found, covered)
                if solution.answers:
                    record["selectors"] = await _selector_record(solution, problem, grader)
                if solution.search is not None:
                    record["search"] = _search_record(solution)
                    if save_trees is not None:
                        tree = {
                            "id": problem.id,
                            "gold": problem.gold,
                            "answer": solution.answer,
                            "chosen": solution.search.choice.node,
                            **solution.search.tree.to_dict(),
                        }
                        await anyio.to_thread.run_sync(save_tree, save_trees, problem.id, tree)
                if run:
                    await anyio.to_thread.run_sync(run.append, record)
                records.append(record)
                if on_result:
                    on_result(record)

        await _backfill_coverage(grader, records, config.method)
        try:
            async with anyio.create_task_group() as tg:
                for problem in todo:
                    tg.start_soon(one, problem)
        except BaseExceptionGroup as group:
            error = single_error(group)
            if run is not None and isinstance(error, AgentError):
                error.add_note(
                    f"{len(records)} of {len(problems)} problems are recorded in {run.path}; "
                    "rerun the same command to finish the rest"
                )
            raise error from None

    usage = sum((_usage_of(r) for r in records), Usage())
    selectors = _selector_accuracy(records)
    if selectors:
        settings = {**settings, "selector_accuracy": selectors}
    trees = [r["search"] for r in records if r.get("search")]
    summary = EvalSummary(
        problems=len(records),
        correct=sum(1 for r in records if r["correct"]),
        failed=len(failures),
        usage=usage,
        wall_seconds=time.perf_counter() - start,
        settings=settings,
        failures=failures,
        covered=sum(1 for r in records if r["covered"]),
        distinct_answers=sum(int(r["distinct_answers"]) for r in records),
        trees=len(trees),
        terminals=sum(int(t["terminals"]) for t in trees),
        phases=_phases(trees),
    )
    if run:
        await anyio.to_thread.run_sync(run.write_summary, summary.as_dict())
    log.info(
        "evaluation_done",
        accuracy=summary.accuracy,
        coverage=summary.coverage,
        problems=summary.problems,
        failed=summary.failed,
    )
    return summary


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) as ``(I, N)``; a ConfigError that shows the form otherwise."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ConfigError(f"--shard must be I/N with 1 <= I <= N (e.g. 1/2 and 2/2), got {text!r}")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent.evaluate",
        description="Evaluate a solver on a task and write results.jsonl and summary.json (resumable).",
    )
    parser.add_argument("--task", choices=TASKS, default="arith", help="default: arith (generated)")
    parser.add_argument("--data", help="JSONL file in the task's official format, or hf:owner/name[:config]")
    parser.add_argument("--split", default="test", help="split for hub data / generated problems")
    parser.add_argument("--limit", type=int, help="evaluate the first N problems (arith default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated arith problems")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="evaluate every N-th problem starting at the I-th (1-based), to split a run over N processes",
    )
    parser.add_argument(
        "--out", type=Path, help="run directory (default: runs/<task>-<method>[-n<N>][-shard<I>of<N>])"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight at once")
    parser.add_argument("--save-trees", type=Path, metavar="DIR", help="mcts: write each search tree as JSON")
    parser.add_argument(
        "--total-tokens", type=int, help="mcts: one budget of policy completion tokens shared by all trees"
    )
    add_solver_args(parser)
    add_policy_args(parser)
    return parser


async def _main(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = load_settings(**policy_overrides(args))
    config = solver_config(args)
    if args.total_tokens is not None and args.total_tokens < 1:
        raise ConfigError(f"--total-tokens must be at least 1, got {args.total_tokens}")
    task = get_task(args.task, prompt=settings.prompt)
    problems = load_task_problems(
        args.task, data=args.data, split=args.split, limit=args.limit, seed=args.seed
    )
    suffix = f"-n{args.n}" if args.method in ("sc", "rerank") else ""
    info: dict[str, Any] = {
        "data": args.data or f"generated:seed={args.seed}:split={args.split}",
        "limit": args.limit,
    }
    if args.shard is not None:
        index, count = parse_shard(args.shard)
        problems = problems[index - 1 :: count]
        suffix += f"-shard{index}of{count}"
        info["shard"] = f"{index}/{count}"
    out = args.out or Path("runs") / f"{args.task}-{args.method}{suffix}"
    correct = seen = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("correct {task.fields[acc]}"),
        TimeElapsedColumn(),
    ) as progress:
        bar = progress.add_task(f"{args.task} {args.method}", total=len(problems), acc="-")

        def on_start(already: int) -> None:
            progress.update(bar, completed=already)

        def on_result(record: dict[str, Any]) -> None:
            nonlocal correct, seen
            correct, seen = correct + bool(record["correct"]), seen + 1
            progress.update(bar, advance=1, acc=f"{correct}/{seen}")

        async with open_policy(settings, critics=config.critics) as policy:
            summary = await evaluate(
                problems,
                task=task,
                policy=policy,
                config=config,
                out=out,
                concurrency=args.concurrency,
                run_info=info,
                save_trees=args.save_trees,
                shared=SharedBudget(max_tokens=args.total_tokens) if args.total_tokens else None,
                on_start=on_start,
                on_result=on_result,
            )
    s = summary.as_dict()
    print(
        f"accuracy {s['accuracy']:.3f} ({summary.correct}/{summary.problems})  "
        f"coverage {s['coverage']:.3f} ({summary.covered}/{summary.problems})  "
        f"tokens/problem {s['tokens_per_problem']}  cached ratio {s['cached_token_ratio']:.2f}  "
        f"wall {s['wall_seconds']:.1f} s  -> {out}/summary.json"
    )
    if summary.failed:
        print(f"{summary.failed} problems failed (see summary.json); rerun the same command to retry them")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args), level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
