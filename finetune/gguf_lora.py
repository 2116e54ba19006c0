"""Write a PEFT LoRA adapter as a GGUF LoRA adapter that llama.cpp (and so xllamacpp) can load.

A GGUF LoRA holds, for each adapted weight ``W`` of the base GGUF (ggml shape ``[n_in, n_out]``),
two tensors ``<base name>.lora_a`` (numpy ``[r, n_in]``) and ``<base name>.lora_b`` (numpy
``[n_out, r]``); llama.cpp adds ``scale * alpha / r * B @ A`` to ``W``, ``scale`` being the per-request
``"lora": [{"id": 0, "scale": 1.0}]``. PEFT stores the same two matrices (``lora_A.weight`` is
``[r, n_in]``, ``lora_B.weight`` is ``[n_out, r]``), so the export is mostly renaming, plus:

- **the rotary permutation of q and k (architecture ``llama``)**: llama.cpp's GGUFs store the rows of
  ``attn_q`` / ``attn_k`` permuted relative to Hugging Face (each head's rotary pairs interleaved),
  and transformers un-permutes them when it loads a GGUF. The LoRA we trained lives in the HF row
  order, so ``B`` (whose rows are the output rows) gets the same permutation as the base weights,
  with ``n_head`` for q and ``n_head_kv`` for k, read from the base GGUF;
- the KV pairs llama.cpp checks: ``general.architecture`` (must equal the base model's),
  ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha``.

Every pair is checked against the shape of the base tensor it adapts, so an adapter trained on
another model fails here rather than in the server. Not supported (ConfigError): DoRA, per-module
alpha or rank patterns (llama.cpp has one alpha per file), LoRA on embeddings or the output head.
rsLoRA is folded into alpha. This is our own code on the ``gguf`` library; llama.cpp's converter
scripts are another project's and are not used.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError, DataError

__all__ = ["GGUF_NAMES", "export_lora_gguf", "gguf_pairs", "permute_rotary_rows"]

# Hugging Face module name -> the GGUF tensor name stem in block ``blk.{i}``.
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_PERMUTED_ARCHS = {"llama"}  # the architectures whose q/k rows llama.cpp's GGUFs permute
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")


def export_lora_gguf(
    adapter_dir: Path,
    out_path: Path,
    *,
    base_gguf: Path,
    dtype: Literal["f32", "f16"] = "f32",
) -> Path:
    """Write ``adapter_dir`` (PEFT ``save_pretrained`` output) to ``out_path`` as a GGUF LoRA; blocking."""
    import gguf
    import numpy as np

    pairs, alpha, arch = gguf_pairs(adapter_dir, base_gguf=base_gguf)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        np_dtype = np.float16 if dtype == "f16" else np.float32
        for name, (a, b) in pairs.items():
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np_dtype))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np_dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def gguf_pairs(adapter_dir: Path, *, base_gguf: Path) -> tuple[dict[str, tuple[Any, Any]], float, str]:
    """The adapter's ``(A, B)`` pairs by base GGUF tensor name, in the GGUF's row order and checked
    against the base's shapes; llama.cpp's alpha (``B @ A`` is scaled by alpha / r); the architecture."""
    config = _read_config(adapter_dir)
    base = _read_base(base_gguf)
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora"):  # PEFT scales by alpha / sqrt(r), llama.cpp by alpha / r
        alpha *= math.sqrt(int(config["r"]))
    pairs = {}
    for (layer, module), (a, b) in sorted(_read_pairs(adapter_dir).items()):
        name = f"blk.{layer}.{GGUF_NAMES[module]}.weight"
        _check_shapes(name, a, b, base["shapes"])
        if base["arch"] in _PERMUTED_ARCHS and module in ("q_proj", "k_proj"):
            heads = base["n_head"] if module == "q_proj" else base["n_head_kv"]
            b = permute_rotary_rows(b, n_head=heads)
        pairs[name] = (a, b)
    return pairs, alpha, base["arch"]


def permute_rotary_rows(weight: Any, *, n_head: int) -> Any:
    """Reorder the output rows from Hugging Face's rotary layout to llama.cpp's GGUF layout.

    Per head, HF keeps the first halves of the rotary pairs, then the second halves; the GGUF
    interleaves them: row ``h*d + 2*i + j`` of the result is row ``h*d + j*d/2 + i`` of the input.
    """
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise DataError(f"{rows} rows cannot be split into {n_head} heads of rotary pairs")
    half = rows // n_head // 2
    return weight.reshape(n_head, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the adapter config {path}: {exc}") from exc
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ConfigError(f"{path}: only plain LoRA adapters can be exported (not DoRA or others)")
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise ConfigError(f"{path}: per-module alpha/rank patterns cannot be expressed in a GGUF LoRA")
    if config.get("lora_bias") or config.get("modules_to_save"):
        raise ConfigError(f"{path}: LoRA biases and fully trained modules cannot be exported")
    if "lora_alpha" not in config or "r" not in config:
        raise DataError(f"{path} lacks lora_alpha or r")
    return config


def _read_base(base_gguf: Path) -> dict[str, Any]:
    import gguf

    try:
        reader = gguf.GGUFReader(base_gguf)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the base GGUF {base_gguf}: {exc}") from exc
    arch = _field(reader, "general.architecture", base_gguf)
    return {
        "arch": arch,
        "n_head": int(_field(reader, f"{arch}.attention.head_count", base_gguf)),
        "n_head_kv": int(_field(reader, f"{arch}.attention.head_count_kv", base_gguf)),
        "shapes": {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors},
    }


def _field(reader: Any, key: str, path: Path) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise DataError(f"the base GGUF {path} has no {key}")
    return field.contents()


def _read_pairs(adapter_dir: Path) -> dict[tuple[int, str], tuple[Any, Any]]:
    """``{(layer, module): (A, B)}`` as float32 numpy arrays."""
    from safetensors.numpy import load_file

    path = adapter_dir / "adapter_model.safetensors"
    try:
        tensors = load_file(path)
    except (OSError, ValueError) as exc:  # bf16 tensors need the torch loader
        tensors = _load_with_torch(path, exc)
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _KEY.search(key)
        if match is None or match[2] not in GGUF_NAMES:
            raise ConfigError(f"{path}: cannot map the LoRA tensor {key} to a GGUF tensor")
        found.setdefault((int(match[1]), match[2]), {})[match[3]] = value.astype("float32")
    if not found:
        raise DataError(f"{path} holds no LoRA tensors")
    incomplete = [key for key, ab in found.items() if set(ab) != {"A", "B"}]
    if incomplete:
        raise DataError(f"{path}: LoRA pairs without both A and B: {incomplete[:3]}")
    return {key: (ab["A"], ab["B"]) for key, ab in found.items()}


def _load_with_torch(path: Path, first_error: Exception) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file

        return {k: v.float().numpy() for k, v in load_file(path).items()}
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"cannot read the adapter weights {path}: {exc}") from first_error


def _check_shapes(name: str, a: Any, b: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    if name not in shapes:
        raise DataError(f"the base GGUF has no tensor {name}: the adapter is for another model")
    n_in, n_out = shapes[name][:2]  # ggml order: ne0 = inputs, ne1 = outputs
    r = a.shape[0]
    if a.shape != (r, n_in) or b.shape != (n_out, r):
        raise DataError(
            f"{name}: LoRA A{tuple(a.shape)} / B{tuple(b.shape)} do not fit the base weight "
            f"[{n_in} in, {n_out} out]: expected A({r}, {n_in}) and B({n_out}, {r})"
        )
