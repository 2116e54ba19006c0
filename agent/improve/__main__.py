"""Run self-improvement cycles: ``python -m agent.improve``.

    python -m agent.improve --name loop --cycles 1
    python -m agent.improve --name loop --cycles 100 --every 6h      # on a schedule
    python -m agent.improve --name gsm --task gsm8k --data ../shared/data/gsm8k/train.jsonl \
        --heldout-data ../shared/data/gsm8k/test.jsonl --heldout 200
    # or from cron, one cycle per run (resumes where the last one stopped):
    # 0 */6 * * * cd /path/to/project && .venv/bin/python -m agent.improve --name loop --cycles 1 --next

Killing the process at any point and rerunning the same command resumes: finished steps are
skipped, searches and evaluations continue problem by problem. With no policy URL configured the
embedded llama.cpp server serves the bundled model, and each new adapter is swapped in by restarting
it on its port; with ``AGENT_POLICY__BACKEND=sglang`` (or a vLLM server, ``openai``) adapters are
loaded into the running server.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import anyio

from agent.cli import add_policy_args, add_search_args, policy_overrides, run_cli, search_config
from agent.errors import ConfigError
from agent.improve.curriculum import CurriculumConfig
from agent.improve.cycle import CycleConfig, check_data, run_cycle
from agent.improve.report import write_report
from agent.improve.select import FilterConfig
from agent.improve.serving import embedded_policy, remote_policy
from agent.improve.training import VERIFIER
from agent.settings import Settings, load_settings
from servers.models import BUNDLED, get_model, served_file

__all__ = ["main", "parse_every"]


def parse_every(text: str) -> float:
    """Seconds in an interval like ``6h``, ``30m``, ``90s`` or ``1d``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match:
        raise ConfigError(f"--every takes a number and a unit (s, m, h, d), e.g. 6h; got {text!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _check_counts(args: argparse.Namespace) -> None:
    """ConfigError naming the flag for a count that cannot be meant."""
    for flag, value, low in (
        ("--cycles", args.cycles, 1),
        ("--train-prompts", args.train_prompts, 1),
        ("--heldout", args.heldout, 1),
        ("--epochs", args.epochs, 1),
        ("--critic-steps", args.critic_steps, 1),
    ):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if not 0 <= args.synthetic_ratio <= 1:
        raise ConfigError(f"--synthetic-ratio must be between 0 and 1, got {args.synthetic_ratio}")
    if args.judge_apart and not args.refresh_critics:
        raise ConfigError("--judge-apart judges new critics against the current ones: add --refresh-critics")
    if args.judge_apart and "mcts" not in args.eval:
        raise ConfigError("--judge-apart compares critics by the searches they guide: add mcts to --eval")
    if args.advance is not None and args.curriculum == "none":
        raise ConfigError("--advance sets when a curriculum level is passed: add --curriculum steps")
    if args.total_tokens is not None and args.total_tokens < 1:
        raise ConfigError(f"--total-tokens must be at least 1, got {args.total_tokens}")


async def _main(args: argparse.Namespace) -> int:
    _check_counts(args)
    search = search_config(args)
    overrides = policy_overrides(args)
    settings = load_settings(**overrides)
    remote = bool(settings.policy.url)
    cfg = CycleConfig(
        name=args.name,
        task=args.task,
        data=args.data,
        heldout_data=args.heldout_data,
        prompt=settings.prompt,
        train_prompts=args.train_prompts,
        curriculum=CurriculumConfig(
            kind=args.curriculum, **({"advance": args.advance} if args.advance is not None else {})
        ),
        heldout=args.heldout,
        synthetic_ratio=args.synthetic_ratio,
        seed=args.seed,
        search=search,
        critics=args.critics,
        filter=FilterConfig(gamma=args.gamma, require_correct=not args.no_correctness, pick=args.pick),
        sft_epochs=args.epochs,
        sft_max_steps=args.max_steps,
        train_from=args.train_from,
        base=args.base or (settings.policy.model if remote else _embedded_base(settings)),
        refresh_critics=args.refresh_critics,
        critic_steps=args.critic_steps,
        search_tokens=args.total_tokens,
        more_terminals=args.more_terminals,
        judge_apart=args.judge_apart,
        eval_methods=tuple(args.eval),
        runs_dir=args.runs,
    )
    check_data(cfg)  # before a server starts: a missing or overlapping data set is a usage error
    serve = remote_policy(overrides) if remote else embedded_policy(overrides)
    every = parse_every(args.every) if args.every else None
    first = _next_cycle(cfg) if args.next else 1
    async with serve as (policy, swap):
        for k in range(first, first + args.cycles):
            started = anyio.current_time()
            manifest = await run_cycle(k, cfg, policy, swap)
            report = await anyio.to_thread.run_sync(write_report, cfg.root)
            verdict = "promoted" if manifest["promoted"] else "not promoted"
            print(f"cycle {k}: {verdict}: {manifest['why']} -> {report}")
            if manifest["promoted"] and manifest.get("policy_changed", True):
                print(
                    f'  use it: python -m agent.solve --policy-from {cfg.root} "QUESTION"; merge it into a '
                    f"model: python -m finetune.export --policy-from {cfg.root} --out models/{cfg.name}"
                )
            served = (manifest.get("critics") or {}).get("adapters") or {}
            verifier = served.get(VERIFIER) if manifest["promoted"] else None
            if verifier:
                print(f"  its refitted verifier: AGENT_VERIFIER={verifier} (with --critics verifier)")
            if every is not None and k < first + args.cycles - 1:
                await anyio.sleep(max(0.0, every - (anyio.current_time() - started)))
    return 0


def _embedded_base(settings: Settings) -> str | None:
    """The model the embedded server serves, to fine-tune (None: the bundled model)."""
    e = settings.embedded
    if e.model_path is None and get_model(e.model) is BUNDLED:
        return None
    return str(served_file(e.model_path, e.model))  # a catalog model is fetched when the server starts


def _next_cycle(cfg: CycleConfig) -> int:
    """The first cycle without a manifest (an unfinished one is resumed)."""
    k = 1
    while (cfg.root / f"cycle_{k}" / "manifest.json").exists():
        k += 1
    return k


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent.improve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="loop", help="run name: runs/<name>/ (default loop)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="parent of the run directory")
    parser.add_argument("--cycles", type=int, default=1, help="cycles to run (default 1)")
    parser.add_argument("--next", action="store_true", help="start at the first unfinished cycle (for cron)")
    parser.add_argument("--every", help="run a cycle every interval, e.g. 6h (default: back to back)")
    parser.add_argument(
        "--task",
        choices=("arith", "gsm8k", "math"),
        default="arith",
        help="arith (generated training and held-out splits; default), or gsm8k / math with --data and "
        "--heldout-data",
    )
    parser.add_argument(
        "--data",
        help="training problems for gsm8k/math: a JSONL file in the official format or hf:owner/name "
        "(each cycle searches its next --train-prompts of them and seeds imagination with them)",
    )
    parser.add_argument(
        "--heldout-data",
        help="evaluation problems for gsm8k/math (JSONL or hf:owner/name; the first --heldout are used); "
        "never searched, imagined or trained on",
    )
    parser.add_argument("--train-prompts", type=int, default=40, help="real training prompts per cycle")
    parser.add_argument(
        "--curriculum",
        choices=("none", "steps"),
        default="none",
        help="steps: draw each cycle's training prompts by difficulty (solution steps; MATH: level), "
        "starting at the easiest and moving on once a level's searches keep --advance of its prompts; "
        "about half of them at the easiest level not passed, the rest reviewing easier ones (default "
        "none: as they come)",
    )
    parser.add_argument(
        "--advance",
        type=float,
        help="with --curriculum steps: the share of a level's prompts kept that passes it (default 0.25)",
    )
    parser.add_argument(
        "--more-terminals",
        action="store_true",
        help="double a difficulty level's minimum terminals per tree (and token cap) each cycle while "
        "fewer than half of the previous cycle's trees of that level found the gold answer",
    )
    parser.add_argument("--heldout", type=int, default=40, help="held-out problems for evaluation")
    parser.add_argument("--synthetic-ratio", type=float, default=0.5, help="share of imagined prompts")
    parser.add_argument(
        "--critics",
        choices=("arithmetic", "verifier", "generative", "mixed", "none"),
        default="arithmetic",
        help="the searches' critics (verifier: the shipped feature verifier, no model requests; "
        "refitted each cycle with --refresh-critics)",
    )
    parser.add_argument(
        "--gamma",
        type=float,
        default=0.8,
        help="keep a trajectory when its ORM score is above (default 0.8). The verifier's scores are "
        "calibrated probabilities: with the bundled model its best right answers score 0.2-0.4, so "
        "use --gamma 0 with --pick correct, which lets the gold answer decide",
    )
    parser.add_argument("--no-correctness", action="store_true", help="keep without checking the gold answer")
    parser.add_argument(
        "--pick",
        choices=("critic", "correct"),
        default="critic",
        help="which terminal to keep per prompt: the best by critic score (the paper), or the best "
        "among those with the gold answer (default critic)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--max-steps", type=int, help="cap on fine-tuning optimizer steps")
    parser.add_argument(
        "--train-from",
        choices=("base", "promoted"),
        default="base",
        help="base: a new LoRA from the base model on every trajectory kept so far (default, the "
        "paper); promoted: continue the promoted policy adapter on this cycle's trajectories only",
    )
    parser.add_argument(
        "--base",
        help="model to fine-tune: GGUF, HF directory or hub id (default: the embedded server's model, "
        "AGENT_EMBEDDED__MODEL_PATH or __MODEL; AGENT_POLICY__MODEL with a remote server)",
    )
    parser.add_argument(
        "--refresh-critics",
        action="store_true",
        help="retrain the value, PRM and ORM each cycle on the search trees (a LoRA critic; with --critics "
        "verifier, the verifier's weights are refitted instead; default: fixed critics)",
    )
    parser.add_argument(
        "--critic-steps", type=int, default=40, help="optimizer steps per refreshed LoRA critic"
    )
    parser.add_argument(
        "--judge-apart",
        action="store_true",
        help="with --refresh-critics: also evaluate the new policy with the current critics and the new "
        "critics with the current policy, and promote the best of the three that is not worse (two more "
        "evaluations per cycle)",
    )
    parser.add_argument(
        "--total-tokens", type=int, help="one budget of policy completion tokens for each cycle's searches"
    )
    parser.add_argument("--eval", nargs="+", default=["greedy", "mcts"], choices=("greedy", "sc", "mcts"))
    parser.add_argument("--seed", type=int, default=0)
    add_search_args(parser)
    add_policy_args(parser, adapter=False)  # the cycles serve their own adapters
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args), level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
