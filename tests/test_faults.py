"""Server faults injected into real agent.evaluate runs (the short version of bench/faults.py): every
fault is survived with the same results as a clean run, a fault that outlives the retry layer stops
the run with one clear error, and a rerun finishes only what is missing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agent.clients import CompletionResult, Sampling, Usage
from agent.clients.endpoint import Guard, RetryPolicy
from agent.clients.wire import classify_status, retry_after_seconds
from agent.errors import EndpointGarbled, EndpointProtocolError, TransientEndpointError
from agent.evaluate import main as evaluate_main
from agent.fakes import FakeServer
from agent.fakes.faults import FAULTS, FaultPlan, FaultProxy, replay

BENCH = Path(__file__).resolve().parent.parent / "bench"
LIMIT = 8


class Restartable:
    """An in-process fake server the proxy's ``kill`` fault can kill and start again on its port."""

    def __init__(self) -> None:
        self.server = FakeServer(0.0, 8).start()
        self.port = self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = FakeServer(0.0, 8, port=self.port).start()


@pytest.fixture
def upstream() -> Iterator[Restartable]:
    server = Restartable()
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_RETRY__ATTEMPTS", "10")
    monkeypatch.setenv("AGENT_RETRY__INITIAL_WAIT", "0.05")
    monkeypatch.setenv("AGENT_RETRY__MAX_WAIT", "0.2")
    monkeypatch.setenv("AGENT_POLICY__TIMEOUT", "1")


def _evaluate(
    url: str, out: Path, *, limit: int = LIMIT, method: str = "greedy", backend: str = "llamacpp"
) -> int:
    argv = ["--url", url, "--backend", backend, "--task", "arith", "--limit", str(limit)]
    argv += ["--out", str(out), "--method", method, "--prompt", "house"]
    if method == "mcts":
        argv += ["--workers", "1", "--simulations", "6"]
    return evaluate_main(argv)


