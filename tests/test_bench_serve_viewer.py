"""bench/serve.py (overhead, against the fake server) and bench/viewer.py (headless Chromium; skipped
without one) run and print their tables."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[None]:
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def _module(name: str) -> ModuleType:
    return __import__(name)


def test_serve_overhead_table(bench: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert _module("serve").main(["overhead", "--problems", "12", "--concurrency", "4"]) == 0
    out = capsys.readouterr().out
    assert "Serve overhead: 12 greedy solves" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("library", "agent.serve"))]
    assert [(r[0], r[1]) for r in rows] == [
        ("library", "1"),
        ("agent.serve", "1"),
        ("library", "4"),
        ("agent.serve", "4"),
    ]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium installed (apt install chromium)")
def test_viewer_table_and_screenshot(bench: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shot = tmp_path / "viewer.png"
    assert _module("viewer").main(["--nodes", "50", "300", "--repeat", "1", "--screenshot", str(shot)]) == 0
    out = capsys.readouterr().out
    assert "Tree viewer in headless Chromium" in out and '"rows": [[50,' in out
    assert shot.read_bytes().startswith(b"\x89PNG")
