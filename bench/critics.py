"""How well do the critics tell right from wrong on the policy's own solutions to held-out problems?

    PYTHONPATH=. python bench/critics.py                                   # arith test split, 200 x 4
    PYTHONPATH=. python bench/critics.py --task gsm8k --data ../shared/data/gsm8k/test.jsonl --limit 100

1. Paths: the bundled policy (embedded llama.cpp server) writes ``--samples`` solutions (T=0.8) to each
   of the first ``--limit`` problems (the arith TEST split by default: never trained on); each is graded.
   Cached in ``--out`` (``paths.jsonl``), so a rerun scores again without sampling.
2. Labels: ORM = the final grade; value = the Monte-Carlo success rate of the samples through a prefix
   (0 once the prefix holds a wrong step, where steps are labelled); PRM = the first wrong step, found
   against the generator's reference (``agent.improve.synth.label_policy_steps``; arith only).
3. Critics (``--critics``), each in every role it has: ``untrained`` (the base model asked the same
   question), ``trained`` (the shipped critic, or ``--adapter``, with its fitted temperatures),
   ``arithmetic`` (the tool re-check), ``checked`` (trained, capped by the re-check) and ``verifier``
   (the feature verifier, shipped weights or ``--verifier``; no model requests).
4. Tables: per role and critic, n, positives, AUC, ECE, Brier, precision and recall at 0.5; for the
   PRM also how often the first step it scores below 0.5 is the labelled first wrong step ("first
   wrong found", over wrong solutions whose first wrong step is labelled). Then what the critics
   buy downstream on the same samples: per problem, the majority answer of the ``--samples``
   solutions (self-consistency) and the answer of the solution each ORM scores highest (re-rank),
   with 95% Wilson intervals, and coverage (the gold among the samples), for the first k = 1, 2, 4,
   ... samples: the test-time compute picture, plotted as ``compute_curve.png`` (accuracy against
   policy completion tokens per problem) with any ``--points`` (``agent.evaluate`` output
   directories, e.g. greedy and ηMCTS runs on the same problems). Written to ``critics.md`` and
   ``critics.json`` in ``--out``.

Value and PRM rows are each capped at ``--max-prefixes`` (a seeded sample) to bound the number of
requests; the ``checked`` critic reuses the trained critic's scores, so it costs no extra requests.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from _common import wilson_interval

from agent.clients import Endpoint, LlamaCppBackend, Sampling
from agent.critics import ArithmeticCritic, CheckedCritic, GenerativeCritic
from agent.critics.shipped import critic_temperatures, shipped_critic, shipped_verifier
from agent.critics.verifier import FeatureVerifier, load_weights
from agent.improve.calibration import calibration_report
from agent.improve.critic_data import Trajectory, critic_rows, labelled_rows
from agent.improve.synth import LabelledSolution, label_policy_steps
from agent.prompts import get_format
from agent.runs import write_json_atomic, write_lines_atomic
from agent.tasks import get_task, load_task_problems
from agent.tasks.grading import Grader
from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

ROLES = ("orm", "value", "prm")
CRITIC_SETS = ("untrained", "trained", "arithmetic", "checked", "verifier")
MODEL_CRITICS = {"untrained", "trained", "checked"}


async def sample_paths(
    args: argparse.Namespace, url: str, problems: list[Any]
) -> tuple[list[Trajectory], dict[str, int]]:
    """``--samples`` graded solutions per problem, in the order sampled, and each problem's completion
    tokens."""
    task, fmt = get_task(args.task), get_format("chatml")
    tokens: dict[str, int] = {}
    sampling = Sampling(max_tokens=256, temperature=0.8, top_p=0.95, stop=fmt.stop, seed=args.seed)
    out: list[Trajectory] = []
    async with Endpoint(LlamaCppBackend(url, max_n=8), max_concurrency=8) as endpoint, Grader() as grader:

        async def one(problem: Any) -> None:
            question = problem.question
            prompt = fmt.render(instruction=task.instruction, examples=task.few_shot(), question=question)
            result = await endpoint.complete(prompt, sampling, n=args.samples)
            tokens[problem.id] = result.usage.completion_tokens
            for c in result.completions:
                steps = tuple(s.strip() for s in c.text.split("\n") if s.strip())
                answer = task.extract_answer(c.text)
                correct = await grader.grade(answer, problem.gold)
                out.append(Trajectory(problem.id, problem.question, problem.gold, steps, answer, correct))

        async with anyio.create_task_group() as tg:
            for problem in problems:
                tg.start_soon(one, problem)
    out.sort(key=lambda t: t.problem_id)  # stable: each problem's samples stay in sampling order
    return out, tokens


def labelled(args: argparse.Namespace, problems: list[Any], paths: list[Trajectory]) -> tuple[Any, list[Any]]:
    """Critic rows of the paths, and the wrong solutions with a labelled first wrong step (arith)."""
    if args.task != "arith":
        return critic_rows([t for t in paths if t.steps]), []
    by_id = {p.id: p for p in problems}
    solutions = []
    for t in paths:
        if not t.steps:
            continue
        first = None if t.correct else label_policy_steps(by_id[t.problem_id], t.steps)
        if not t.correct and first is None:
            first = len(t.steps) - 1
        gold = t.gold or ""
        solutions.append(
            LabelledSolution(t.problem_id, t.question, gold, t.steps, first, t.correct, "policy")
        )
    rows = labelled_rows(solutions, optimistic=False)
    wrong = [s for s in solutions if s.first_wrong is not None]
    return rows, wrong


class _Memo:
    """A critic that remembers its scores, so that ``checked`` reuses ``trained``'s requests and the
    downstream re-rank reuses the table's."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.role = inner, inner.name, inner.role
        self.seen: dict[tuple[str, tuple[str, ...]], Any] = {}

    async def score(self, question: str, steps: Any) -> Any:
        key = (question, tuple(steps))
        if key not in self.seen:
            self.seen[key] = await self.inner.score(question, steps)
        return self.seen[key]


