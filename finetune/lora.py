"""Train a LoRA adapter with the loss on the completion tokens only: TRL's ``SFTTrainer`` + PEFT.

One function serves both fine-tuning jobs of the self-improvement loop (algorithm.md §9):

- policy SFT, "loss on the response only": ``Example(prompt=chatml_prompt, completion=steps + "<|im_end|>")``;
- a generative critic: ``Example(prompt=critic_prompt, completion="Yes", target=0.73)``: the loss is
  on the one label token whose probability the critic later reads from the server's log-probs.

The training loop is TRL's ``SFTTrainer`` (prompt-completion data, loss on the completion only). Two
things are ours:

- tokenization: prompt and completion are tokenized separately and concatenated, which is exactly
  what the server sees at inference (it tokenizes the prompt, then generates completion tokens), and
  the pre-tokenized ``input_ids``/``labels`` go to the trainer as they are (no EOS appended: a critic's
  completion is one label token). Special tokens written in the text (``<|im_end|>``) are parsed as
  such; too-long examples lose the start of the prompt (then the end of the completion);
- soft targets (``Example.target``): a critic example carries the probability its label should have,
  e.g. a value function's Monte-Carlo success rate. ``CriticTrainer`` overrides ``compute_loss`` with
  the cross-entropy against that two-point distribution, ``-(t log p(yes) + (1 - t) log p(no))``,
  whose minimum is at ``p(yes) = t`` and ``p(no) = 1 - t``: the score the server returns,
  ``p(yes) / (p(yes) + p(no))``, is then trained to be ``t``. Hard labels are ``t`` in {0, 1}. Only
  the labelled position is projected to the vocabulary (one position per example, not all of them).

The learning-rate schedule (``LoraTrainConfig.lr_at``: warm-up, then cosine or linear decay to
``min_lr``) is passed to the trainer as its scheduler; early stopping keeps the LoRA weights of the
best evaluation in memory (transformers' ``EarlyStoppingCallback`` would write a checkpoint per
evaluation to reload the best one). ``layers`` restricts LoRA to the top layers of the model: the
backward pass then stops there, which makes critic training on a CPU about twice as fast.

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
from functools import cache
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError, DataError

__all__ = [
    "IGNORE",
    "Example",
    "LoraTrainConfig",
    "TrainResult",
    "collate",
    "critic_trainer",
    "encode_examples",
    "label_ids",
    "soft_label_loss",
    "train_lora",
]

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training example: the loss is on ``completion``'s tokens only.

    ``target`` (critics only) is the probability the completion's label should get, in [0, 1]: the
    completion is then one yes-token and the loss is against ``(t, 1 - t)`` over yes and no. Examples
    of one run either all have a target or none does.
    """

    prompt: str
    completion: str
    target: float | None = None

    def __post_init__(self) -> None:
        if self.target is not None and not 0.0 <= self.target <= 1.0:
            raise DataError(f"an example's target is a probability in [0, 1], got {self.target}")


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
    # LoRA on the top ``layers`` decoder layers only (None: all of them)
    layers: int | None = None
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
        if self.layers is not None and self.layers <= 0:
            raise ConfigError(f"LoraTrainConfig.layers must be > 0 or None, got {self.layers}")
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


def label_ids(tokenizer: Any, yes: str = "Yes", no: str = "No") -> tuple[int, int]:
    """The token ids of a critic's two labels; each must be one token."""
    ids = [tokenizer(label, add_special_tokens=False).input_ids for label in (yes, no)]
    if any(len(i) != 1 for i in ids):
        raise ConfigError(f"critic labels {yes!r} and {no!r} must be one token each, got {ids}")
    return ids[0][0], ids[1][0]


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
    soft = {e.target is not None for e in [*examples, *(eval_examples or ())]}
    if len(soft) > 1:
        raise DataError("either every example has a target (a critic) or none has")
    train_set, truncated = _dataset(tokenizer, examples, max_len=config.max_len)
    eval_set = _dataset(tokenizer, eval_examples, max_len=config.max_len)[0] if eval_examples else None
    ours = not isinstance(model, PeftModel)
    torch.manual_seed(config.seed)  # the LoRA A matrices' initialisation
    peft_model = _wrap(model, config) if ours else model
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yes_no = label_ids(tokenizer) if soft == {True} else None
        result = _run(peft_model, tokenizer, train_set, eval_set, config=config, tmp=tmp, yes_no=yes_no)
        peft_model.save_pretrained(tmp)
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ours:
            peft_model.unload()
    return TrainResult(adapter_dir=out_dir, truncated=truncated, **result)


def _dataset(tokenizer: Any, examples: Sequence[Example], *, max_len: int) -> tuple[Any, int]:
    from datasets import Dataset

    encoded, truncated = encode_examples(tokenizer, examples, max_len=max_len)
    columns: dict[str, list] = {
        "input_ids": [ids for ids, _ in encoded],
        "labels": [lab for _, lab in encoded],
    }
    if examples[0].target is not None:
        columns["target"] = [float(e.target) for e in examples]  # type: ignore[arg-type]
    return Dataset.from_dict(columns), truncated


