"""Train the critics (value, PRM, ORM) as one LoRA adapter of the policy's base model, calibrate them.

    python -m finetune.critics --out runs/critics                      # sample, mix, train, calibrate
    python -m finetune.critics --out runs/critics-shipped --ship       # ... and ship it with the package
    python -m finetune.critics --out runs/loop/cycle_1/critics --trajectories T.jsonl --no-calibrate

1. Sample: the base policy (embedded llama.cpp server) writes ``--samples`` solutions to each of
   ``--problems`` generated training problems; each is graded against the gold answer.
2. Rows: the policy's solutions get exact step labels against the generator's reference
   (``agent.improve.synth.label_policy_steps``; solutions of problems without a reference, such as
   a cycle's search paths, get Monte-Carlo labels, ``critic_rows``). Synthetic solutions of
   ``--synthetic-problems`` training problems (references and controlled corruptions with a known
   first wrong step, ``agent.improve.synth``) are mixed in at ``--synthetic-share`` of each role's rows
   (default 0.4: the policy's own mistakes stay the larger part), then rows are split by problem
   into train and held-out (``agent.improve.critic_data``).
3. Train: ONE LoRA adapter answers all three questions (the role is in the prompt): ORM on final
   correctness and PRM on first-error labels (classes balanced), value on its soft target (the
   Monte-Carlo success rate, ``finetune.lora``'s soft two-label loss), ``--examples`` in all, with
   TRL's ``SFTTrainer``; LoRA on the top ``--layers`` layers. Exported as a GGUF adapter.
4. Calibrate: the server serves the adapter; on the held-out rows (half to fit, half to report) each
   role's temperature is fitted (``agent.improve.calibration.fit_temperature``) and stored with the
   adapter (``critic/calibration.json``); ``calibration.md`` shows the untrained model in the same
   role, the trained critic before and after calibration (precision, recall, AUC, ECE, Brier), and
   ``reliability.png`` the diagrams.
5. ``--ship`` copies the adapter, its calibration and the manifest into the package
   (``agent/critics/shipped/``), where ``--critics trained`` finds them with no settings.

With ``--trajectories`` the graded solutions come from a file (one ``Trajectory`` per line, e.g.
the terminal paths of a cycle's search trees) instead of step 1; ``--no-calibrate`` skips step 4
(it starts a server of its own). Every step writes its outputs, then a ``done.json``;
``manifest.json`` is written last, so a rerun resumes at the first unfinished step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from agent.cli import report_errors
from agent.critics.base import CriticRole
from servers.process import exit_with_parent

__all__ = ["main"]

ROLES: tuple[CriticRole, ...] = ("orm", "value", "prm")


def _done(path: Path) -> Any:
    marker = path / "done.json"
    return json.loads(marker.read_text()) if marker.exists() else None


def _mark(path: Path, info: Any) -> None:
    from agent.runs import write_json_atomic

    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / "done.json", info)


# --- 1. sample and grade ---------------------------------------------------------------------------


async def sample(args: argparse.Namespace, url: str, out: Path) -> list[Any]:
    """``--samples`` graded solutions per training problem from the base policy."""
    from agent.clients import Endpoint, LlamaCppBackend, Sampling
    from agent.improve.critic_data import Trajectory
    from agent.prompts import get_format
    from agent.tasks import get_task, load_task_problems
    from agent.tasks.grading import Grader

    task, fmt = get_task("arith"), get_format("chatml")
    problems = load_task_problems("arith", split="train", limit=args.problems, seed=args.seed)
    sampling = Sampling(max_tokens=256, temperature=args.temperature, top_p=0.95, stop=fmt.stop)
    trajectories: list[Trajectory] = []
    limiter = anyio.CapacityLimiter(4)
    async with Endpoint(LlamaCppBackend(url, max_n=8), max_concurrency=8) as endpoint, Grader() as grader:

        async def one(problem: Any) -> None:
            prompt = fmt.render(
                instruction=task.instruction, examples=task.few_shot(), question=problem.question
            )
            async with limiter:
                result = await endpoint.complete(prompt, sampling, n=args.samples)
            for completion in result.completions:
                steps = tuple(s.strip() for s in completion.text.split("\n") if s.strip())
                answer = task.extract_answer(completion.text)
                correct = await grader.grade(answer, problem.gold)
                trajectories.append(
                    Trajectory(problem.id, problem.question, problem.gold, steps, answer, correct)
                )

        async with anyio.create_task_group() as tg:
            for problem in problems:
                tg.start_soon(one, problem)
    trajectories.sort(key=lambda t: (t.problem_id, t.steps))
    await anyio.to_thread.run_sync(_write_trajectories, out, trajectories, len(problems))
    return trajectories


def _write_trajectories(out: Path, trajectories: list[Any], problems: int) -> None:
    from agent.runs import write_lines_atomic

    write_lines_atomic(out / "trajectories.jsonl", [json.dumps(_asdict(t)) for t in trajectories])
    correct = sum(t.correct for t in trajectories)
    _mark(out, {"problems": problems, "samples": len(trajectories), "correct": correct})


def _asdict(value: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(value)


def _read_trajectories(path: Path) -> list[Any]:
    """Graded trajectories from a JSONL file, or from ``trajectories.jsonl`` in a directory."""
    from agent.errors import DataError
    from agent.improve.critic_data import Trajectory

    path = path / "trajectories.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"no trajectories at {path}: pass a JSONL file of graded trajectories")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [Trajectory.from_record(r) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise DataError(
            f"{path}: each line needs problem_id, question, gold, steps, answer, correct ({exc})"
        ) from None


# --- 2. rows ---------------------------------------------------------------------------------------


def build_rows(args: argparse.Namespace, trajectories: list[Any], out: Path) -> tuple[Any, Any]:
    """(train, heldout) ``CriticRows``: the policy's labelled rows mixed with synthetic ones; written
    to ``out/rows`` with the counts in its ``done.json``."""
    from agent.improve.critic_data import (
        CriticRows,
        labelled_rows,
        mix_rows,
        read_jsonl,
        split_critic_rows,
        write_jsonl,
    )
    from agent.improve.synth import synthetic_solutions
    from agent.tasks import load_task_problems

    rows_dir = out / "rows"
    if _done(rows_dir):
        parts = []
        for side in ("train", "heldout"):
            loaded = {role: read_jsonl(rows_dir / side / f"{role}.jsonl") for role in ROLES}
            parts.append(CriticRows(**loaded))
        return parts[0], parts[1]
    n_ref = max(args.problems, args.synthetic_problems)
    problems = load_task_problems("arith", split="train", limit=n_ref, seed=args.seed) if n_ref else []
    policy, labelled = policy_rows(trajectories, problems)
    synthetic_problems = problems[: args.synthetic_problems]
    synthetic = labelled_rows(synthetic_solutions(synthetic_problems, seed=args.seed), optimistic=True)
    mixed = mix_rows(policy, synthetic, synthetic_share=args.synthetic_share, seed=args.seed)
    train, heldout = split_critic_rows(mixed, holdout=args.holdout, seed=args.seed)
    counts: dict[str, Any] = {"policy_solutions": len(trajectories), "exactly_labelled": labelled}
    for side, rows in (("train", train), ("heldout", heldout)):
        (rows_dir / side).mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            part = getattr(rows, role)
            write_jsonl(part, rows_dir / side / f"{role}.jsonl")
            counts[f"{side}_{role}"] = len(part)
    for role in ROLES:
        counts[f"policy_{role}"] = len(getattr(policy, role))
        counts[f"synthetic_{role}_available"] = len(getattr(synthetic, role))
    _mark(rows_dir, counts)
    return train, heldout


def policy_rows(trajectories: list[Any], problems: list[Any]) -> tuple[Any, int]:
    """``CriticRows`` of the policy's graded solutions, and how many were labelled step by step.

    Solutions of a generated problem in ``problems`` get exact labels (the first wrong step, found
    against the reference); the rest Monte-Carlo rows (``critic_rows``).
    """
    from agent.improve.critic_data import CriticRows, critic_rows, labelled_rows
    from agent.improve.synth import LabelledSolution, label_policy_steps

    by_id = {p.id: p for p in problems}
    labelled, unlabelled = [], []
    for t in trajectories:
        problem = by_id.get(t.problem_id)
        if problem is None or not t.steps:
            unlabelled.append(t)
            continue
        first_wrong = None if t.correct else label_policy_steps(problem, t.steps)
        if not t.correct and first_wrong is None:
            first_wrong = len(t.steps) - 1
        labelled.append(
            LabelledSolution(
                t.problem_id, t.question, problem.gold or "", t.steps, first_wrong, t.correct, "policy"
            )
        )
    exact = labelled_rows(labelled, optimistic=False)
    mc = critic_rows(unlabelled)
    rows = CriticRows(orm=exact.orm + mc.orm, value=exact.value + mc.value, prm=exact.prm + mc.prm)
    return rows, len(labelled)


# --- 3. training, export ------------------------------------------------------------------------------

ROLE_SHARES = {"orm": 0.4, "prm": 0.3, "value": 0.3}
"""How ``--examples`` are divided between the roles' questions."""


