"""One entry point for LoRA fine-tuning: Unsloth on a GPU, plain transformers + PEFT on a CPU.

``train(examples, out_dir=..., backend="auto")`` loads the base model, trains with
``finetune.lora.train_lora`` (the same loop and the same loss on completion tokens either way) and
returns its ``TrainResult``. Only the loading differs:

- ``peft``: ``finetune.base.load_base`` (a GGUF, dequantized once and cached, or an HF model);
- ``unsloth``: ``FastLanguageModel.from_pretrained`` + ``FastLanguageModel.get_peft_model``
  (serving-facts.md §4), which patch the model with Unsloth's kernels; Unsloth cannot read a GGUF,
  so a GGUF base is first dequantized into the cached HF directory that ``load_base`` also uses.

``auto`` picks Unsloth when a CUDA device is present and ``unsloth`` is installed, else PEFT.
Left out on purpose: Unsloth's 4-bit loading (QLoRA), its TRL trainer and its GGUF export (which
downloads llama.cpp from GitHub); the adapter is exported with ``finetune.gguf_lora`` either way.
The Unsloth path could not be run on the CPU machines this was written on. For Unsloth's patches
to cover transformers fully, the entry script should ``import unsloth`` before transformers.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError
from finetune.base import cached_hf_dir, load_base
from finetune.lora import Example, LoraTrainConfig, TrainResult, train_lora
from servers.models import ensure_bundled_model

__all__ = ["Backend", "choose_backend", "train"]

Backend = Literal["auto", "peft", "unsloth"]


def choose_backend(backend: Backend = "auto") -> Literal["peft", "unsloth"]:
    """Resolve ``auto``; fail early if ``unsloth`` is asked for where it cannot run."""
    if backend not in ("auto", "peft", "unsloth"):
        raise ConfigError(f"unknown fine-tuning backend {backend!r}; choose auto, peft or unsloth")
    if backend == "peft":
        return "peft"
    import torch

    usable = torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None
    if backend == "unsloth" and not usable:
        raise ConfigError("backend 'unsloth' needs a CUDA GPU and the `gpu` extra (pip install unsloth)")
    return "unsloth" if usable else "peft"


def train(
    examples: Sequence[Example],
    *,
    out_dir: Path,
    base: Path | str | None = None,
    config: LoraTrainConfig | None = None,
    eval_examples: Sequence[Example] | None = None,
    backend: Backend = "auto",
    init_adapter: Path | None = None,
) -> TrainResult:
    """Fine-tune a LoRA on ``base`` (default: the bundled GGUF) and save it to ``out_dir``; blocking.

    With ``init_adapter`` (a PEFT adapter directory of the same base) training continues from that
    adapter, with its own rank, alpha and target modules, instead of starting a new one."""
    config = config or LoraTrainConfig()
    if init_adapter is not None and not (Path(init_adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"{init_adapter} is not a PEFT adapter directory (no adapter_config.json)")
    if choose_backend(backend) == "unsloth":
        model, tokenizer = _load_unsloth(base, config=config, init_adapter=init_adapter)
    else:
        model, tokenizer = load_base(base)
        if init_adapter is not None:
            from peft import PeftModel

            with warnings.catch_warnings():  # peft asks transformers>=5 a deprecated question
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    return train_lora(model, tokenizer, examples, config=config, out_dir=out_dir, eval_examples=eval_examples)


def _load_unsloth(
    base: Path | str | None, *, config: LoraTrainConfig, init_adapter: Path | None = None
) -> tuple[Any, Any]:
    """An Unsloth model with LoRA layers added (or ``init_adapter``'s, loaded with its base), ready for
    ``train_lora`` (which leaves it wrapped)."""
    import unsloth  # noqa: F401  (patches transformers, peft and trl when imported)
    from unsloth import FastLanguageModel

    source = Path(base) if base is not None else ensure_bundled_model()
    name = str(cached_hf_dir(source)) if source.suffix == ".gguf" else str(base)
    if init_adapter is not None:  # an adapter directory loads with the base its config names
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(init_adapter),
            max_seq_length=config.max_len,
            dtype=None,
            load_in_4bit=False,
            random_state=config.seed,
        )
        FastLanguageModel.for_training(model)
        return model, tokenizer
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=name,
        max_seq_length=config.max_len,
        dtype=None,  # bf16 where the GPU supports it
        load_in_4bit=False,
        random_state=config.seed,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.r,
        target_modules=list(config.target_modules),
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=config.seed,
        max_seq_length=config.max_len,
    )
    FastLanguageModel.for_training(model)
    return model, tokenizer