def _wrap(model: Any, config: LoraTrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    n_layers = model.config.num_hidden_layers
    top = list(range(max(0, n_layers - config.layers), n_layers)) if config.layers else None
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft annotates int; a float works
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=top,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft asks transformers>=5 a deprecated question; not ours to fix
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise ConfigError(f"cannot add LoRA to {type(model).__name__}: {exc}") from exc


def _run(
    model: Any,
    tokenizer: Any,
    train_set: Any,
    eval_set: Any,
    *,
    config: LoraTrainConfig,
    tmp: Path,
    yes_no: tuple[int, int] | None,
) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = config.max_steps or math.ceil(batches_per_epoch * config.epochs / config.grad_accum)
    lm_collator = DataCollatorForLanguageModeling(pad_token_id=pad_id)

    def collate_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = lm_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        if "target" in rows[0]:
            batch["target"] = torch.tensor([r["target"] for r in rows], dtype=torch.float32)
        return batch

    with warnings.catch_warnings():  # transformers 5 renames TrainingArguments fields that TRL still sets
        warnings.filterwarnings("ignore", category=FutureWarning)
        args = SFTConfig(
            output_dir=str(tmp / "trainer"),
            max_steps=total,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum,
            learning_rate=config.lr,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            seed=config.seed,
            data_seed=config.seed,
            logging_steps=1,
            eval_strategy="steps" if eval_set is not None else "no",
            eval_steps=config.eval_every,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            max_length=None,
            dataset_kwargs={"skip_prepare_dataset": True},
            use_cpu=not torch.cuda.is_available(),
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: config.lr_at(step, total) / config.lr
    )
    log: list[dict[str, Any]] = []
    stopper = _EarlyStopping(patience=config.patience)
    start = time.perf_counter()
    log_path = tmp / "train_log.jsonl"

    class Recorder(TrainerCallback):  # type: ignore[misc]
        """One log row per optimizer step (loss, lr, eval_loss when evaluated); early stopping."""

        def on_log(self, _args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
            if not logs:
                return
            if "loss" in logs:
                row = {"step": state.global_step, "loss": round(float(logs["loss"]), 6)}
                row["lr"] = config.lr_at(state.global_step - 1, total)
                row["seconds"] = round(time.perf_counter() - start, 3)
                log.append(row)
            if "eval_loss" in logs and log:
                log[-1]["eval_loss"] = float(logs["eval_loss"])
                stopper.update(float(logs["eval_loss"]), step=state.global_step, model=model)
                if stopper.stop:
                    control.should_training_stop = True

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        trainer = critic_trainer()(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=tokenizer,
            data_collator=collate_rows,
            optimizers=(optimizer, scheduler),
            callbacks=[Recorder()],
            yes_no=yes_no,
        )
        trainer.train()
        if eval_set is not None and (not log or "eval_loss" not in log[-1]) and not stopper.stop:
            loss = float(trainer.evaluate()["eval_loss"])
            if log:
                log[-1]["eval_loss"] = loss
            stopper.update(loss, step=len(log), model=model)
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state, strict=False)
    with log_path.open("w") as f:
        f.writelines(json.dumps(row) + "\n" for row in log)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    last_epoch = log[-min(len(log), max(1, batches_per_epoch // config.grad_accum)) :]
    seen = {
        "examples_seen": len(log) * config.batch_size * config.grad_accum,
        "tokens_seen": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
    }
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


@cache
def critic_trainer() -> type:
    """``SFTTrainer`` with the soft two-label loss when a batch carries ``target`` (see the module
    docstring), plain completion-only SFT otherwise; built on first use so that importing this module
    does not import TRL."""
    from trl import SFTTrainer

    class CriticTrainer(SFTTrainer):  # type: ignore[misc]
        def __init__(self, *args: Any, yes_no: tuple[int, int] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.yes_no = yes_no

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
            target = inputs.pop("target", None)
            if target is None or self.yes_no is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            ids, labels, mask = inputs["input_ids"], inputs["labels"], inputs["attention_mask"]
            loss = soft_label_loss(model, ids, labels, mask, target, self.yes_no)
            return (loss, {"loss": loss}) if return_outputs else loss

    return CriticTrainer


def soft_label_loss(
    model: Any, ids: Any, labels: Any, mask: Any, target: Any, yes_no: tuple[int, int]
) -> Any:
    """Mean over examples of ``-(t log p(yes) + (1 - t) log p(no))`` at each example's label position
    (its first labelled token), projecting only those positions to the vocabulary."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    labelled = labels[:, 1:] != IGNORE
    position = labelled.float().argmax(dim=1)  # the first labelled token, predicted from the one before
    rows = torch.arange(ids.shape[0], device=ids.device)
    logits = base.get_output_embeddings()(hidden[rows, position]).float()
    logp = torch.log_softmax(logits, dim=-1)
    yes, no = yes_no
    return -(target * logp[:, yes] + (1 - target) * logp[:, no]).mean()


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