def critic_examples(train: Any, *, total: int, seed: int) -> list[Any]:
    """Training examples for the one adapter: per role, its share of ``total`` drawn (seeded) from
    its rows, ORM and PRM balanced by label, value with its soft target; shuffled together."""
    import random

    from agent.critics.generative import GenerativeCritic
    from agent.improve.critic_data import balanced_rows
    from agent.prompts import get_format
    from finetune.lora import Example

    fmt = get_format("chatml")
    rng = random.Random(f"critic-examples\0{seed}")
    examples = []
    for role in ROLES:
        rows = list(getattr(train, role))
        if role != "value" and rows and any(r.label for r in rows) and not all(r.label for r in rows):
            rows = balanced_rows(rows, seed=seed)
        want = min(len(rows), round(ROLE_SHARES[role] * total))
        prompt = GenerativeCritic(None, fmt, role=role).prompt  # type: ignore[arg-type]  # prompts only
        examples += [Example(prompt(r.question, r.steps), "Yes", r.target) for r in rng.sample(rows, want)]
    rng.shuffle(examples)
    return examples


def train_critics(args: argparse.Namespace, train: Any, out: Path) -> dict[str, Any]:
    """Train the one critic adapter (``out/critic``) and export it; per role, where it is served."""
    from agent.errors import DataError
    from finetune.base import load_base
    from finetune.gguf_lora import export_lora_gguf
    from finetune.lora import LoraTrainConfig, train_lora
    from servers.models import ensure_bundled_model

    target = out / "critic"
    info = _done(target)
    if not info:
        examples = critic_examples(train, total=args.examples, seed=args.seed)
        if not examples:
            raise DataError("no critic training rows: sample more problems or add synthetic problems")
        base = args.base or ensure_bundled_model()
        model, tokenizer = load_base(base)
        config = LoraTrainConfig(
            r=args.rank,
            alpha=2.0 * args.rank,
            lr=args.lr,
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            layers=args.layers or None,
            seed=args.seed,
        )
        result = train_lora(model, tokenizer, examples, config=config, out_dir=target / "adapter")
        served = "critic/adapter"  # a PEFT directory, for SGLang / vLLM
        if str(base).endswith(".gguf"):
            export_lora_gguf(target / "adapter", target / "adapter.gguf", base_gguf=Path(base))
            served = "critic/adapter.gguf"  # for llama.cpp
        roles = {role: sum(e.prompt.endswith(_question_tail(role)) for e in examples) for role in ROLES}
        info = {
            "served": served,
            "examples": len(examples),
            "examples_by_role": roles,
            "train_rows": {role: len(getattr(train, role)) for role in ROLES},
            "steps": result.steps,
            "train_loss": result.train_loss,
            "seconds": round(result.seconds, 1),
            "config": {k: v for k, v in vars(config).items() if not k.startswith("_")},
        }
        _mark(target, info)
    return {role: {"served": info["served"], "adapter": "critic"} for role in ROLES} | {"critic": info}


