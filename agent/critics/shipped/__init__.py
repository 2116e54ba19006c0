"""The critics shipped with the package: one LoRA adapter of the bundled SmolLM2-135M-Instruct that
answers the value, PRM and ORM questions, with its fitted temperatures and the manifest it was built
with (data, command, seed, metrics).

``--critics trained`` uses it when no critic adapters are configured and the policy is the bundled
model on the embedded server (``agent.runtime.open_policy``). Rebuilt by one command (its manifest
records the exact one):

    python -m finetune.critics --out runs/critics-shipped --ship

``shipped_critic()`` returns what is there, or raises ``ConfigError`` saying how to build it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.critics.verifier import VerifierWeights, load_weights
from agent.errors import ConfigError

__all__ = ["SHIPPED_DIR", "ShippedCritic", "critic_temperatures", "shipped_critic", "shipped_verifier"]

SHIPPED_DIR = Path(__file__).resolve().parent / "smollm2-135m"
ROLES = ("value", "prm", "orm")
VERIFIER = SHIPPED_DIR / "verifier.json"


@dataclass(frozen=True)
class ShippedCritic:
    adapter: Path  # GGUF LoRA of the bundled model
    temperatures: dict[str, float]  # role -> fitted temperature
    manifest: dict[str, Any]


def critic_temperatures(adapter: Path) -> dict[str, float]:
    """The temperatures stored with an adapter (``calibration.json`` in its directory), by role; empty
    when it has none (its scores are then used as they are)."""
    path = Path(adapter).parent / "calibration.json"
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())["temperature"]
        return {str(role): float(t) for role, t in stored.items() if role in ROLES and float(t) > 0}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a critic calibration ({exc}); rerun finetune.critics") from exc


def shipped_critic(directory: Path = SHIPPED_DIR) -> ShippedCritic:
    adapter = directory / "adapter.gguf"
    if not adapter.is_file():
        raise ConfigError(
            f"no shipped critic at {directory}; build it with "
            "`python -m finetune.critics --out runs/critics-shipped --ship`, or set AGENT_CRITIC_ADAPTERS"
        )
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return ShippedCritic(adapter=adapter, temperatures=critic_temperatures(adapter), manifest=manifest)


def shipped_verifier(path: Path = VERIFIER) -> VerifierWeights:
    """The feature verifier's weights shipped with the package (fitted on the bundled model's
    solutions; its features are model-free, so any policy may use them)."""
    if not path.is_file():
        raise ConfigError(
            f"no shipped verifier at {path}; build it with "
            "`python -m finetune.verifier --out runs/verifier-fit --ship`, or set AGENT_VERIFIER"
        )
    return load_weights(path)
