"""The policy fine-tuning job, ``python -m finetune.sft``: data in, adapter + GGUF + manifest out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gguf")

from finetune.sft import main


def arithmetic_rows(path: Path, op: str) -> Path:
    """Four chat-format SFT rows answering ``a op b`` (op: + or *), written to ``path``."""
    prompt = "<|im_start|>user\nWhat is {a} " + op + " {b}?<|im_end|>\n<|im_start|>assistant\n"
    result = {"+": int.__add__, "*": int.__mul__}[op]
    rows = [
        {
            "prompt": prompt.format(a=a, b=b),
            "completion": f"{a} {op} {b} = {result(a, b)}\nThe answer is {result(a, b)}.<|im_end|>",
        }
        for a, b in [(2, 3), (4, 5), (7, 1), (6, 6)]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_job_trains_exports_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = arithmetic_rows(tmp_path / "sft.jsonl", "+")
    out = tmp_path / "adapter"
    assert main(["--data", str(data), "--out", str(out), "--max-steps", "2", "--batch-size", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["result"]["steps"] == 2 and manifest["examples"]["train"] == 4
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter.gguf").read_bytes()[:4] == b"GGUF"
    # A finished directory is not trained again.
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert main(["--data", str(data), "--out", str(out), "--max-steps", "2"]) == 0
    assert (out / "manifest.json").stat().st_mtime_ns == stamp


def test_sft_job_rejects_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": "only"}\n')
    assert main(["--data", str(data), "--out", str(tmp_path / "out")]) == 2
    assert "line 2" in capsys.readouterr().err


def test_sft_job_continues_an_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    data = arithmetic_rows(tmp_path / "sft.jsonl", "*")
    first = tmp_path / "first"
    common = ["--data", str(data), "--max-steps", "2", "--batch-size", "2", "--lr", "1e-2"]
    assert main([*common, "--out", str(first), "--r", "4"]) == 0
    second = tmp_path / "second"
    # the continued adapter keeps its own rank (4), whatever --r says
    assert main([*common, "--out", str(second), "--r", "8", "--init-adapter", str(first / "adapter")]) == 0
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["init_adapter"] == str(first / "adapter")
    assert json.loads((second / "adapter" / "adapter_config.json").read_text())["r"] == 4
    before = load_file(str(first / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(second / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    b_name = next(k for k in before if "lora_B" in k)
    assert before[b_name].abs().sum() > 0  # trained: B is no longer its zero initialisation...
    assert not all(before[k].equal(after[k]) for k in before)  # ...and training went on from it
    assert (second / "adapter.gguf").read_bytes()[:4] == b"GGUF"
    # something that is not an adapter directory: a clear error, exit status 2
    assert main([*common, "--out", str(tmp_path / "bad"), "--init-adapter", str(tmp_path)]) == 2
    assert "not a PEFT adapter directory" in capsys.readouterr().err
