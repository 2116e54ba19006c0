"""The critic shipped with the package: files, manifest, and ``--critics trained`` with no settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.critics import GenerativeCritic
from agent.critics.shipped import SHIPPED_DIR, critic_temperatures, shipped_critic
from agent.errors import ConfigError
from agent.runtime import open_policy
from agent.settings import load_settings
from agent.solvers import SolverConfig, solve_with
from agent.tasks import get_task
from agent.tasks.base import Problem

QUESTION = "Lena has 12 stickers and gives 5 to her brother. How many stickers does she have left?"


def test_the_shipped_critic_has_its_adapter_temperatures_and_manifest() -> None:
    shipped = shipped_critic()
    assert shipped.adapter.read_bytes()[:4] == b"GGUF"
    assert sorted(shipped.temperatures) == ["orm", "prm", "value"]
    assert all(0.05 < t < 20 for t in shipped.temperatures.values())
    manifest = shipped.manifest
    assert manifest["args"]["seed"] == 0 and manifest["rows"]["train_orm"] > 0
    assert "finetune.critics" in manifest["command"] and manifest["table"]


def test_missing_or_broken_critic_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ship"):
        shipped_critic(tmp_path)
    assert critic_temperatures(tmp_path / "adapter.gguf") == {}
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": {"orm": 1.5, "bogus": 2.0}}))
    assert critic_temperatures(tmp_path / "adapter.gguf") == {"orm": 1.5}
    (tmp_path / "calibration.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"finetune\.critics"):
        critic_temperatures(tmp_path / "adapter.gguf")


@pytest.mark.anyio
async def test_shipped_critics_need_the_bundled_model(tmp_path: Path) -> None:
    settings = load_settings(embedded={"model_path": str(tmp_path / "other.gguf")})
    with pytest.raises(ConfigError, match="bundled model"):
        async with open_policy(settings, critics="trained"):
            pass


@pytest.mark.server
@pytest.mark.anyio
async def test_trained_critics_work_with_no_settings(embedded_servers: object, tmp_path: Path) -> None:
    """``--critics trained`` on the embedded server loads the shipped adapter for all three roles with
    its temperatures; its scores are the adapter's, not the base model's; re-rank runs end to end."""
    embedded_servers.stop()  # type: ignore[attr-defined]  # one server at a time
    settings = load_settings(embedded={"log_file": str(tmp_path / "server.log")})
    async with open_policy(settings, critics="trained") as policy:
        assert policy.critic_adapters == {"value": "0", "prm": "0", "orm": "0"}
        assert policy.critic_temperatures == shipped_critic().temperatures
        steps = ["She has 12 - 5 = 8 stickers left.", "The answer is 8."]
        trained = GenerativeCritic(policy.endpoint.with_adapter("0"), policy.fmt, role="orm")
        untrained = GenerativeCritic(policy.endpoint, policy.fmt, role="orm")
        assert (await trained.score(QUESTION, steps)).p != (await untrained.score(QUESTION, steps)).p
        config = SolverConfig(method="rerank", n=2, critics="trained")
        solution = await solve_with(
            policy, Problem("q", QUESTION, "7"), task=get_task("arith"), config=config
        )
        assert set(solution.answers) == {"rerank", "orm_vote", "majority"} and len(solution.samples) == 2
    assert SHIPPED_DIR.is_dir()