def _records(out: Path) -> dict[str, tuple[object, ...]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len({r["id"] for r in records}) == len(records), "duplicate records"
    return {r["id"]: (r["answer"], r["correct"], r["tokens"]["completion_tokens"]) for r in records}


def _plan(*faults: str, rate: float = 0.3) -> FaultPlan:
    return FaultPlan(faults, rate=rate, seed=3, retry_after=0.3, slow_seconds=1.5, refuse_seconds=0.2)


def test_the_schedule_is_seeded_and_logged(upstream: Restartable, tmp_path: Path) -> None:
    plan = _plan(*(f for f in FAULTS if f != "kill"))
    assert [plan.draw(i) for i in range(50)] == [plan.draw(i) for i in range(50)]
    other = FaultPlan(plan.faults, rate=0.3, seed=4)
    assert [plan.draw(i) for i in range(50)] != [other.draw(i) for i in range(50)]
    log = tmp_path / "faults.jsonl"
    with FaultProxy(upstream.url, plan, log_path=log) as proxy:
        assert _evaluate(proxy.url, tmp_path / "run") == 0
        injected = sum(proxy.stats().faults.values())
    schedule = replay(log)
    assert [i for i, _ in schedule] == list(range(len(schedule)))
    assert all(fault == plan.draw(i) for i, fault in schedule)  # bursts of 1: the draw alone decides
    assert sum(fault is not None for _, fault in schedule) == injected > 0


@pytest.mark.parametrize("fault", [*FAULTS, "mix"])
def test_every_fault_is_survived_with_the_clean_results(
    fault: str, upstream: Restartable, tmp_path: Path
) -> None:
    with FaultProxy(upstream.url) as clean:
        assert _evaluate(clean.url, tmp_path / "clean") == 0
        clean_tokens = clean.stats().upstream_completion_tokens
    faults = FAULTS if fault == "mix" else (fault,)
    with FaultProxy(upstream.url, _plan(*faults), upstream_control=upstream) as proxy:
        started = time.perf_counter()
        assert _evaluate(proxy.url, tmp_path / "faulted") == 0
        seconds = time.perf_counter() - started
        stats = proxy.stats()
    assert sum(stats.faults.values()) > 0
    assert stats.requests > LIMIT  # the faulted attempts were retried
    # Same answers, grades and token counts: a retried request's usage is counted once.
    assert _records(tmp_path / "faulted") == _records(tmp_path / "clean")
    summary = json.loads((tmp_path / "faulted" / "summary.json").read_text())
    assert summary["problems"] == LIMIT and summary["failed"] == 0
    assert stats.early_retries == 0  # Retry-After was waited for
    if fault == "http429":
        assert seconds >= 0.3
    if fault in ("truncate", "no_content", "bad_logprobs", "fewer"):
        assert stats.upstream_completion_tokens > clean_tokens  # what the garbled attempts cost


def test_the_openai_dialect_survives_every_fault_too(upstream: Restartable, tmp_path: Path) -> None:
    with FaultProxy(upstream.url) as clean:
        assert _evaluate(clean.url, tmp_path / "clean", backend="openai") == 0
    with FaultProxy(upstream.url, _plan(*FAULTS), upstream_control=upstream) as proxy:
        assert _evaluate(proxy.url, tmp_path / "faulted", backend="openai") == 0
        assert sum(proxy.stats().faults.values()) > 0
    assert _records(tmp_path / "faulted") == _records(tmp_path / "clean")


def test_mcts_survives_the_mix_with_the_clean_trees(upstream: Restartable, tmp_path: Path) -> None:
    with FaultProxy(upstream.url) as clean:
        assert _evaluate(clean.url, tmp_path / "clean", limit=4, method="mcts") == 0
    plan = _plan(*FAULTS, rate=0.15)
    with FaultProxy(upstream.url, plan, upstream_control=upstream) as proxy:
        assert _evaluate(proxy.url, tmp_path / "faulted", limit=4, method="mcts") == 0
        assert sum(proxy.stats().faults.values()) > 0
    assert _records(tmp_path / "faulted") == _records(tmp_path / "clean")


def test_a_persistent_fault_stops_the_run_and_a_rerun_finishes_only_the_rest(
    upstream: Restartable, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_RETRY__ATTEMPTS", "3")
    out = tmp_path / "run"
    with FaultProxy(upstream.url) as clean:
        assert _evaluate(clean.url, tmp_path / "reference") == 0
        assert _evaluate(clean.url, out, limit=3) == 0
    capsys.readouterr()
    with FaultProxy(upstream.url, FaultPlan(("http503",), rate=1.0)) as broken:
        assert _evaluate(broken.url, out) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and broken.url in errors[0] and "503" in errors[0]
    assert f"3 of {LIMIT} problems are recorded" in err and "rerun the same command" in err
    assert "Traceback" not in err
    assert len(_records(out)) == 3  # nothing recorded was lost
    with FaultProxy(upstream.url) as healed:
        assert _evaluate(healed.url, out) == 0
        assert healed.stats().requests == LIMIT - 3  # only the missing problems
    assert _records(out) == _records(tmp_path / "reference")


def test_retry_after_is_read_in_both_forms_and_waited_for() -> None:
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    error = classify_status(429, "slow down", url="http://x", headers={"retry-after": "1.5"})
    assert isinstance(error, TransientEndpointError) and error.retry_after == 1.5

    calls: list[float] = []

    async def request() -> CompletionResult:
        calls.append(time.perf_counter())
        if len(calls) == 1:
            raise TransientEndpointError("busy", url="http://x", status=429, retry_after=0.4)
        return CompletionResult((), Usage())

    guard = Guard("http://x", retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02))
    anyio.run(guard.call, request)
    assert calls[1] - calls[0] >= 0.4

    capped = Guard("http://x", retry=RetryPolicy(attempts=2, initial_wait=0.01, max_retry_after=0.05))
    calls.clear()
    anyio.run(capped.call, request)
    assert calls[1] - calls[0] < 0.3  # a Retry-After longer than max_retry_after is cut


def test_a_garbled_answer_is_a_retryable_protocol_error() -> None:
    error = EndpointGarbled("cut", url="http://x")
    assert isinstance(error, TransientEndpointError) and isinstance(error, EndpointProtocolError)
    assert Sampling(max_tokens=1)  # (the clients raise it; each fault above exercises one path)


def test_the_bench_prints_its_table_and_crash_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        faults = __import__("faults")
        argv = ["faults", "--upstream", "fake", "--limit", "6", "--faults", "http503", "truncate"]
        argv += ["--timeout", "2", "--retry-after", "0.3", "--rate", "0.5", "--out", str(tmp_path)]
        assert faults.main(argv) == 0
        out = capsys.readouterr().out
        assert "| fault | finished | lost |" in out
        for name in ("clean", "clean-again", "http503", "truncate", "mix"):
            assert f"| {name} | 6 | 0 | 0 | 0 |" in out
        rows = json.loads((tmp_path / "faults-fake-greedy.json").read_text())
        assert rows[2]["injected"] > 0 and rows[2]["retries"] > 0
        argv = ["crash", "--upstream", "fake", "--limit", "12", "--kills", "3", "--out", str(tmp_path)]
        assert faults.main([*argv, "--timeout", "2"]) == 0
        result = json.loads((tmp_path / "crash-fake-greedy.json").read_text())
        assert (result["lost"], result["corrupted"], result["wrong"], result["orphans"]) == (0, 0, 0, 0)
        assert result["finished"] == 12 and result["tracebacks"] == 0
        assert len(result["kills"]) >= 1
    finally:
        sys.path.remove(str(BENCH))


def test_a_child_job_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """Training jobs and the embedded server watch their parent: SIGKILL the parent, no orphan."""
    import os
    import signal
    import subprocess

    # The parent passes its own pid, as agent.improve passes --parent-pid to finetune.sft.
    child = (
        "import time; from servers.process import exit_with_parent; "
        "exit_with_parent({pid}, poll=0.1); time.sleep(60)"
    )
    parent = (
        "import os, subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}.format(pid=os.getpid())]); "
        "print(c.pid, flush=True); time.sleep(60)"
    )
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=root)
    assert process.stdout is not None
    pid = int(process.stdout.readline())
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:  # reap it if it became ours; otherwise wait for init to
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        state = (
            Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
        )
        if state == "Z":
            break
        time.sleep(0.1)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or exited and not yet reaped