def critic_sets(args: argparse.Namespace, url: str | None, index: int) -> dict[str, dict[str, Any]]:
    """name -> role -> critic, for the ``--critics`` asked for. ``index`` is the trained adapter's
    llama.cpp index; ``url`` the server (None when no model critic is asked for)."""
    sets: dict[str, dict[str, Any]] = {name: {} for name in args.critics}
    for role in ROLES:
        if "arithmetic" in sets:
            sets["arithmetic"][role] = ArithmeticCritic(role)
    if "verifier" in sets:
        weights = load_weights(args.verifier) if args.verifier else shipped_verifier()
        sets["verifier"] = {role: FeatureVerifier(weights, role) for role in ROLES}
    if url is None:
        return sets
    fmt = get_format("chatml")
    temperatures = critic_temperatures(args.adapter) if args.adapter else shipped_critic().temperatures
    trained_ep = Endpoint(LlamaCppBackend(url, lora=((index, 1.0),)), max_concurrency=8)
    base_ep = Endpoint(LlamaCppBackend(url, lora=((index, 0.0),)), max_concurrency=8)
    for role in ROLES:
        trained = _Memo(GenerativeCritic(trained_ep, fmt, role=role, temperature=temperatures.get(role, 1.0)))
        if "untrained" in sets:
            sets["untrained"][role] = _Memo(GenerativeCritic(base_ep, fmt, role=role))
        if "trained" in sets:
            sets["trained"][role] = trained
        if "checked" in sets:
            sets["checked"][role] = CheckedCritic(trained)
    return sets


async def score_all(critic: Any, states: list[tuple[str, tuple[str, ...]]]) -> list[float]:
    scores = [0.0] * len(states)

    async def one(i: int) -> None:
        scores[i] = (await critic.score(*states[i])).p

    async with anyio.create_task_group() as tg:
        for i in range(len(states)):
            tg.start_soon(one, i)
    return scores


