"""Supervised fine-tuning of the policy on kept search trajectories, as a job in its own process.

    python -m finetune.sft --data runs/loop/cycle_1/data/sft.jsonl --out runs/loop/cycle_1/adapter

Reads ``{"prompt": ..., "completion": ...}`` lines (the prompt exactly as the policy sees it, the
completion the kept solution ending with the end-of-turn token), trains a LoRA from the base model
with the loss on the completion only (each round retrains from the base on the accumulated data;
``--init-adapter`` continues an earlier adapter instead), stops early on a held-out split, and writes:

- ``adapter/``       the PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``),
                     what SGLang and vLLM load;
- ``adapter.gguf``   the same adapter for llama.cpp, when the base is a GGUF;
- ``manifest.json``  written last: data hash, base, settings, losses, files. A directory with a
                     manifest is finished; rerunning on it does nothing unless ``--force``.

Simplified: one process trains one adapter; on a GPU the Unsloth backend is used when installed
(``--backend auto``), on a CPU PEFT + PyTorch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from agent.cli import report_errors
from agent.errors import DataError
from servers.process import exit_with_parent

__all__ = ["main", "read_examples", "run"]


def read_examples(path: Path) -> list[Any]:
    """``Example``s from a JSONL file of ``{"prompt", "completion"}`` objects; DataError naming the line."""
    from finetune.lora import Example

    if not path.is_file():
        raise DataError(f"no training data at {path}")
    examples = []
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); give a JSONL file") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append(Example(prompt=str(row["prompt"]), completion=str(row["completion"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            message = f"{path} line {number}: expected a JSON object with prompt and completion ({exc})"
            raise DataError(message) from exc
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


def run(args: argparse.Namespace) -> dict[str, Any]:
    from finetune.backends import train
    from finetune.gguf_lora import export_lora_gguf
    from finetune.lora import LoraTrainConfig
    from servers.models import ensure_bundled_model

    out: Path = args.out
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not args.force:
        return json.loads(manifest_path.read_text())

    # --- data: a seeded held-out split for early stopping ---
    examples = read_examples(args.data)
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    n_eval = int(len(examples) * args.holdout) if len(examples) >= 10 else 0
    eval_examples = [examples[i] for i in order[:n_eval]]
    train_examples = [examples[i] for i in order[n_eval:]]

    # --- train from the base model ---
    base = args.base or ensure_bundled_model()
    config = LoraTrainConfig(
        r=args.r,
        alpha=args.alpha,
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        patience=2 if eval_examples else None,
    )
    started = time.perf_counter()
    result = train(
        train_examples,
        base=base,
        config=config,
        out_dir=out / "adapter",
        eval_examples=eval_examples or None,
        backend=args.backend,
        init_adapter=args.init_adapter,
    )

    # --- export for llama.cpp ---
    files = {"adapter": "adapter"}
    if str(base).endswith(".gguf"):
        export_lora_gguf(out / "adapter", out / "adapter.gguf", base_gguf=Path(base))
        files["gguf"] = "adapter.gguf"

    # --- the manifest, last ---
    manifest = {
        "data": str(args.data),
        "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
        "examples": {"train": len(train_examples), "eval": len(eval_examples)},
        "base": str(base),
        "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        "config": {k: v for k, v in vars(config).items() if not k.startswith("_")},
        "result": {
            "steps": result.steps,
            "train_loss": result.train_loss,
            "eval_loss": result.eval_loss,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "files": files,
    }
    from agent.runs import write_json_atomic

    write_json_atomic(manifest_path, manifest)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune.sft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="JSONL of {prompt, completion}")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--base", help="base model: GGUF path, HF directory or hub id (default: bundled)")
    parser.add_argument("--backend", choices=("auto", "peft", "unsloth"), default="auto")
    parser.add_argument(
        "--init-adapter",
        type=Path,
        help="continue training this PEFT adapter directory (of the same base) instead of a new LoRA",
    )
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone (no orphan training)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--holdout", type=float, default=0.1, help="share held out for early stopping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="train again even if a manifest exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_with_parent(args.parent_pid)

    def train() -> int:
        print(json.dumps(run(args)["result"]))
        return 0

    return report_errors(train)


if __name__ == "__main__":
    sys.exit(main())
