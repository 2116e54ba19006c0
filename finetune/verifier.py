"""Fit the feature verifier (``agent.critics.verifier``) on the policy's own graded solutions.

    python -m finetune.verifier --out runs/verifier-fit                 # sample, label, fit, report
    python -m finetune.verifier --trajectories FILE --out DIR           # fit on graded solutions you have
    python -m finetune.verifier --out runs/verifier-fit --ship          # and ship it with the package

1. Solutions: ``--samples`` per problem from the base policy on ``--problems`` generated TRAIN problems
   (the embedded server, as ``finetune.critics`` samples), or ``--trajectories`` (JSONL of graded
   solutions: problem_id, question, gold, steps, answer, correct; any task).
2. Rows: a generated problem's solutions are labelled step by step against its reference (ORM = the
   final grade, PRM = up to the first wrong step, value = the Monte-Carlo success rate, 0 after a
   wrong step); other solutions get Monte-Carlo rows (``agent.improve.critic_data``).
3. Whole problems are held out (``--holdout``); a logistic model per role is fitted on the rest by
   maximum likelihood with soft targets (the value's MC rate is its target, not a threshold) and a
   small L2 penalty (torch's L-BFGS), then reported on the held-out problems next to the
   arithmetic re-check (AUC, ECE, Brier, precision/recall at 0.5) in ``report.md``. When the
   held-out problems would take every right (or every wrong) solution, all are fitted on and
   nothing is reported held out.
4. ``verifier.json`` (the weights) and ``manifest.json`` (data, command, seed, metrics) are written
   to ``--out``; ``--ship`` copies both into ``agent/critics/shipped/smollm2-135m/`` as
   ``verifier.json`` and ``verifier-manifest.json``.

Fitting takes seconds; sampling is the cost (about 20 minutes for 160 x 8 on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from agent.cli import report_errors
from agent.errors import ConfigError
from servers.process import exit_with_parent

ROLES = ("orm", "value", "prm")


def fit_logistic(
    rows: list[list[float]], targets: list[float], *, l2: float = 1e-3
) -> tuple[float, list[float]]:
    """(bias, weights) maximizing the mean log-likelihood of soft ``targets`` minus ``l2 * |w|^2``."""
    import torch

    if not rows:
        raise ConfigError("no rows to fit the verifier on")
    x = torch.tensor(rows, dtype=torch.float64)
    y = torch.tensor(targets, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(b.item()), [float(v) for v in w.detach()]


def role_matrix(rows: list[Any], role: str) -> tuple[list[list[float]], list[float]]:
    from agent.critics.verifier import FEATURES, features

    xs = []
    for row in rows:
        f = features(row.question, row.steps, last_step_only=role == "prm")
        xs.append([f[name] for name in FEATURES])
    return xs, [float(row.target) for row in rows]


def fit(train: Any, *, l2: float) -> Any:
    from agent.critics.verifier import FEATURES, VerifierWeights

    bias, weights = {}, {}
    for role in ROLES:
        xs, ys = role_matrix(getattr(train, role), role)
        b, w = fit_logistic(xs, ys, l2=l2)
        bias[role] = round(b, 6)
        weights[role] = {name: round(v, 6) for name, v in zip(FEATURES, w, strict=True)}
    return VerifierWeights(bias=bias, weights=weights)  # type: ignore[arg-type]


async def evaluate(weights: Any, heldout: Any) -> dict[str, Any]:
    """Calibration reports on the held-out rows: the fitted verifier and the arithmetic re-check."""
    from dataclasses import asdict

    from agent.critics import ArithmeticCritic
    from agent.critics.verifier import FeatureVerifier
    from agent.improve.calibration import calibration_report

    reports: dict[str, Any] = {}
    for role in ROLES:
        rows = getattr(heldout, role)
        if not rows:
            continue
        labels = [row.label for row in rows]
        for name, critic in (
            ("verifier", FeatureVerifier(weights, role)),
            ("arithmetic", ArithmeticCritic(role)),
        ):
            scores = [(await critic.score(row.question, row.steps)).p for row in rows]
            reports[f"{name} {role}"] = calibration_report(scores, labels)
    return {"reports": reports, "table": {k: asdict(v) for k, v in reports.items()}}


def format_report(weights: Any, reports: dict[str, Any], counts: dict[str, Any]) -> str:
    from agent.critics.verifier import FEATURES
    from agent.improve.calibration import format_table

    lines = [
        "# Feature verifier",
        "",
        f"Solutions: {counts['solutions']} ({counts['correct']} right) from {counts['problems']} problems; "
        f"held out: {counts['heldout_problems']} problems.",
        "",
    ]
    if reports:
        table = format_table(reports, reference=False).rstrip()
        lines += ["Held-out rows (problems never fitted on):", "", "```", table, "```", ""]
    else:
        lines += ["No held-out rows: holding problems out left no right or no wrong solution to fit on.", ""]
    lines += [
        "| feature | " + " | ".join(ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
        "| (bias) | " + " | ".join(f"{weights.bias[r]:+.2f}" for r in ROLES) + " |",
    ]
    for name in FEATURES:
        lines.append(f"| {name} | " + " | ".join(f"{weights.weights[r][name]:+.2f}" for r in ROLES) + " |")
    return "\n".join(lines) + "\n"


async def _sample(args: argparse.Namespace, out: Path) -> list[Any]:
    from finetune.critics import sample
    from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

    async with EmbeddedServer(EmbeddedServerConfig(log_file=out / "server.log")) as server:
        return await sample(args, server.url, out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.improve.critic_data import CriticRows, split_critic_rows
    from agent.runs import write_json_atomic
    from agent.tasks import load_task_problems
    from finetune.critics import _read_trajectories, policy_rows

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.trajectories is not None:
        trajectories = _read_trajectories(args.trajectories)
    elif (out / "trajectories.jsonl").is_file():
        trajectories = _read_trajectories(out)
    else:
        trajectories = anyio.run(_sample, args, out)
    ids = {t.problem_id for t in trajectories}
    # The generated problems' references label each step; other solutions get Monte-Carlo rows.
    generated = [i for i in ids if i.startswith(f"arith-train-s{args.seed}-")]
    problems = []
    if generated:
        last = max(int(i.rsplit("-", 1)[1]) for i in generated)
        problems = load_task_problems("arith", split="train", limit=last + 1, seed=args.seed)
    rows, labelled = policy_rows(trajectories, problems)
    train, heldout = split_critic_rows(rows, holdout=args.holdout, seed=args.seed)
    if not _both_kinds(train.orm) and _both_kinds(rows.orm):
        # the held-out problems hold every right (or every wrong) solution: fit on all, report none
        train, heldout = rows, CriticRows(orm=[], value=[], prm=[])
    if not _both_kinds(train.orm):
        raise ConfigError(
            "the verifier needs right and wrong solutions among the fitted problems: "
            f"{sum(t.correct for t in trajectories)} of {len(trajectories)} are right; sample more problems"
        )
    weights = fit(train, l2=args.l2)
    evaluation = anyio.run(evaluate, weights, heldout)
    counts = {
        "solutions": len(trajectories),
        "correct": sum(t.correct for t in trajectories),
        "problems": len(ids),
        "heldout_problems": len({r.problem_id for r in heldout.orm}),
        "exactly_labelled": labelled,
        **{f"train_{role}": len(getattr(train, role)) for role in ROLES},
        **{f"heldout_{role}": len(getattr(heldout, role)) for role in ROLES},
    }
    write_json_atomic(out / "verifier.json", weights.to_json())
    (out / "report.md").write_text(format_report(weights, evaluation["reports"], counts))
    manifest = {
        "what": "feature verifier (agent.critics.verifier): logistic weights per role",
        "command": "python -m finetune.verifier "
        + shlex.join(sys.argv[1:] if args.argv is None else args.argv),
        "seed": args.seed,
        "l2": args.l2,
        "holdout": args.holdout,
        "data": counts,
        "trajectories": _provenance(args.trajectories or out / "trajectories.jsonl"),
        "metrics": {
            k: {m: v[m] for m in ("n", "positives", "auc", "ece", "brier")}
            for k, v in evaluation["table"].items()
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json_atomic(out / "manifest.json", manifest)
    if args.ship:
        ship(out, args.ship_dir)
    print((out / "report.md").read_text())
    return manifest


def _both_kinds(rows: list[Any]) -> bool:
    """Right and wrong solutions among ``rows`` (a logistic model needs both)."""
    return any(r.label for r in rows) and not all(r.label for r in rows)


def _provenance(path: Path) -> dict[str, Any]:
    """Which solutions the weights were fitted on: the file and its SHA-256."""
    import hashlib

    path = path / "trajectories.jsonl" if path.is_dir() else path
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def ship(out: Path, dest: Path) -> None:
    """Copy the weights and their manifest into the package (atomic replace of each file)."""
    dest.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (out / "verifier.json", "verifier.json"),
        (out / "manifest.json", "verifier-manifest.json"),
    ):
        tmp = dest / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(dest / name)


def build_parser() -> argparse.ArgumentParser:
    from agent.critics.shipped import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m finetune.verifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/verifier-fit"))
    parser.add_argument("--trajectories", type=Path, help="graded solutions (JSONL); default: sample them")
    parser.add_argument("--problems", type=int, default=160, help="generated training problems to sample")
    parser.add_argument("--samples", type=int, default=8, help="solutions sampled per problem")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of problems held out")
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", action="store_true", help="copy the weights into the package")
    parser.add_argument("--ship-dir", type=Path, default=SHIPPED_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone (no orphan fit)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    exit_with_parent(args.parent_pid)

    def fit_and_report() -> int:
        if args.problems < 1 or args.samples < 1:
            raise ConfigError("--problems and --samples must be at least 1")
        if not 0.0 < args.holdout < 1.0:
            raise ConfigError(f"--holdout must be between 0 and 1, got {args.holdout}")
        run(args)
        return 0

    return report_errors(fit_and_report)


if __name__ == "__main__":
    sys.exit(main())