async def run(args: argparse.Namespace) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    problems = load_task_problems(args.task, data=args.data, split="test", limit=args.limit, seed=args.seed)
    paths_file, tokens_file = args.out / "paths.jsonl", args.out / "tokens.json"
    results: dict[str, Any] = {}
    need_server = not paths_file.is_file() or bool(MODEL_CRITICS & set(args.critics))
    async with AsyncExitStack() as stack:
        url = None
        if need_server:
            adapter = Path(args.adapter) if args.adapter else shipped_critic().adapter
            config = EmbeddedServerConfig(lora=(adapter,), log_file=args.out / "server.log")
            url = (await stack.enter_async_context(EmbeddedServer(config))).url
        if paths_file.is_file():
            records = map(json.loads, paths_file.read_text().splitlines())
            paths = [Trajectory.from_record(r) for r in records]
        else:
            assert url is not None
            paths, tokens = await sample_paths(args, url, problems)
            write_json_atomic(tokens_file, tokens)
            write_lines_atomic(paths_file, [json.dumps(_asdict(t)) for t in paths])
        rows, wrong = labelled(args, problems, paths)
        rng = random.Random(f"bench-critics\0{args.seed}")
        value_rows, prm_rows = rows.value, rows.prm
        if len(value_rows) > args.max_prefixes:
            value_rows = rng.sample(value_rows, args.max_prefixes)
        if len(prm_rows) > args.max_prefixes:
            prm_rows = rng.sample(prm_rows, args.max_prefixes)
        wrong = wrong if len(wrong) <= args.max_wrong else rng.sample(wrong, args.max_wrong)
        role_rows = {"orm": rows.orm, "value": value_rows, "prm": prm_rows if args.task == "arith" else []}
        results["paths"] = {
            "problems": len(problems),
            "paths": len(paths),
            "correct": sum(t.correct for t in paths),
            "covered": len({t.problem_id for t in paths if t.correct}),
        }
        sets = critic_sets(args, url if MODEL_CRITICS & set(args.critics) else None, 0)
        table: dict[str, Any] = {}
        for name, by_role in sets.items():
            for role in ROLES:
                data = role_rows[role]
                if not data:
                    continue
                scores = await score_all(by_role[role], [(r.question, r.steps) for r in data])
                report = calibration_report(scores, [r.label for r in data])
                table[f"{role} {name}"] = _asdict(report)
            if wrong and args.task == "arith" and "prm" in by_role:
                table[f"prm {name}"]["first_wrong_found"] = await first_wrong_found(by_role["prm"], wrong)
                table[f"prm {name}"]["first_wrong_n"] = len(wrong)
        results["table"] = table
        tokens = json.loads(tokens_file.read_text())
        results["downstream"] = await downstream(sets, paths, tokens, args.samples)
    points = results["downstream"]["points"] + extra_points(
        args.points, ids=set(results["downstream"]["ids"])
    )
    title = f"{args.task}: {results['paths']['problems']} held-out problems"
    plot_curve(points, args.out / "compute_curve.png", title)
    results["curve"] = points
    write_json_atomic(args.out / "critics.json", results)
    text = format_markdown(results, args)
    (args.out / "critics.md").write_text(text)
    print(text)
    return results


async def downstream(
    sets: dict[str, dict[str, Any]], paths: list[Trajectory], tokens: dict[str, int], samples: int
) -> dict[str, Any]:
    """Self-consistency and each critic's ORM re-rank over the first k samples of every problem, for
    k = 1, 2, 4, ... up to ``samples``: accuracy, its interval, coverage and completion tokens."""
    from collections import Counter

    from agent.tasks.answers import normalize_number

    by_problem: dict[str, list[Trajectory]] = {}
    for t in paths:
        by_problem.setdefault(t.problem_id, []).append(t)
    n = len(by_problem)
    orm_scores: dict[str, dict[str, list[float]]] = {}
    for name, by_role in sets.items():
        orm_scores[name] = {}
        for pid, group in by_problem.items():
            states = [(t.question, t.steps) for t in group]
            scores = await score_all(by_role["orm"], [s for s in states if s[1]])
            it = iter(scores)
            orm_scores[name][pid] = [next(it) if t.steps else -1.0 for t in group]
    per_sample = sum(tokens.get(pid, 0) for pid in by_problem) / max(1, n * samples)
    points: list[dict[str, Any]] = []
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= samples]
    for k in ks:
        right: dict[str, int] = {"self-consistency": 0} | {f"rerank {name}": 0 for name in sets}
        covered = 0
        for pid, group in by_problem.items():
            first = group[:k]
            covered += any(t.correct for t in first)
            counts = Counter(normalize_number(t.answer) for t in first if t.answer is not None)
            if counts:
                top = counts.most_common(1)[0][0]
                right["self-consistency"] += next(
                    t.correct for t in first if t.answer is not None and normalize_number(t.answer) == top
                )
            for name in sets:
                scores = orm_scores[name][pid][:k]
                answered = [i for i, t in enumerate(first) if t.answer is not None and t.steps]
                if answered:
                    right[f"rerank {name}"] += first[max(answered, key=lambda i: scores[i])].correct
        for method, r in right.items():
            lo, hi = wilson_interval(r, n)
            points.append(
                {
                    "method": method,
                    "k": k,
                    "correct": r,
                    "problems": n,
                    "accuracy": r / n,
                    "interval": [lo, hi],
                    "coverage": covered / n,
                    "completion_tokens": round(k * per_sample, 1),
                }
            )
    return {"problems": n, "samples": samples, "points": points, "ids": sorted(by_problem)}