def _question_tail(role: CriticRole) -> str:
    from agent.critics.generative import QUESTIONS

    return QUESTIONS[role] + " Answer with Yes or No.<|im_end|>\n<|im_start|>assistant\n"


# --- 4. calibration ---------------------------------------------------------------------------------


async def calibrate(args: argparse.Namespace, heldout: Any, out: Path) -> dict[str, Any]:
    """Score held-out rows with the trained adapter and the untrained model; fit a temperature per
    role on one half of the held-out problems, report both halves' metrics on the other."""
    from agent.clients import Endpoint, LlamaCppBackend
    from agent.critics.generative import GenerativeCritic
    from agent.improve.calibration import (
        apply_temperature,
        calibration_report,
        fit_temperature,
        format_table,
        reliability_plot,
    )
    from agent.improve.critic_data import heldout_problems
    from agent.prompts import get_format
    from agent.runs import write_json_atomic
    from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

    adapter = out / "critic" / "adapter.gguf"
    config = EmbeddedServerConfig(model_path=_gguf(args), lora=(adapter,), log_file=out / "server.log")
    reports, temperatures, scored = {}, {}, {}
    async with EmbeddedServer(config) as server:
        for role in ROLES:
            rows = _capped(getattr(heldout, role), args.calibration_rows, seed=args.seed)
            if not rows:
                continue
            fit_ids = heldout_problems({r.problem_id for r in rows}, holdout=0.5, seed=f"fit-{args.seed}")
            fit = [i for i, r in enumerate(rows) if r.problem_id in fit_ids]
            report = [i for i, r in enumerate(rows) if r.problem_id not in fit_ids]
            scores = {}
            for name, scale in (("trained", 1.0), ("untrained", 0.0)):
                backend = LlamaCppBackend(server.url, lora=((0, scale),))
                async with Endpoint(backend, max_concurrency=8) as endpoint:
                    critic = GenerativeCritic(endpoint, get_format("chatml"), role=role)
                    scores[name] = await score_rows(critic, rows)
            t = fit_temperature([scores["trained"][i] for i in fit], [rows[i].target for i in fit])
            temperatures[role] = t
            labels = [rows[i].label for i in report]
            calibrated = [apply_temperature(scores["trained"][i], t) for i in report]
            for name in ("untrained", "trained"):
                reports[f"{name} {role}"] = calibration_report([scores[name][i] for i in report], labels)
            reports[f"trained {role}, T={t:.2f}"] = calibration_report(calibrated, labels)
            scored[role] = {"n": len(rows), "fit": len(fit), "report": len(report), "temperature": t}
    table = format_table(reports)

    def write() -> None:
        stored = {"temperature": temperatures, "fitted_on": scored}
        write_json_atomic(out / "critic" / "calibration.json", stored)
        (out / "calibration.md").write_text(f"```\n{table}\n```\n")
        write_json_atomic(out / "calibration.json", {k: _asdict(v) for k, v in reports.items()})
        reliability_plot(reports, out / "reliability.png")

    await anyio.to_thread.run_sync(write)
    return {"table": table, "temperature": temperatures}


