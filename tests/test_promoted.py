"""The promoted policy: which adapter a run, a cycle folder, a GGUF or a PEFT folder names, and how the
policy endpoint selects it on servers addressed by name (SGLang, vLLM/OpenAI). The embedded server's
use of it, and the merged export, are tested with a trained adapter in test_finetune.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.fakes import FakeServer
from agent.promoted import resolve_policy_adapter
from agent.runtime import open_policy
from agent.settings import load_settings


def _run(root: Path, *, gguf: bool = True) -> Path:
    """A run directory as agent.improve leaves it, cycle 2 promoted; the lineage names the adapter
    relative to the directory the run was started in, which is not the current one."""
    job = root / "loop" / "cycle_2" / "adapter"
    (job / "adapter").mkdir(parents=True)
    (job / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    if gguf:
        (job / "adapter.gguf").write_bytes(b"GGUF")
    (job / "manifest.json").write_text(json.dumps({"base": "/models/base.gguf"}))
    stored = "runs/loop/cycle_2/adapter/" + ("adapter.gguf" if gguf else "adapter")
    lineage = {"adapter_name": "cycle_2", "adapter_path": stored, "cycle": 2}
    (root / "loop" / "lineage.json").write_text(json.dumps(lineage))
    return root / "loop"


def test_a_run_a_cycle_folder_a_gguf_and_a_peft_folder_name_the_same_adapter(tmp_path: Path) -> None:
    run = _run(tmp_path)
    job = run / "cycle_2" / "adapter"
    found = resolve_policy_adapter(run)
    assert (found.name, found.gguf, found.peft, found.cycle) == (
        "cycle_2",
        job / "adapter.gguf",
        job / "adapter",
        2,
    )
    assert found.base == "/models/base.gguf" and found.source == run
    assert resolve_policy_adapter(job).name == "cycle_2" and resolve_policy_adapter(job).gguf == found.gguf
    assert resolve_policy_adapter(job / "adapter.gguf").peft == job / "adapter"
    assert resolve_policy_adapter(job / "adapter").gguf == found.gguf
    assert resolve_policy_adapter(str(run)).describe()["cycle"] == 2


def test_what_is_not_an_adapter_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_policy_adapter(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="neither a run directory"):
        resolve_policy_adapter(tmp_path)
    run = _run(tmp_path)
    (run / "lineage.json").write_text(json.dumps({"eval": {}}))
    with pytest.raises(ConfigError, match="not promoted a fine-tuned policy"):
        resolve_policy_adapter(run)
    (run / "lineage.json").write_text(
        json.dumps({"adapter_name": "cycle_9", "adapter_path": "runs/x/cycle_9/a"})
    )
    with pytest.raises(ConfigError, match="missing"):
        resolve_policy_adapter(run)
    (run / "lineage.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_policy_adapter(run)


@pytest.mark.anyio
async def test_the_embedded_server_needs_a_gguf_adapter(tmp_path: Path) -> None:
    run = _run(tmp_path, gguf=False)
    with pytest.raises(ConfigError, match="no GGUF LoRA"):
        async with open_policy(load_settings(policy_adapter=str(run))):
            pass


@pytest.mark.anyio
async def test_the_embedded_server_refuses_an_adapter_of_another_base(tmp_path: Path) -> None:
    run = _run(tmp_path)  # fine-tuned from base.gguf, not the bundled model
    with pytest.raises(
        ConfigError, match=r"fine-tuned from base\.gguf, but the embedded server would serve Smol"
    ):
        async with open_policy(load_settings(policy_adapter=str(run))):
            pass
    with pytest.raises(ConfigError, match=r"would serve gemma-3-270m-q4_k_m\.gguf"):
        async with open_policy(load_settings(policy_adapter=str(run), embedded={"model": "gemma3-270m"})):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["openai", "sglang"])
async def test_servers_addressed_by_name_get_the_cycles_adapter_name(tmp_path: Path, backend: str) -> None:
    """vLLM / OpenAI-style servers take the adapter as the model name, SGLang as ``lora_path``."""
    run = _run(tmp_path, gguf=False)
    async with FakeServer(0.0, 2) as server:
        settings = load_settings(policy={"url": server.url, "backend": backend}, policy_adapter=str(run))
        async with open_policy(settings) as policy:
            inner = policy.endpoint.backend
            assert (inner.model if backend == "openai" else inner.adapter) == "cycle_2"  # type: ignore[attr-defined]
            assert policy.adapter is not None and policy.describe()["adapter"]["name"] == "cycle_2"  # type: ignore[index]
