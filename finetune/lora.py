"""Train a LoRA adapter with the loss on the completion tokens only: plain PyTorch + PEFT.

One function serves both fine-tuning jobs of the self-improvement loop (algorithm.md §9):

- policy SFT, "loss on the response only": ``Example(prompt=chatml_prompt, completion=steps + "<|im_end|>")``;
- a generative critic: ``Example(prompt=critic_prompt, completion=" Yes")``, so the loss is on the
  one label token whose probability the critic later reads from the server's log-probs.

Why a plain loop rather than TRL's ``SFTTrainer``: the only thing we need is cross-entropy on chosen
tokens, which is ten lines here, while SFTTrainer's knobs for it (``completion_only_loss``,
collators, dataset formats) changed between TRL releases; a loop is also easier to keep
deterministic and cheap on a 2-core CPU. For the same reason the vocabulary projection runs only at
the positions that carry a loss: for a critic that is one position per example instead of all of
them, which saves most of the logits' memory and a fifth of the compute of a 135 M model.

Simplified on purpose:

- prompt and completion are tokenized separately and concatenated, which is exactly what the server
  sees at inference (it tokenizes the prompt, then generates completion tokens); special tokens
  written in the text (``<|im_end|>``) are parsed as such, and the tokenizer's own BOS rule applies
  to the prompt only;
- too-long examples lose the start of the prompt (then, if still too long, the end of the
  completion) rather than being dropped;
- the loss is the mean over a micro-batch's loss tokens, averaged over ``grad_accum`` micro-batches;
- early stopping keeps the LoRA weights of the best evaluation and saves those.

The base model is wrapped with ``get_peft_model`` for the run and unwrapped (``unload``) afterwards,
so one loaded base serves several runs (policy, then critics). A model that is already a
``PeftModel`` (Unsloth's) is trained as it is and left wrapped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError, DataError

__all__ = ["IGNORE", "Example", "LoraTrainConfig", "TrainResult", "collate", "encode_examples", "train_lora"]

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training example: the loss is on ``completion``'s tokens only."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class LoraTrainConfig:
    # the adapter
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    # optimisation
    lr: float = 2e-4
    min_lr: float = 0.0
    schedule: Literal["cosine", "linear"] = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # data and length of the run
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_len: int = 512
    seed: int = 0
    # evaluation and early stopping (needs eval_examples)
    eval_every: int = 50
    patience: int | None = 3

    def __post_init__(self) -> None:
        positive = {"r": self.r, "alpha": self.alpha, "lr": self.lr, "epochs": self.epochs}
        positive |= {"batch_size": self.batch_size, "grad_accum": self.grad_accum}
        positive |= {"max_len": self.max_len, "eval_every": self.eval_every}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"LoraTrainConfig.{name} must be > 0, got {value}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"LoraTrainConfig.max_steps must be > 0 or None, got {self.max_steps}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"LoraTrainConfig.min_lr must be in [0, lr], got {self.min_lr}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("LoraTrainConfig.warmup_ratio and dropout must be in [0, 1)")
        if self.patience is not None and self.patience <= 0:
            raise ConfigError(f"LoraTrainConfig.patience must be > 0 or None, got {self.patience}")
        if not self.target_modules:
            raise ConfigError("LoraTrainConfig.target_modules is empty")

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based) of ``total``: warm-up, then decay."""
        warmup = math.ceil(self.warmup_ratio * total)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1 - progress
        return self.min_lr + (self.lr - self.min_lr) * shape


@dataclass(frozen=True)
class TrainResult:
    """What a run did. ``train_loss`` is the mean step loss over the last epoch's worth of steps."""

    steps: int
    train_loss: float
    eval_loss: float | None
    best_step: int | None
    seconds: float
    adapter_dir: Path
    examples_seen: int = 0
    tokens_seen: int = 0
    truncated: int = 0
    stopped_early: bool = False
    log: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def encode_examples(tokenizer: Any, examples: Sequence[Example], *, max_len: int) -> tuple[list, int]:
    """Token ids and labels (``-100`` on prompt tokens) per example, and how many were truncated."""
    encoded, truncated = [], 0
    for i, example in enumerate(examples):
        prompt = tokenizer(example.prompt, add_special_tokens=True).input_ids
        completion = tokenizer(example.completion, add_special_tokens=False).input_ids
        if not prompt or not completion:
            raise DataError(f"example {i} has an empty prompt or completion: nothing to train on")
        if len(prompt) + len(completion) > max_len:
            truncated += 1
            completion = completion[: max_len - 1]
            prompt = prompt[len(prompt) + len(completion) - max_len :]
        encoded.append((prompt + completion, [IGNORE] * len(prompt) + completion))
    return encoded, truncated