def _capped(rows: list[Any], cap: int, *, seed: int) -> list[Any]:
    """At most ``cap`` rows, a seeded sample, in their original order."""
    import random

    if len(rows) <= cap:
        return list(rows)
    keep = sorted(random.Random(f"cap\0{seed}").sample(range(len(rows)), cap))
    return [rows[i] for i in keep]


async def score_rows(critic: Any, rows: list[Any]) -> list[float]:
    """The critic's probability for each held-out row, scored concurrently."""
    scores = [0.0] * len(rows)

    async def one(i: int, row: Any) -> None:
        scores[i] = (await critic.score(row.question, row.steps)).p

    async with anyio.create_task_group() as tg:
        for i, row in enumerate(rows):
            tg.start_soon(one, i, row)
    return scores


def _gguf(args: argparse.Namespace) -> Path | None:
    """The GGUF the embedded server serves for sampling and calibration (None: the bundled model)."""
    from agent.errors import ConfigError

    if args.base is None:
        return None
    if not str(args.base).endswith(".gguf"):
        raise ConfigError(
            f"sampling and calibration serve the base model on the embedded llama.cpp server, which "
            f"needs a GGUF; with --base {args.base} pass --trajectories and --no-calibrate"
        )
    return Path(args.base)


def ship(out: Path, manifest: dict[str, Any], dest: Path) -> Path:
    """Copy the adapter, its calibration and the manifest into ``dest`` (replaced as a whole)."""
    import shutil
    import tempfile

    from agent.errors import ConfigError
    from agent.runs import write_json_atomic

    adapter, calibration = out / "critic" / "adapter.gguf", out / "critic" / "calibration.json"
    if not adapter.is_file() or not calibration.is_file():
        raise ConfigError("--ship needs a GGUF adapter and its calibration: the bundled base, calibrated")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    shutil.copyfile(adapter, tmp / "adapter.gguf")
    shutil.copyfile(calibration, tmp / "calibration.json")
    write_json_atomic(tmp / "manifest.json", manifest)
    tmp.chmod(0o755)
    old = dest.with_name(f".{dest.name}.old") if dest.exists() else None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.runs import write_json_atomic
    from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

    out: Path = args.out
    if args.calibrate or args.ship:
        _gguf(args)  # fail before training, not after
    if args.ship and not args.calibrate:
        from agent.errors import ConfigError

        raise ConfigError("--ship needs calibration (the shipped critic carries its temperatures)")
    manifest_path = anyio.Path(out / "manifest.json")
    if await manifest_path.exists():
        manifest = json.loads(await manifest_path.read_text())
    else:
        if await anyio.to_thread.run_sync(_done, out / "samples"):
            trajectories = await anyio.to_thread.run_sync(_read_trajectories, out / "samples")
        elif args.trajectories is not None:
            trajectories = await anyio.to_thread.run_sync(_read_trajectories, args.trajectories)
            problems = len({t.problem_id for t in trajectories})
            await anyio.to_thread.run_sync(_write_trajectories, out / "samples", trajectories, problems)
        elif args.problems > 0:
            config = EmbeddedServerConfig(model_path=_gguf(args), log_file=out / "server.log")
            async with EmbeddedServer(config) as server:
                trajectories = await sample(args, server.url, out / "samples")
        else:
            trajectories = []
        train, heldout = await anyio.to_thread.run_sync(build_rows, args, trajectories, out)
        training = await anyio.to_thread.run_sync(train_critics, args, train, out)
        calibration = await calibrate(args, heldout, out) if args.calibrate else {"table": None}
        samples = await anyio.to_thread.run_sync(_done, out / "samples")
        rows = await anyio.to_thread.run_sync(_done, out / "rows")
        command = "python -m finetune.critics " + " ".join(sys.argv[1:]) if sys.argv[1:] else None
        record = {
            "samples": samples,
            "rows": rows,
            "training": training,
            **calibration,
            "args": vars(args),
            "command": command,
        }
        manifest = json.loads(json.dumps(record, default=str))
        await anyio.to_thread.run_sync(write_json_atomic, out / "manifest.json", manifest)
    if args.ship:
        from agent.critics.shipped import SHIPPED_DIR

        await anyio.to_thread.run_sync(ship, out, manifest, SHIPPED_DIR)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.critics",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/critics"))
    parser.add_argument("--base", help="base model: GGUF path, HF directory or hub id (default: bundled)")
    parser.add_argument("--problems", type=int, default=160, help="generated training problems to sample")
    parser.add_argument("--samples", type=int, default=8, help="solutions sampled per problem (J)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument(
        "--synthetic-problems", type=int, default=3000, help="problems with references and corruptions"
    )
    parser.add_argument(
        "--synthetic-share", type=float, default=0.4, help="share of synthetic rows per role, in [0, 1)"
    )
    parser.add_argument("--holdout", type=float, default=0.2, help="share of problems held out")
    parser.add_argument("--examples", type=int, default=2000, help="training examples, all roles together")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: one pass over the examples)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--layers", type=int, default=8, help="LoRA on the top N layers (0: all)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--calibration-rows", type=int, default=400, help="held-out rows scored per role")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone (no orphan training)")
    parser.add_argument(
        "--trajectories", type=Path, help="graded trajectories (JSONL) to train on instead of sampling"
    )
    parser.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false", help="skip calibration (no server)"
    )
    parser.add_argument(
        "--ship", action="store_true", help="copy the calibrated adapter into agent/critics/shipped"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_with_parent(args.parent_pid)

    def train() -> int:
        manifest = anyio.run(run, args)
        print(manifest.get("table") or f"critics trained: {args.out}")
        return 0

    return report_errors(train)


if __name__ == "__main__":
    sys.exit(main())