def test_agent_serve_behind_the_proxy_answers_through_faults_and_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The serving endpoint in the fault runs: every question answered as without faults, a model
    server that keeps failing gives 502s naming it, and the endpoint serves again once it heals."""
    sys.path.insert(0, str(BENCH))
    try:
        faults = __import__("faults")
        argv = ["serve", "--upstream", "fake", "--limit", "8", "--rate", "0.3", "--outage-rate", "0.05"]
        argv += ["--timeout", "2", "--retry-after", "0.3", "--refuse-seconds", "0.2", "--out", str(tmp_path)]
        assert faults.main(argv) == 0
        result = json.loads((tmp_path / "serve-fake.json").read_text())
    finally:
        sys.path.remove(str(BENCH))
    rows = {row["run"]: row for row in result["rows"]}
    assert rows["clean"]["ok"] == rows["mix"]["ok"] == rows["healed"]["ok"] == 8
    assert rows["mix"]["injected"] > 0 and rows["mix"]["answers_differ_from_clean"] == 0
    assert rows["persistent 503"]["errors"] == {"502": 8} and rows["persistent 503"]["error_names_endpoint"]
    assert rows["healed"]["answers_differ_from_clean"] == 0 and result["server_alive_after"]


@pytest.mark.parametrize("fault", ["truncate", "no_content", "bad_logprobs", "fewer"])
@pytest.mark.parametrize("backend", ["llamacpp", "openai"])
def test_garbled_answers_are_retried_in_each_dialect(backend: str, fault: str) -> None:
    from agent.clients import EndpointSettings, make_endpoint
    from agent.settings import RetrySettings

    async def run(url: str) -> list[int]:
        settings = EndpointSettings(url=url, backend=backend, timeout=5)  # type: ignore[arg-type]
        retry = RetrySettings(attempts=10, initial_wait=0.01, max_wait=0.02)
        async with make_endpoint(settings, retry=retry) as endpoint:
            counts = []
            for i in range(12):
                sampling = Sampling(max_tokens=8, logprobs=2 if i % 2 else None)
                result = await endpoint.complete(f"question {i}", sampling, n=1 + i % 3)
                counts.append(len(result.completions))
            return counts

    with FakeServer(0.0, 8) as server, FaultProxy(server.url, FaultPlan((fault,), rate=0.4, seed=1)) as proxy:
        counts = anyio.run(run, proxy.url)
        assert proxy.stats().faults[fault] > 0
    assert counts == [1 + i % 3 for i in range(12)]