def train_lora(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    config: LoraTrainConfig,
    out_dir: Path,
    eval_examples: Sequence[Example] | None = None,
) -> TrainResult:
    """Train a LoRA on ``examples`` and save it to ``out_dir`` (replaced atomically); blocking.

    ``out_dir`` gets ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT) and
    ``train_log.jsonl`` (one row per optimizer step). On a CPU, the same seed gives the same run.
    """
    import torch
    from peft import PeftModel

    if not examples:
        raise DataError("no training examples")
    torch.manual_seed(config.seed)
    train_set, truncated = encode_examples(tokenizer, examples, max_len=config.max_len)
    eval_set = encode_examples(tokenizer, eval_examples, max_len=config.max_len)[0] if eval_examples else []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ours = not isinstance(model, PeftModel)
    peft_model = _wrap(model, config) if ours else model
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        result = _run(peft_model, train_set, eval_set, config=config, pad_id=pad_id, tmp=tmp)
        peft_model.save_pretrained(tmp)
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ours:
            peft_model.unload()
    return TrainResult(adapter_dir=out_dir, truncated=truncated, **result)


def _wrap(model: Any, config: LoraTrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft annotates int; a float works
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft asks transformers>=5 a deprecated question; not ours to fix
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise ConfigError(f"cannot add LoRA to {type(model).__name__}: {exc}") from exc


def _run(model: Any, train_set: list, eval_set: list, *, config: LoraTrainConfig, pad_id: int, tmp: Path):
    import torch

    batches_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = config.max_steps or math.ceil(batches_per_epoch * config.epochs / config.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches = _batches(train_set, config=config, generator=torch.Generator().manual_seed(config.seed))
    stopper = _EarlyStopping(patience=config.patience)
    log, seen = [], {"examples_seen": 0, "tokens_seen": 0}
    start = time.perf_counter()
    with (tmp / "train_log.jsonl").open("w") as log_file:
        for step in range(1, total + 1):
            lr = config.lr_at(step - 1, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _train_step(model, batches, optimizer, params, config=config, pad_id=pad_id, seen=seen)
            row: dict[str, Any] = {"step": step, "loss": round(loss, 6), "lr": lr}
            if eval_set and (step % config.eval_every == 0 or step == total):
                row["eval_loss"] = _evaluate(model, eval_set, config=config, pad_id=pad_id)
                stopper.update(row["eval_loss"], step=step, model=model)
            row["seconds"] = round(time.perf_counter() - start, 3)
            log.append(row)
            log_file.write(json.dumps(row) + "\n")
            if stopper.stop:
                break
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state, strict=False)
    last_epoch = log[-min(len(log), max(1, batches_per_epoch // config.grad_accum)) :]
    return {
        "steps": len(log),
        "train_loss": sum(row["loss"] for row in last_epoch) / len(last_epoch),
        "eval_loss": stopper.best_loss,
        "best_step": stopper.best_step,
        "seconds": time.perf_counter() - start,
        "stopped_early": stopper.stop,
        "log": tuple(log),
        **seen,
    }


def _train_step(model: Any, batches: Any, optimizer: Any, params: list, *, config, pad_id: int, seen: dict):
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss."""
    import torch

    model.train()
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(config.grad_accum):
        batch = next(batches)
        ids, labels, mask = (t.to(device) for t in collate(batch, pad_id=pad_id))
        loss, _ = _loss(model, ids, labels, mask)
        (loss / config.grad_accum).backward()
        total += loss.item() / config.grad_accum
        seen["examples_seen"] += len(batch)
        seen["tokens_seen"] += int(mask.sum())
    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


@dataclass
class _EarlyStopping:
    """Remember the LoRA weights of the best evaluation; stop after ``patience`` evals without one."""

    patience: int | None
    best_loss: float | None = None
    best_step: int | None = None
    best_state: dict | None = None
    evals_since_best: int = 0
    stop: bool = False

    def update(self, loss: float, *, step: int, model: Any) -> None:
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.evals_since_best = loss, step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
        else:
            self.evals_since_best += 1
            self.stop = self.patience is not None and self.evals_since_best >= self.patience


def _batches(dataset: list, *, config: LoraTrainConfig, generator: Any):
    """Endless stream of micro-batches: a fresh seeded shuffle per epoch."""
    import torch

    while True:
        order = torch.randperm(len(dataset), generator=generator).tolist()
        for i in range(0, len(order), config.batch_size):
            yield [dataset[j] for j in order[i : i + config.batch_size]]


def collate(batch: list, *, pad_id: int):
    """Right-pad to the longest example: ``(input_ids, labels, attention_mask)``."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, targets) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return ids, labels, mask


def _loss(model: Any, ids: Any, labels: Any, mask: Any):
    """Mean cross-entropy over the labelled tokens, projecting only those positions to the vocabulary."""
    import torch.nn.functional as F

    base = model.get_base_model()
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    chosen = targets != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][chosen]).float()
    n = int(chosen.sum())
    return F.cross_entropy(logits, targets[chosen], reduction="sum") / n, n


def _evaluate(model: Any, eval_set: list, *, config: LoraTrainConfig, pad_id: int) -> float:
    """Token-weighted mean loss over the whole evaluation set."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(eval_set), config.batch_size):
            batch = collate(eval_set[i : i + config.batch_size], pad_id=pad_id)
            loss, n = _loss(model, *(t.to(device) for t in batch))
            total, count = total + loss.item() * n, count + n
    return total / count


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir``, replacing an older ``out_dir`` (renames, no partial state)."""
    tmp.chmod(0o755)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
