"""Load the base model for fine-tuning: a GGUF (default: the bundled SmolLM2) or a Hugging Face model.

The model we serve on CPU is a GGUF file, so the model we fine-tune starts from that same file:
transformers reads it (``from_pretrained(dir, gguf_file=name)``) and dequantizes every tensor to
fp32 with numpy. That takes tens of seconds, so after the first load we save the dequantized model
and its tokenizer as an ordinary Hugging Face directory under the cache dir, and later loads read
that directory instead (a few seconds).

Three gotchas of GGUF-loaded models are handled here, once, so no caller meets them:

- the model carries a ``GgufHfQuantizer`` and ``save_pretrained`` refuses to save it
  ("quantized with gguf and is not serializable"), although its weights are plain fp32;
- ``config.quantization_config`` names the GGUF file, which would make the cached copy look quantized;
- ``config.architectures`` is missing, which tools that read ``config.json`` need.

Simplified on purpose: the cache key is the GGUF's name, size and the hash of its first 16 MiB (header,
metadata and the first tensors), not of the whole file, to keep the check cheap for multi-GB files.
A hub id or a local HF directory is passed straight to transformers and not cached here (the hub
has its own cache).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, DataError
from servers.models import cache_dir, ensure_bundled_model

if TYPE_CHECKING:
    import torch

__all__ = ["cached_hf_dir", "load_base"]

_HEAD_BYTES = 16 << 20


def load_base(
    source: Path | str | None = None,
    *,
    dtype: torch.dtype | None = None,
    cache: Path | None = None,
    use_cache: bool = True,
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for fine-tuning, in eval mode, with fp32 weights by default.

    ``source`` is a ``.gguf`` file (default: the bundled SmolLM2-135M-Instruct), a local Hugging
    Face directory, or a hub id such as ``"HuggingFaceTB/SmolLM2-135M-Instruct"`` (needs a network).
    A GGUF is dequantized once and cached as an HF directory under ``cache`` (default: the treeloop
    cache dir); ``use_cache=False`` always reads the GGUF.
    """
    import torch

    dtype = dtype or torch.float32
    if source is None:
        source = ensure_bundled_model()
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DataError(f"GGUF file {path} does not exist")
        if use_cache:
            return _load_hf(cached_hf_dir(path, cache=cache), dtype=dtype)
        return _load_gguf(path, dtype=dtype)
    if path.exists() and not (path / "config.json").is_file():
        raise DataError(f"{path} is neither a .gguf file nor a Hugging Face model directory")
    return _load_hf(path if path.exists() else str(source), dtype=dtype)


def cached_hf_dir(gguf_path: Path, *, cache: Path | None = None) -> Path:
    """The HF directory holding ``gguf_path`` dequantized, writing it on first use (blocking).

    Also what GPU back ends that cannot read GGUF (Unsloth) load instead of the GGUF itself.
    """
    target = (cache or cache_dir()) / "hf" / f"{gguf_path.stem}-{_fingerprint(gguf_path)}"
    if (target / "config.json").is_file():
        return target
    model, tokenizer = _load_gguf(gguf_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process cached it first: theirs is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(path: Path, *, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype or torch.float32
        )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigError(f"transformers cannot load {path.name}: {exc}") from exc
    _drop_gguf_quantizer(model)
    return model.eval(), tokenizer


def _drop_gguf_quantizer(model: Any) -> None:
    """Make a GGUF-loaded model look like the plain fp32 model it is (see the module docstring)."""
    model.hf_quantizer = None
    model.is_quantized = False
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if not getattr(config, "architectures", None):
        config.architectures = [type(model).__name__]


def _load_hf(source: Path | str, *, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise ConfigError(f"cannot load the model {source!s}: {exc}") from exc
    return model.eval(), tokenizer


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode())
    with path.open("rb") as f:
        digest.update(f.read(_HEAD_BYTES))
    return digest.hexdigest()[:12]
