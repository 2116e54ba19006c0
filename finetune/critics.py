"""Train the three critics (value, PRM, ORM) as LoRA adapters of the policy's base model, then calibrate them.

    python -m finetune.critics --out runs/critics --problems 80 --samples 8 --max-steps 60
    python -m finetune.critics --out runs/loop/cycle_1/critics --trajectories T.jsonl --no-calibrate

1. Sample: the base policy (embedded llama.cpp server) writes ``--samples`` solutions to each of
   ``--problems`` generated training problems; each is graded against the gold answer.
2. Rows: ORM rows (solution, correct), value rows (every step prefix, Monte-Carlo success rate of
   the samples through it), PRM rows (step, Math-Shepherd hard label), split by problem into train
   and held-out (``agent.improve.critic_data``).
3. Train: one LoRA per critic in the generative yes/no form, the loss on the label token of the
   same prompt ``GenerativeCritic`` sends (``finetune.lora``), exported as GGUF adapters.
4. Calibrate: the server restarts with the three adapters; each trained critic, and the untrained
   base model in the same role, scores the held-out rows; precision, recall, accuracy, AUC, ECE and
   Brier go to ``calibration.md`` and ``calibration.json``, the reliability diagram to
   ``reliability.png``.

With ``--trajectories`` the graded solutions come from a file (one ``Trajectory`` per line, e.g.
the terminal paths of a cycle's search trees) instead of step 1; ``--no-calibrate`` skips step 4
(it starts a server of its own). Every step writes its outputs, then a ``done.json``;
``manifest.json`` is written last, so a rerun resumes at the first unfinished step. Simplified:
the value critic learns the hard label (MC rate >= 0.5) rather than regressing the rate, because
it is served in the same yes/no form.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from agent.critics.base import CriticRole
from agent.errors import AgentError

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
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    try:
        return [Trajectory(**{**r, "steps": tuple(r["steps"])}) for r in rows]
    except (KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: each line needs problem_id, question, gold, steps, answer, correct ({exc})"
        ) from None


# --- 2 and 3. rows, training, export ----------------------------------------------------------------


def train_critics(args: argparse.Namespace, trajectories: list[Any], out: Path) -> dict[str, Any]:
    from agent.critics.generative import GenerativeCritic
    from agent.improve.critic_data import critic_rows, split_critic_rows, to_examples, write_jsonl
    from agent.prompts import get_format
    from finetune.base import load_base
    from finetune.gguf_lora import export_lora_gguf
    from finetune.lora import Example, LoraTrainConfig, train_lora
    from servers.models import ensure_bundled_model

    rows = critic_rows(trajectories)
    train, heldout = split_critic_rows(rows, holdout=args.holdout, seed=args.seed)
    (out / "heldout").mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        write_jsonl(getattr(heldout, role), out / "heldout" / f"{role}.jsonl")
    base = args.base or ensure_bundled_model()
    model, tokenizer = load_base(base)
    fmt = get_format("chatml")
    results: dict[str, Any] = {}
    for role in ROLES:
        target = out / role
        if _done(target):
            results[role] = _done(target)
            continue
        prompt_fn = GenerativeCritic(None, fmt, role=role).prompt  # type: ignore[arg-type]  # prompts only
        pairs = to_examples(
            getattr(train, role), role=role, prompt_fn=prompt_fn, balance=True, seed=args.seed
        )
        examples = [Example(prompt=p, completion=c) for p, c in pairs]
        config = LoraTrainConfig(lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, seed=args.seed)
        result = train_lora(model, tokenizer, examples, config=config, out_dir=target / "adapter")
        served = "adapter"  # a PEFT directory, for SGLang / vLLM
        if str(base).endswith(".gguf"):
            export_lora_gguf(target / "adapter", target / "adapter.gguf", base_gguf=Path(base))
            served = "adapter.gguf"  # for llama.cpp
        results[role] = {
            "served": served,
            "examples": len(examples),
            "train_rows": len(getattr(train, role)),
            "heldout_rows": len(getattr(heldout, role)),
            "steps": result.steps,
            "train_loss": result.train_loss,
            "seconds": round(result.seconds, 1),
        }
        _mark(target, results[role])
    return results


# --- 4. calibration ---------------------------------------------------------------------------------


async def calibrate(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from agent.clients import Endpoint, LlamaCppBackend
    from agent.critics.generative import GenerativeCritic
    from agent.improve.calibration import calibration_report, format_table, reliability_plot
    from agent.improve.critic_data import read_jsonl
    from agent.prompts import get_format
    from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

    adapters = tuple(out / role / "adapter.gguf" for role in ROLES)
    config = EmbeddedServerConfig(model_path=_gguf(args), lora=adapters, log_file=out / "server.log")
    reports = {}
    async with EmbeddedServer(config) as server:
        for index, role in enumerate(ROLES):
            rows = read_jsonl(out / "heldout" / f"{role}.jsonl")
            labels = [row.label for row in rows]
            for name, scale in ((f"trained {role}", 1.0), (f"untrained {role}", 0.0)):
                backend = LlamaCppBackend(server.url, lora=((index, scale),))
                async with Endpoint(backend, max_concurrency=8) as endpoint:
                    critic = GenerativeCritic(endpoint, get_format("chatml"), role=role)
                    scores = await score_rows(critic, rows)
                reports[name] = calibration_report(scores, labels)
    table = format_table(reports)

    def write() -> None:
        (out / "calibration.md").write_text(f"```\n{table}\n```\n")
        (out / "calibration.json").write_text(
            json.dumps({k: _asdict(v) for k, v in reports.items()}, indent=2)
        )
        reliability_plot(reports, out / "reliability.png")

    await anyio.to_thread.run_sync(write)
    return {"table": table}


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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.runs import write_json_atomic
    from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

    out: Path = args.out
    if args.calibrate:
        _gguf(args)  # fail before training, not after
    manifest_path = anyio.Path(out / "manifest.json")
    if await manifest_path.exists():
        return json.loads(await manifest_path.read_text())
    if await anyio.to_thread.run_sync(_done, out / "samples"):
        trajectories = await anyio.to_thread.run_sync(_read_trajectories, out / "samples")
    elif args.trajectories is not None:
        trajectories = await anyio.to_thread.run_sync(_read_trajectories, args.trajectories)
        problems = len({t.problem_id for t in trajectories})
        await anyio.to_thread.run_sync(_write_trajectories, out / "samples", trajectories, problems)
    else:
        config = EmbeddedServerConfig(model_path=_gguf(args), log_file=out / "server.log")
        async with EmbeddedServer(config) as server:
            trajectories = await sample(args, server.url, out / "samples")
    training = await anyio.to_thread.run_sync(train_critics, args, trajectories, out)
    calibration = await calibrate(args, out) if args.calibrate else {"table": None}
    samples = await anyio.to_thread.run_sync(_done, out / "samples")
    manifest = json.loads(
        json.dumps({"samples": samples, "training": training, **calibration, "args": vars(args)}, default=str)
    )
    await anyio.to_thread.run_sync(write_json_atomic, out / "manifest.json", manifest)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune.critics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/critics"))
    parser.add_argument("--base", help="base model: GGUF path, HF directory or hub id (default: bundled)")
    parser.add_argument("--problems", type=int, default=80, help="generated training problems")
    parser.add_argument("--samples", type=int, default=8, help="solutions sampled per problem (J)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--holdout", type=float, default=0.25, help="share of problems held out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=60, help="optimizer steps per critic")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trajectories", type=Path, help="graded trajectories (JSONL) to train on instead of sampling"
    )
    parser.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false", help="skip calibration (no server)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = anyio.run(run, args)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(manifest.get("table") or f"critics trained: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