def extra_points(dirs: list[Path], *, ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Points from ``agent.evaluate`` output directories (greedy, ηMCTS, ...), counted over the
    problems in ``ids`` (the curve's own) that each run solved, so that every point of the plot is
    on the same problems; the label gives how many."""
    points = []
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        records = [
            json.loads(line) for line in (d / "results.jsonl").read_text().splitlines() if line.strip()
        ]
        records = [r for r in records if ids is None or r["id"] in ids]
        n, right = len(records), sum(bool(r.get("correct")) for r in records)
        if not n:
            continue
        lo, hi = wilson_interval(right, n)
        solver = summary.get("settings", {}).get("solver") or {}
        sims = (solver.get("search") or {}).get("simulations") if solver.get("method") == "mcts" else None
        points.append(
            {
                "method": f"{d.name} (n={n})",
                "k": sims or 1,
                "correct": right,
                "problems": n,
                "accuracy": right / n,
                "interval": [lo, hi],
                "coverage": sum(bool(r.get("covered")) for r in records) / n,
                "completion_tokens": round(sum(r["tokens"]["completion_tokens"] for r in records) / n, 1),
            }
        )
    return points


def plot_curve(points: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy against completion tokens per problem, one line per method, 95% intervals."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    methods: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        methods.setdefault(point["method"], []).append(point)
    for method, group in methods.items():
        group.sort(key=lambda p: p["completion_tokens"])
        xs = [p["completion_tokens"] for p in group]
        ys = [p["accuracy"] for p in group]
        err = [
            [y - p["interval"][0] for y, p in zip(ys, group, strict=True)],
            [p["interval"][1] - y for y, p in zip(ys, group, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method)
        for x, y, p in zip(xs, ys, group, strict=True):
            ax.annotate(str(p["k"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("policy completion tokens per problem (log)")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=120)


async def first_wrong_found(prm: Any, wrong: list[LabelledSolution]) -> float:
    """Share of wrong solutions whose first step scored below 0.5 is the labelled first wrong step."""
    hits = 0

    async def one(s: LabelledSolution) -> None:
        nonlocal hits
        states = [(s.question, s.steps[: k + 1]) for k in range(len(s.steps))]
        scores = await score_all(prm, states)
        predicted = next((k for k, p in enumerate(scores) if p < 0.5), None)
        hits += predicted == s.first_wrong

    async with anyio.create_task_group() as tg:
        for s in wrong:
            tg.start_soon(one, s)
    return hits / len(wrong)


def _asdict(value: Any) -> Any:
    from dataclasses import asdict

    return asdict(value)


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    p = results["paths"]
    lines = [
        f"Critics on the policy's own solutions: {args.task} "
        f"({'test split' if args.task == 'arith' else args.data}), {p['problems']} problems x {args.samples} "
        f"samples = {p['paths']} paths, {p['correct']} right; "
        f"gold among the samples for {p['covered']} problems.",
        "",
        "| role | critic | n | positives | AUC | ECE | Brier | precision | recall | first wrong found |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results["table"].items():
        role, name = key.split(" ", 1)
        found = r.get("first_wrong_found")
        found_cell = f"{_f(found)} (n={r['first_wrong_n']})" if found is not None else ""
        lines.append(
            f"| {role} | {name} | {r['n']} | {r['positives']} | {_f(r['auc'])} | {_f(r['ece'])} | "
            f"{_f(r['brier'])} | {_f(r['precision'])} | {_f(r['recall'])} | {found_cell} |"
        )
    d = results["downstream"]
    lines += [
        "",
        f"Accuracy against policy completion tokens ({d['problems']} problems; SC@k and re-rank@k use the "
        f"first k of the {d['samples']} samples of each problem):",
        "",
        "| method | k / simulations | accuracy | 95% interval | coverage | completion tokens/problem |",
        "|---|---|---|---|---|---|",
    ]
    for p in results["curve"]:
        lo, hi = p["interval"]
        cov = "-" if p["coverage"] is None else f"{p['coverage']:.3f}"
        lines.append(
            f"| {p['method']} | {p['k']} | {p['correct']}/{p['problems']} = {p['accuracy']:.3f} | "
            f"{lo:.3f}-{hi:.3f} | {cov} | {p['completion_tokens']} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("arith", "gsm8k"), default="arith")
    parser.add_argument("--data", help="a JSONL file of the task (gsm8k)")
    parser.add_argument("--limit", type=int, default=200, help="problems (the first N of the test split)")
    parser.add_argument("--samples", type=int, default=4, help="solutions sampled per problem")
    parser.add_argument("--adapter", type=Path, help="trained critic GGUF (default: the shipped one)")
    parser.add_argument(
        "--critics", nargs="+", choices=CRITIC_SETS, default=list(CRITIC_SETS), help="critics to measure"
    )
    parser.add_argument("--verifier", type=Path, help="feature verifier weights (default: the shipped ones)")
    parser.add_argument("--max-prefixes", type=int, default=800, help="value (and PRM) rows scored at most")
    parser.add_argument("--max-wrong", type=int, default=300, help="wrong solutions for 'first wrong found'")
    parser.add_argument(
        "--points", type=Path, nargs="*", default=[], help="agent.evaluate output dirs to add to the plot"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/critics"))
    return parser


def main() -> int:
    args = build_parser().parse_args()
    anyio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
