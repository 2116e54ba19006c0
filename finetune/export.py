"""Export a fine-tuned policy as one merged model: ``python -m finetune.export``.

    python -m finetune.export --policy-from runs/loop --out models/loop        # HF + GGUF
    python -m finetune.export --policy-from runs/loop --out models/loop --format gguf --type q8_0

``--policy-from`` takes what ``AGENT_POLICY_ADAPTER`` takes (a run of ``python -m agent.improve``,
whose promoted cycle is exported, a cycle's fine-tuning folder, or a PEFT adapter folder). It writes

- ``hf/``: the base with the LoRA merged in (PEFT ``merge_and_unload``), as safetensors with its
  config and tokenizer: ``AutoModelForCausalLM.from_pretrained("models/loop/hf")`` loads it, and so
  do SGLang and vLLM (``--model-path models/loop/hf``);
- ``model.gguf``: the base GGUF with each adapted weight replaced by ``W + alpha/r * B @ A``, for
  llama.cpp and the embedded server (``AGENT_EMBEDDED__MODEL_PATH=models/loop/model.gguf``). The
  weights the adapter does not touch keep their type in the base file (the bundled model's Q4_1);
  the merged ones are written as ``--type`` (f16 by default; q8_0 is smaller; f32 is exact);
- ``export.json`` last: where it came from (adapter, base, cycle) and what was written.

The GGUF merge is our own code on the ``gguf`` library (the same reading and layout as the GGUF LoRA
export), not llama.cpp's conversion scripts, so it needs no llama.cpp checkout. Each output is
written next to its final place and renamed into it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError, DataError

__all__ = ["build_parser", "export_merged", "main", "merge_gguf", "merge_hf"]

TensorType = Literal["f32", "f16", "q8_0"]
_SKIPPED_KEYS = ("GGUF.", "general.architecture")  # the writer sets these itself


def merge_gguf(
    adapter_dir: Path, out_path: Path, *, base_gguf: Path, tensor_type: TensorType = "f16"
) -> Path:
    """Write ``base_gguf`` with the PEFT adapter in ``adapter_dir`` merged in; blocking."""
    import gguf
    import numpy as np

    from finetune.gguf_lora import gguf_pairs

    pairs, alpha, arch = gguf_pairs(adapter_dir, base_gguf=base_gguf)
    reader = gguf.GGUFReader(base_gguf)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        for field in reader.fields.values():
            if field.name.startswith(_SKIPPED_KEYS):
                continue
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
        tensors = []
        for tensor in reader.tensors:
            if tensor.name in pairs:
                a, b = pairs.pop(tensor.name)
                weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
                weight = weight + (alpha / a.shape[0]) * (b @ a)
                data, raw = _encode(weight, tensor_type)
            else:
                data, raw = tensor.data, tensor.tensor_type
            writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, raw_dtype=raw)
            tensors.append(data)
        if pairs:  # gguf_pairs checked the names against the same file: this would be a bug
            raise DataError(f"adapter tensors not found in {base_gguf}: {sorted(pairs)[:3]}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for data in tensors:
            writer.write_tensor_data(data)
        writer.close()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _encode(weight: Any, tensor_type: TensorType) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    if tensor_type == "f32":
        return np.ascontiguousarray(weight, dtype=np.float32), gguf.GGMLQuantizationType.F32
    if tensor_type == "f16":
        return np.ascontiguousarray(weight, dtype=np.float16), gguf.GGMLQuantizationType.F16
    q8 = gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(np.ascontiguousarray(weight, dtype=np.float32), q8), q8


def merge_hf(adapter_dir: Path, out_dir: Path, *, base: Path | str | None = None) -> Path:
    """Write the base (a GGUF, HF folder or hub id; default the bundled model) with the adapter
    merged in, as a Hugging Face folder (safetensors, config, tokenizer); blocking."""
    import warnings

    from peft import PeftModel

    from finetune.base import load_base

    model, tokenizer = load_base(base)
    with warnings.catch_warnings():  # peft asks transformers a deprecated question
        warnings.simplefilter("ignore", FutureWarning)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_merged(
    policy_from: Path | str,
    out: Path,
    *,
    formats: tuple[str, ...] = ("hf", "gguf"),
    base: Path | str | None = None,
    tensor_type: TensorType = "f16",
) -> dict[str, Any]:
    """Merge the adapter ``policy_from`` points at into its base; returns what ``export.json`` says."""
    from agent.promoted import resolve_policy_adapter
    from agent.runs import write_json_atomic
    from servers.models import ensure_bundled_model

    promoted = resolve_policy_adapter(policy_from)
    if promoted.peft is None:
        raise ConfigError(
            f"{promoted.source} has no PEFT adapter folder to merge (a GGUF LoRA alone cannot be merged "
            "into an HF model); point at the cycle's adapter folder, which holds both"
        )
    base = base or promoted.base or ensure_bundled_model()
    written: dict[str, Any] = {}
    started = time.perf_counter()
    if "hf" in formats:
        written["hf"] = str(merge_hf(promoted.peft, out / "hf", base=base))
    if "gguf" in formats:
        if not str(base).endswith(".gguf"):
            raise ConfigError(
                f"the GGUF merge starts from a GGUF base, and the adapter's base is {base}; pass --base "
                "with the GGUF of that model, or --format hf"
            )
        gguf_path = merge_gguf(
            promoted.peft, out / "model.gguf", base_gguf=Path(base), tensor_type=tensor_type
        )
        written["gguf"] = str(gguf_path)
        written["gguf_type"] = tensor_type
    info = {
        "adapter": promoted.describe(),
        "base": str(base),
        "written": written,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "export.json", info)
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.export",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--policy-from",
        required=True,
        metavar="PATH",
        help="a run of python -m agent.improve (its promoted cycle), a cycle's adapter folder or a PEFT "
        "folder",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for hf/, model.gguf and export.json")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=("hf", "gguf"),
        default=["hf", "gguf"],
        help="what to write (default both)",
    )
    parser.add_argument(
        "--base",
        help="the model the adapter was trained from (default: its training manifest's, else bundled)",
    )
    parser.add_argument(
        "--type",
        choices=("f16", "q8_0", "f32"),
        default="f16",
        help="tensor type of the merged weights in model.gguf (default f16)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from agent.cli import report_errors

    args = build_parser().parse_args(argv)

    def export() -> int:
        info = export_merged(
            args.policy_from, args.out, formats=tuple(args.format), base=args.base, tensor_type=args.type
        )
        for kind in ("hf", "gguf"):
            if kind in info["written"]:
                print(f"{kind}: {info['written'][kind]}")
        return 0

    return report_errors(export)


if __name__ == "__main__":
    sys.exit(main())
