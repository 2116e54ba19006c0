"""Bad input to every command-line tool is a one-line error and exit status 2, never a traceback and
never a lost result; a full disk keeps what was written; API keys never reach what a run writes; the
servers the project starts listen on 127.0.0.1."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.evaluate import main as evaluate_main
from agent.fakes import FakeServer
from agent.fakes.faults import FaultPlan, FaultProxy
from agent.improve.__main__ import main as improve_main
from agent.serve import main as serve_main
from agent.solve import main as solve_main
from agent.trees import main as trees_main
from finetune.critics import main as critics_main
from finetune.sft import main as sft_main
from servers.llamacpp import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(0.0, 8) as fake:
        yield fake


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    (d / "list.jsonl").write_text("[1, 2]\n")
    (d / "truncated.jsonl").write_text('{"question": "q", "answer": "#### 3"}\n{"question": "q2", "answ')
    (d / "binary.jsonl").write_bytes(b"\x00\x01\xff\xfe binary")
    (d / "empty.jsonl").write_text("")
    (d / "a-file").write_text("not a directory")
    (d / "emptydir").mkdir()
    return d


def _cases(url: str, d: Path) -> list[tuple[str, Callable[[list[str]], int], list[str], str]]:
    """(name, tool, argv, a phrase the one-line error must contain)."""
    u = ["--url", url, "--backend", "llamacpp"]
    arith = [*u, "--task", "arith", "--limit", "2"]
    return [
        ("solve: empty question", solve_main, [*u, "  "], "empty"),
        ("solve: 100k characters", solve_main, [*u, "x" * 100_000 + "?"], "100,001 characters"),
        ("solve: binary", solve_main, [*u, "\x01\x02\x7f\x1b[31m"], "control character"),
        ("solve: NUL byte", solve_main, [*u, "What is 2\x00+2?"], "'\\x00'"),
        ("solve: invalid UTF-8", solve_main, [*u, "What is \udcff\udcfe 2+2?"], "not valid UTF-8"),
        ("solve: --n 0", solve_main, [*u, "--n", "0", "q?"], "--n"),
        ("solve: --n 10^9", solve_main, [*u, "--method", "sc", "--n", "1000000000", "q?"], "--n"),
        ("solve: --temperature -3", solve_main, [*u, "--temperature", "-3", "q?"], "--temperature"),
        ("solve: --max-tokens 0", solve_main, [*u, "--max-tokens", "0", "q?"], "--max-tokens"),
        (
            "solve: --simulations -1",
            solve_main,
            [*u, "--method", "mcts", "--simulations", "-1", "q?"],
            "simulations",
        ),
        ("solve: --set bogus", solve_main, [*u, "--method", "mcts", "--set", "nope", "q?"], "KEY=VALUE"),
        ("solve: unknown prompt", solve_main, [*u, "--prompt", "nope", "q?"], "nope"),
        (
            "evaluate: wrong schema",
            evaluate_main,
            [*u, "--task", "gsm8k", "--data", str(d / "list.jsonl")],
            "line 1",
        ),
        (
            "evaluate: truncated JSONL",
            evaluate_main,
            [*u, "--task", "gsm8k", "--data", str(d / "truncated.jsonl")],
            "line 2",
        ),
        (
            "evaluate: binary data",
            evaluate_main,
            [*u, "--task", "gsm8k", "--data", str(d / "binary.jsonl")],
            "utf-8",
        ),
        (
            "evaluate: empty data",
            evaluate_main,
            [*u, "--task", "gsm8k", "--data", str(d / "empty.jsonl")],
            "empty",
        ),
        (
            "evaluate: directory as data",
            evaluate_main,
            [*u, "--task", "gsm8k", "--data", str(d)],
            "directory",
        ),
        ("evaluate: --out is a file", evaluate_main, [*arith, "--out", str(d / "a-file")], "is a file"),
        (
            "evaluate: unwritable --out",
            evaluate_main,
            [*arith, "--out", "/proc/treeloop-out"],
            "/proc/treeloop-out",
        ),
        ("evaluate: --limit -5", evaluate_main, [*u, "--task", "arith", "--limit", "-5"], "--limit"),
        ("evaluate: --shard 3/2", evaluate_main, [*arith, "--shard", "3/2"], "--shard must be I/N"),
        ("evaluate: --shard half", evaluate_main, [*arith, "--shard", "half"], "--shard must be I/N"),
        ("evaluate: --concurrency 0", evaluate_main, [*arith, "--concurrency", "0"], "--concurrency"),
        ("evaluate: --total-tokens -1", evaluate_main, [*arith, "--total-tokens", "-1"], "--total-tokens"),
        ("trees: missing file", trees_main, ["view", str(d / "nope.json")], "does not exist"),
        ("trees: binary file", trees_main, ["view", str(d / "binary.jsonl")], "not a JSON tree"),
        ("trees: empty directory", trees_main, ["view", str(d / "emptydir")], "no .json trees"),
        ("improve: --cycles 0", improve_main, [*u, "--cycles", "0", "--runs", str(d / "runs")], "--cycles"),
        (
            "improve: --heldout -1",
            improve_main,
            [*u, "--heldout", "-1", "--runs", str(d / "runs")],
            "--heldout",
        ),
        (
            "improve: --every soon",
            improve_main,
            [*u, "--every", "soon", "--runs", str(d / "runs")],
            "--every",
        ),
        (
            "improve: unwritable --runs",
            improve_main,
            [*u, "--runs", "/proc/treeloop-runs"],
            "/proc/treeloop-runs",
        ),
        ("serve: --port 70000", serve_main, [*u, "--port", "70000"], "65535"),
        (
            "sft: missing data",
            sft_main,
            ["--data", str(d / "nope.jsonl"), "--out", str(d / "sft")],
            "nope.jsonl",
        ),
        ("sft: binary data", sft_main, ["--data", str(d / "binary.jsonl"), "--out", str(d / "sft")], "UTF-8"),
        (
            "critics: binary trajectories",
            critics_main,
            ["--trajectories", str(d / "binary.jsonl"), "--out", str(d / "cr")],
            "binary.jsonl",
        ),
        (
            "critics: no trajectories",
            critics_main,
            ["--trajectories", str(d), "--out", str(d / "cr")],
            "trajectories",
        ),
    ]


_NAMES = [case[0] for case in _cases("http://x", Path("/x"))]


@pytest.mark.parametrize("name", _NAMES)
def test_bad_input_is_one_clear_line_and_exit_2(
    name: str, server: FakeServer, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, tool, argv, phrase = next(c for c in _cases(server.url, files) if c[0] == name)
    code = tool(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and phrase in errors[0], err
    assert "Traceback" not in err


def test_a_full_disk_stops_with_one_error_and_keeps_what_was_written(
    server: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "agent.evaluate", "--url", server.url, "--backend", "llamacpp"]
    command += ["--task", "arith", "--limit", "40", "--out", str(out), "--prompt", "house"]

    def small_disk() -> None:  # the output "disk" holds 5,000 bytes per file
        resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, 5_000))

    full = subprocess.run(command, preexec_fn=small_disk, capture_output=True, text=True, cwd=ROOT)
    assert full.returncode == 2, full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0] and "results.jsonl" in errors[0]
    assert "Traceback" not in full.stderr
    kept = [json.loads(line) for line in (out / "results.jsonl").read_bytes().split(b"\n")[:-1]]
    assert 0 < len(kept) < 40  # whole lines survived; at most the last one is torn
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted({r["id"] for r in records}) and len(records) == 40
    assert {r["id"]: r["answer"] for r in kept}.items() <= {r["id"]: r["answer"] for r in records}.items()


SECRET = "sk-treeloop-do-not-leak-7f3a9c"


@pytest.mark.parametrize("backend", ["llamacpp", "openai"])
def test_an_api_key_never_reaches_what_a_run_writes(
    backend: str, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_POLICY__API_KEY", SECRET)
    monkeypatch.setenv("AGENT_RETRY__ATTEMPTS", "2")
    monkeypatch.setenv("AGENT_RETRY__INITIAL_WAIT", "0.01")
    env_command = [sys.executable, "-m", "agent.evaluate", "--backend", backend, "--task", "arith"]
    outputs = []
    # a good run (with mcts trees saved), then a run against a server that keeps failing
    with FaultProxy(server.url) as good, FaultProxy(server.url, FaultPlan(("http503",), rate=1.0)) as bad:
        for url, out, extra in (
            (
                good.url,
                tmp_path / "good",
                ["--method", "mcts", "--simulations", "4", "--save-trees", str(tmp_path / "t")],
            ),
            (bad.url, tmp_path / "bad", ["--log-level", "debug"]),
        ):
            done = subprocess.run(
                [*env_command, "--url", url, "--limit", "3", "--out", str(out), *extra],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            outputs += [done.stdout, done.stderr]
    assert "503" in outputs[-1]  # the failing run did report its error
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5
    assert all(SECRET not in text for text in written + outputs)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_servers_the_project_starts_listen_on_loopback_only(server: FakeServer, tmp_path: Path) -> None:
    from urllib.parse import urlparse

    with FaultProxy(server.url) as proxy:
        ports = {"fake server": urlparse(server.url).port, "fault proxy": urlparse(proxy.url).port}
        for name, port in ports.items():
            assert port is not None
            assert _listening_addresses(port) == {"0100007F"}, name  # 127.0.0.1, little-endian hex
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.serve",
            "--url",
            server.url,
            "--backend",
            "llamacpp",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        import time

        deadline = time.monotonic() + 60
        while not _listening_addresses(port) and time.monotonic() < deadline:
            assert serve.poll() is None, "agent.serve exited"
            time.sleep(0.2)
        assert _listening_addresses(port) == {"0100007F"}
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_the_embedded_server_listens_on_loopback_only(embedded_server: EmbeddedServer) -> None:
    from urllib.parse import urlparse

    port = urlparse(embedded_server.url).port
    assert port is not None and _listening_addresses(port) == {"0100007F"}
