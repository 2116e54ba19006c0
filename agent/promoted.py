"""The promoted policy of a self-improvement run, found from what a user points at.

``AGENT_POLICY_ADAPTER`` (or ``--policy-from``) accepts, in this order of checks:

- a run directory of ``python -m agent.improve`` (``runs/NAME``): its ``lineage.json`` names the
  adapter of the last promoted cycle;
- a cycle's fine-tuning directory (``runs/NAME/cycle_K/adapter``, with ``adapter.gguf`` and the PEFT
  folder ``adapter/``);
- a GGUF LoRA file (the embedded llama.cpp server applies it);
- a PEFT adapter folder (``adapter_config.json``; SGLang / vLLM load it, ``finetune.export`` merges it).

``resolve_policy_adapter`` reads only small files and raises ``ConfigError`` saying what to do when
the path holds none of these, or a run has promoted nothing yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError

__all__ = ["PromotedPolicy", "resolve_policy_adapter"]


@dataclass(frozen=True)
class PromotedPolicy:
    """One policy adapter in the forms the servers and the export take."""

    name: str  # the adapter's name on SGLang / vLLM (the cycle that made it, or the file's stem)
    gguf: Path | None  # GGUF LoRA for llama.cpp
    peft: Path | None  # PEFT adapter folder
    base: str | None  # the model it was fine-tuned from, when the training manifest says
    source: Path  # what was given
    cycle: int | None = None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "gguf": str(self.gguf) if self.gguf else None,
            "peft": str(self.peft) if self.peft else None,
            "base": self.base,
            "cycle": self.cycle,
            "from": str(self.source),
        }


def resolve_policy_adapter(value: str | Path) -> PromotedPolicy:
    """The adapter ``value`` points at (see the module docstring); ConfigError if none."""
    source = Path(value).expanduser()
    if not source.exists():
        raise ConfigError(
            f"policy adapter {str(source)!r} does not exist; give a run directory of python -m "
            "agent.improve (runs/NAME), a GGUF LoRA file or a PEFT adapter folder"
        )
    if (source / "lineage.json").is_file():
        return _from_run(source)
    name = source.stem if source.is_file() else source.name
    if name == "adapter" and source.parent.name.startswith("cycle_"):
        name = source.parent.name  # runs/NAME/cycle_K/adapter: the name the cycles served it under
    found = _from_path(source, name=name)
    if found is None:
        raise ConfigError(
            f"{source} is neither a run directory (no lineage.json), a GGUF LoRA (.gguf), a PEFT adapter "
            "folder (adapter_config.json) nor a cycle's fine-tuning folder (manifest.json + adapter/)"
        )
    return found


def _from_run(run: Path) -> PromotedPolicy:
    try:
        lineage = json.loads((run / "lineage.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {run / 'lineage.json'}: {exc}") from exc
    name, stored = lineage.get("adapter_name"), lineage.get("adapter_path")
    if not name or not stored:
        raise ConfigError(
            f"run {run} has not promoted a fine-tuned policy yet (lineage.json names no adapter); run more "
            "cycles, or leave the policy adapter unset to use the base model"
        )
    path = _locate(run, Path(stored))
    found = _from_path(path, name=str(name))
    if found is None:
        raise ConfigError(f"run {run} names adapter {stored}, which holds no GGUF LoRA or PEFT adapter")
    cycle = lineage.get("policy_cycle", lineage.get("cycle"))  # the cycle that trained the adapter
    return PromotedPolicy(found.name, found.gguf, found.peft, found.base, run, int(cycle) if cycle else None)


def _locate(run: Path, stored: Path) -> Path:
    """A path written by the run, relative to the directory the run was started in: found from
    there, or inside the run directory (a run moved or read from elsewhere)."""
    if stored.exists():
        return stored
    parts = stored.parts
    for i, part in enumerate(parts):
        if part.startswith("cycle_") and (candidate := run.joinpath(*parts[i:])).exists():
            return candidate
    raise ConfigError(f"the adapter {stored} named by {run / 'lineage.json'} is missing (moved or deleted?)")


def _from_path(path: Path, *, name: str) -> PromotedPolicy | None:
    """The adapter at ``path``, with its sibling forms from a fine-tuning folder's layout."""
    if path.is_file() and path.suffix == ".gguf":
        job = path.parent
        peft = job / "adapter" if (job / "adapter" / "adapter_config.json").is_file() else None
        return PromotedPolicy(name, path, peft, _base_of(job), path)
    if (path / "adapter_config.json").is_file():
        job = path.parent
        gguf = job / "adapter.gguf" if (job / "adapter.gguf").is_file() else None
        return PromotedPolicy(name, gguf, path, _base_of(job), path)
    if (path / "manifest.json").is_file() and (path / "adapter" / "adapter_config.json").is_file():
        gguf = path / "adapter.gguf" if (path / "adapter.gguf").is_file() else None
        return PromotedPolicy(name, gguf, path / "adapter", _base_of(path), path)
    return None


def _base_of(job: Path) -> str | None:
    """The base model named by a fine-tuning job's manifest (``python -m finetune.sft``)."""
    try:
        base = json.loads((job / "manifest.json").read_text()).get("base")
    except (OSError, ValueError):
        return None
    return str(base) if base else None
