"""Reliability in figures: server faults injected into real runs, and runs killed at random moments.

    # each fault (and all at once) through the fault proxy, agent.evaluate as a user runs it
    python bench/faults.py faults --upstream embedded --method greedy --limit 200
    python bench/faults.py faults --upstream fake --method mcts --limit 200 --rate 0.05
    # agent.evaluate killed (SIGKILL and SIGINT, alternately) at random moments and resumed
    python bench/faults.py crash --upstream embedded --method greedy --limit 200 --kills 20

``faults``: a clean run of the problems first (and a second clean run: the noise floor, since a
batching server need not be bitwise deterministic), then one run per fault in ``agent.fakes.faults``
and a ``mix`` of all of them, each a fresh ``python -m agent.evaluate`` process pointed at a
``FaultProxy`` in front of the upstream server. A run that stops (a fault that outlived the retry
layer) is rerun with the same command, as its error message says, until it finishes (at most
``--max-reruns``). Each row compares the run directory with the clean run's:

- finished / lost: problems recorded once / never recorded;
- corrupted: lines that do not parse or lack fields, duplicate ids, a torn line, a summary that
  does not match the results;
- wrong: records whose answer or grade differ from the clean run's; tokens differ: records whose
  recorded completion tokens differ (a retry counted twice would show here);
- stops: runs that ended in an error (each must be one ``error:`` line naming the endpoint, never a
  traceback); retries: requests the proxy saw beyond the clean run's; early: retries sooner than
  the ``Retry-After`` they were given; extra tokens: completion tokens the upstream generated beyond
  the clean run's (the cost of failed attempts); wall: total seconds over the clean run's.

``crash``: an uninterrupted run first, then the same run killed ``--kills`` times at seeded random
moments (SIGKILL and SIGINT alternately) and rerun after each, then let finish. After every kill it
checks that no server process started by the run is left and that ``results.jsonl`` holds only whole
lines (a torn last line is allowed: the next run truncates it); at the end, the finished run must
equal the uninterrupted one. ``--upstream embedded`` without ``--url`` lets agent.evaluate start
(and, when killed, lose) its own embedded server, so orphans are checked for real.

Upstreams: ``embedded`` (the bundled model on the embedded llama.cpp server) or ``fake`` (the fake
llama.cpp-dialect server as its own process: no model, deterministic, fast enough for ηMCTS on
hundreds of problems). ηMCTS runs use ``--workers 1`` so that a search does not depend on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.fakes.faults import FAULTS, FaultPlan, FaultProxy, ProxyStats
from servers.process import ManagedProcess, free_port

__all__ = ["Upstream", "check_run", "crash", "fault_rows", "main"]

ROOT = Path(__file__).resolve().parent.parent
_FIELDS = ("id", "answer", "gold", "correct", "covered", "tokens", "seconds")


class Upstream:
    """A model server process on a fixed port that the bench can kill (SIGKILL) and start again."""

    def __init__(self, kind: str, log_dir: Path, *, latency: float = 0.005) -> None:
        self.kind = kind
        self.port = free_port()
        self.log_file = log_dir / f"{kind}-server.log"
        self.latency = latency
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "fake":
            fake = [sys.executable, "-m", "agent.fakes.server", "--port", str(self.port)]
            return [*fake, "--latency", str(self.latency), "--slots", "8"]
        from servers.llamacpp import EmbeddedServerConfig
        from servers.models import ensure_bundled_model

        return EmbeddedServerConfig().command(model=ensure_bundled_model(), port=self.port)

    def start(self) -> None:
        self.process = ManagedProcess.start(
            self.command(), health_url=f"{self.url}/health", log_file=self.log_file, startup_timeout=300
        )

    def kill(self) -> None:
        if self.process is not None and self.process.running:
            os.killpg(self.process.popen.pid, signal.SIGKILL)
            self.process.popen.wait()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> Upstream:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- reading a run directory ---------------------------------------------------------------------


@dataclass
class RunCheck:
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrupted: int = 0
    problems: list[str] = field(default_factory=list)  # what is wrong, in words
    inconsistent: int = 0  # records that contradict themselves (see ``self_consistent``)


def self_consistent(records: dict[str, dict[str, Any]], method: str) -> list[str]:
    """Records that contradict themselves: a greedy answer that is not the answer its own solution
    states, or a grade that is not the grader's verdict on the recorded answer and gold. Unlike a
    comparison with a clean run, this holds on a server whose batching is not bitwise
    deterministic."""
    import anyio

    from agent.tasks import get_task
    from agent.tasks.answers import normalize_number
    from agent.tasks.grading import Grader

    task = get_task("arith")
    bad = []
    if method == "greedy":
        for rid, r in records.items():
            stated = task.extract_answer(r.get("solution") or "")
            if (normalize_number(stated) if stated is not None else None) != r["answer"]:
                bad.append(f"{rid}: answer {r['answer']!r} is not what its solution states ({stated!r})")
    ordered = list(records.values())

    async def grades() -> list[bool]:
        async with Grader() as grader:
            return await grader.grade_many((r["answer"], r["gold"]) for r in ordered)

    for r, verdict in zip(ordered, anyio.run(grades), strict=True):
        if bool(r["correct"]) != verdict:
            bad.append(f"{r['id']}: recorded correct={r['correct']}, the grader says {verdict}")
    return bad


def check_run(
    out: Path, *, torn_ok: bool = False, method: str | None = None, fields: tuple[str, ...] = _FIELDS
) -> RunCheck:
    """Every line of ``results.jsonl`` parsed and checked; duplicates and a torn line counted as
    corrupted (``torn_ok``: a torn last line is allowed, as right after a kill); the summary, if
    any, must match the records."""
    check = RunCheck()
    path = out / "results.jsonl"
    raw = path.read_bytes() if path.exists() else b""
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail and not torn_ok:
        check.corrupted += 1
        check.problems.append(f"torn last line ({len(tail)} bytes)")
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            missing = [k for k in fields if k not in record]
            if missing:
                raise ValueError(f"missing {missing}")
        except ValueError as exc:
            check.corrupted += 1
            check.problems.append(f"line {n}: {exc}")
            continue
        if record["id"] in check.records:
            check.corrupted += 1
            check.problems.append(f"line {n}: duplicate id {record['id']}")
        check.records[record["id"]] = record
    summary = out / "summary.json"
    if summary.exists() and not tail:
        try:
            data = json.loads(summary.read_text())
            if data["problems"] != len(check.records):
                counted = len(check.records)
                raise ValueError(f"summary counts {data['problems']} problems, results hold {counted}")
        except (ValueError, KeyError) as exc:
            check.corrupted += 1
            check.problems.append(f"summary.json: {exc}")
    if method is not None:
        inconsistent = self_consistent(check.records, method)
        check.inconsistent = len(inconsistent)
        check.problems += inconsistent
    return check


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["answer"], record["correct"])


def compare(run: RunCheck, reference: RunCheck) -> dict[str, int]:
    expected = set(reference.records)
    common = expected & set(run.records)

    def tokens(record: dict[str, Any]) -> int:
        return int(record["tokens"]["completion_tokens"])

    return {
        "finished": len(common),
        "lost": len(expected - set(run.records)),
        "corrupted": run.corrupted,
        "inconsistent": run.inconsistent,
        "wrong": sum(_key(run.records[i]) != _key(reference.records[i]) for i in common),
        "tokens_differ": sum(tokens(run.records[i]) != tokens(reference.records[i]) for i in common),
    }


# --- running agent.evaluate as a user does --------------------------------------------------------


def evaluate_command(args: argparse.Namespace, out: Path, url: str | None) -> list[str]:
    command = [sys.executable, "-m", "agent.evaluate", "--task", "arith", "--limit", str(args.limit)]
    command += ["--seed", str(args.problem_seed), "--method", args.method, "--out", str(out)]
    if url is not None:
        command += ["--url", url, "--backend", "llamacpp", "--prompt-format", "chatml"]
    if args.method == "mcts":
        command += ["--workers", "1", "--simulations", str(args.simulations)]
    return command


def _env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "AGENT_POLICY__TIMEOUT": str(args.timeout), "PYTHONPATH": str(ROOT)}


@dataclass
class Attempted:
    runs: int = 0
    stops: int = 0
    unclear: int = 0  # stops whose message was not one clear error (a traceback, or nothing)
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)


def run_until_done(args: argparse.Namespace, out: Path, url: str | None) -> Attempted:
    """Run agent.evaluate; while it stops with an error, rerun the same command (at most
    ``--max-reruns`` times)."""
    attempted = Attempted()
    for _ in range(args.max_reruns + 1):
        start = time.perf_counter()
        done = subprocess.run(
            evaluate_command(args, out, url), env=_env(args), capture_output=True, text=True, cwd=ROOT
        )
        attempted.wall += time.perf_counter() - start
        attempted.runs += 1
        if done.returncode == 0:
            return attempted
        attempted.stops += 1
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        if len(errors) != 1 or "Traceback" in done.stderr:
            attempted.unclear += 1
            attempted.errors.append(done.stderr[-2000:])
        else:
            attempted.errors.append(errors[0][:300])
    return attempted


def fault_plan(args: argparse.Namespace, faults: tuple[str, ...]) -> FaultPlan:
    """The schedule the flags describe; a slow answer is held one second past the attempt timeout."""
    return FaultPlan(
        faults,
        rate=args.rate,
        seed=args.seed,
        retry_after=args.retry_after,
        slow_seconds=args.timeout + 1.0,
        refuse_seconds=args.refuse_seconds,
        outage_rate=args.outage_rate,
    )


def fault_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    out_root = args.out / f"{args.upstream}-{args.method}"
    if out_root.exists():
        shutil.rmtree(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    names = ["clean", "clean-again", *args.faults, *(["mix"] if args.mix else [])]
    names = [n for n in names if n in ("clean", *args.rows)] if args.rows else names
    with Upstream(args.upstream, out_root) as upstream:
        reference: RunCheck | None = None
        base: dict[str, Any] = {}
        for name in names:
            faults = tuple(f for f in FAULTS if f in (args.faults if name == "mix" else (name,)))
            plan = fault_plan(args, faults)
            out = out_root / name
            shutil.rmtree(out, ignore_errors=True)
            log_path = out_root / f"{name}.faults.jsonl"
            log_path.unlink(missing_ok=True)
            with FaultProxy(upstream.url, plan, log_path=log_path, upstream_control=upstream) as proxy:
                attempted = run_until_done(args, out, proxy.url)
                stats = proxy.stats()
            check = check_run(out, method=args.method)
            if reference is None:
                reference = check
                base = {"requests": stats.requests, "tokens": stats.upstream_completion_tokens}
                base["wall"] = attempted.wall
            row = {"fault": name, **compare(check, reference), **_row_extra(attempted, stats, base)}
            row["details"] = check.problems[:5] + attempted.errors[:3]
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _row_extra(attempted: Attempted, stats: ProxyStats, base: dict[str, Any]) -> dict[str, Any]:
    return {
        "runs": attempted.runs,
        "stops": attempted.stops,
        "unclear_stops": attempted.unclear,
        "injected": sum(stats.faults.values()),
        "kills": stats.kills,
        "retries": stats.requests - base["requests"],
        "early_retries": stats.early_retries,
        "extra_tokens": stats.upstream_completion_tokens - base["tokens"],
        "wall_s": round(attempted.wall, 1),
        "wall_overhead": round(attempted.wall / base["wall"] - 1, 3) if base.get("wall") else 0.0,
    }


_COLUMNS = (
    ("fault", "fault"),
    ("finished", "finished"),
    ("lost", "lost"),
    ("corrupted", "corrupted"),
    ("inconsistent", "inconsistent"),
    ("wrong", "differ from clean"),
    ("tokens_differ", "tokens differ"),
    ("injected", "injected"),
    ("stops", "stops (reruns)"),
    ("unclear_stops", "unclear stops"),
    ("retries", "retries"),
    ("early_retries", "early (Retry-After)"),
    ("extra_tokens", "extra tokens"),
    ("wall_s", "wall s"),
    ("wall_overhead", "wall overhead"),
)


def _line(row: dict[str, Any]) -> str:
    return "  ".join(f"{label}={row[key]}" for key, label in _COLUMNS)


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    head = "| " + " | ".join(label for _, label in _COLUMNS) + " |"
    rule = "|" + "---|" * len(_COLUMNS)

    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:+.0%}" if key == "wall_overhead" else str(row[key])

    body = ["| " + " | ".join(cell(row, k) for k, _ in _COLUMNS) + " |" for row in rows]
    return "\n".join([f"### {title}", "", head, rule, *body, ""])


# --- crash and resume -----------------------------------------------------------------------------


def _children(parent: int, marker: bytes) -> list[tuple[int, list[bytes]]]:
    """Processes whose command line holds ``marker`` and ``--parent-pid <parent>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in a for a in argv) and b"--parent-pid" in argv:
            if argv[argv.index(b"--parent-pid") + 1] == str(parent).encode():
                found.append((int(entry.name), argv))
    return found


def crash(args: argparse.Namespace) -> dict[str, Any]:
    out_root = args.out / f"crash-{args.upstream}-{args.method}"
    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True)
    rng = random.Random(args.seed)
    upstream = Upstream("fake", out_root) if args.upstream == "fake" else None
    if upstream is not None:
        upstream.start()
    url = upstream.url if upstream is not None else None
    try:
        reference_out = out_root / "uninterrupted"
        start = time.perf_counter()
        with (out_root / "uninterrupted.stderr").open("w") as err:
            reference_run = subprocess.Popen(
                evaluate_command(args, reference_out, url),
                env=_env(args),
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=ROOT,
            )
        first_record = None  # seconds from start to the first finished problem (startup, model load)
        while reference_run.poll() is None:
            if first_record is None and _lines(reference_out / "results.jsonl") > 0:
                first_record = time.perf_counter() - start
            time.sleep(0.05)
        reference_wall = time.perf_counter() - start
        if reference_run.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed; see {out_root / 'uninterrupted.stderr'}")
        startup = first_record if first_record is not None else 0.5
        work = max(0.5, reference_wall - startup)
        reference = check_run(reference_out)
        out = out_root / "killed"
        kills: list[dict[str, Any]] = []
        orphans = torn_seen = unclear = 0
        tracebacks: list[str] = []
        for k in range(args.kills):
            sig = signal.SIGKILL if k % 2 == 0 else signal.SIGINT
            # One kill in five lands during startup (imports, model load, run.json, the first
            # requests); the others after it, each resumed run doing on average about half of
            # 1/kills of the work before it is killed, so that every kill finds work left and
            # the kills spread over the first half of the run or more.
            if rng.random() < 0.2:
                delay = rng.uniform(0.2, startup)
            else:
                delay = startup + rng.uniform(0.0, work / args.kills)
            log = out_root / f"kill-{k + 1}.stderr"
            with log.open("w") as err:  # the child keeps its own copy of the file
                process = subprocess.Popen(
                    evaluate_command(args, out, url),
                    env=_env(args),
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    cwd=ROOT,
                )
            try:
                process.wait(timeout=delay)
                finished_early = True
            except subprocess.TimeoutExpired:
                finished_early = False
                process.send_signal(sig)
            process.wait(timeout=120)
            stderr = log.read_text(errors="replace")
            if "Traceback" in stderr:
                unclear += 1
                tracebacks.append(stderr[-1500:])
            time.sleep(0.5)
            left = [pid for pid, _ in _children(process.pid, b"servers.llamacpp")]
            deadline = time.monotonic() + 15
            while left and time.monotonic() < deadline:  # a SIGKILLed parent's server exits on its own
                time.sleep(0.5)
                left = [pid for pid, _ in _children(process.pid, b"servers.llamacpp")]
            orphans += len(left)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            check = check_run(out, torn_ok=True)
            raw = (out / "results.jsonl").read_bytes() if (out / "results.jsonl").exists() else b""
            torn = bool(raw) and not raw.endswith(b"\n")
            torn_seen += torn
            kills.append(
                {
                    "signal": sig.name,
                    "at_s": round(delay, 2),
                    "finished_before": finished_early,
                    "exit": process.returncode,
                    "records": len(check.records),
                    "torn_line": torn,
                    "orphans": len(left),
                }
            )
            print(f"kill {k + 1}: {kills[-1]}", flush=True)
            if finished_early:
                break
        final = run_until_done(args, out, url)
        result = {
            "kills": kills,
            "orphans": orphans,
            "torn_lines_seen": torn_seen,
            "tracebacks": unclear + final.unclear,
            "traceback_examples": (tracebacks + final.errors)[:3],
            "final_stops": final.stops,
            **compare(check_run(out, method=args.method), reference),
            "duplicates_or_bad_lines": check_run(out).corrupted,
            "reference_wall_s": round(reference_wall, 1),
            "reference_first_record_s": round(startup, 1),
        }
    finally:
        if upstream is not None:
            upstream.stop()
    return result


# --- agent.improve killed in each of its phases ---------------------------------------------------

IMPROVE_PHASES = (
    "baseline-eval",
    "imagine",
    "search",
    "select",
    "fine-tune",
    "export",
    "swap",
    "evaluate",
    "promote",
)


def _age(pid: int) -> float:
    """Seconds since process ``pid`` started (0 if it is gone)."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _in_phase(phase: str, root: Path, pid: int, servers_seen: set[int]) -> bool:
    """Whether the agent.improve process ``pid`` writing ``root`` is now in ``phase``."""
    cycle = root / "cycle_1"
    sft = _children(pid, b"finetune.sft")
    if phase == "baseline-eval":
        return _lines(root / "baseline" / "eval" / "greedy" / "results.jsonl") > 0
    if phase == "imagine":  # after the baseline, before the prompts are written (all at once)
        started = (root / "baseline" / "eval" / "greedy" / "summary.json").exists()
        servers = _children(pid, b"servers")
        # the server has been up a while: this run is past its startup and asking for prompts
        return (
            started
            and not (cycle / "prompts" / "done.json").exists()
            and any(_age(s) > 8 for s, _ in servers)
        )
    if phase == "search":
        return (
            _lines(cycle / "search" / "results.jsonl") > 0 and not (cycle / "search" / "done.json").exists()
        )
    if phase == "select":
        return (cycle / "search" / "done.json").exists() and not (cycle / "data" / "done.json").exists()
    if phase == "fine-tune":
        return bool(sft)
    if phase == "export":  # the PEFT adapter is saved; the GGUF export follows in the same process
        return bool(sft) and (cycle / "adapter" / "adapter" / "adapter_model.safetensors").exists()
    if phase == "swap":  # a server with the new adapter is starting
        return any(
            b"--lora" in argv and spid not in servers_seen for spid, argv in _children(pid, b"servers")
        )
    if phase == "evaluate":
        return _lines(cycle / "eval" / "greedy" / "results.jsonl") > 0
    if phase == "promote":
        return (cycle / "decision.json").exists() and not (cycle / "manifest.json").exists()
    raise ValueError(phase)


def improve_command(args: argparse.Namespace, runs: Path) -> list[str]:
    command = [sys.executable, "-m", "agent.improve", "--name", "crash", "--runs", str(runs), "--cycles", "1"]
    command += ["--train-prompts", str(args.train_prompts), "--heldout", str(args.heldout)]
    command += ["--simulations", str(args.simulations), "--set", "max_depth=2", "--eval", "greedy"]
    command += ["--epochs", "1", "--max-steps", "8"]
    # keep every trace that reached an answer, so that every phase (fine-tune to promote) runs
    command += ["--no-correctness", "--gamma", "0", "--seed", str(args.seed)]
    return command


def _improve_state(root: Path) -> dict[str, Any]:
    """What a finished cycle left: problem sets, record integrity, lineage consistency."""
    cycle = root / "cycle_1"
    state: dict[str, Any] = {"problems": []}
    bad_json = 0
    for path in root.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            bad_json += 1
            state["problems"].append(f"{path}: not JSON")
    state["bad_json"] = bad_json
    results, corrupted = {}, 0
    for path in sorted(root.rglob("results.jsonl")):
        check = check_run(path.parent, fields=("id",))
        results[str(path.relative_to(root))] = sorted(check.records)
        corrupted += check.corrupted
        state["problems"] += [f"{path}: {p}" for p in check.problems]
    state["results"] = results
    state["corrupted"] = corrupted
    manifest = json.loads((cycle / "manifest.json").read_text())
    decision = (
        json.loads((cycle / "decision.json").read_text()) if (cycle / "decision.json").exists() else None
    )
    lineage = json.loads((root / "lineage.json").read_text()) if (root / "lineage.json").exists() else None
    consistent = True
    if lineage is not None:  # a promoted adapter: evaluated, decided, recorded
        consistent = (
            decision is not None
            and decision["promoted"]
            and manifest["promoted"]
            and lineage["eval"] == decision["evaluation"] == manifest["after"]
            and Path(lineage["adapter_path"]).is_file()
            and (cycle / "eval" / "greedy" / "summary.json").exists()
        )
    elif manifest["promoted"]:
        consistent = False
    state["lineage_consistent"] = consistent
    state["promoted"] = manifest["promoted"]
    state["kept"] = manifest["kept"]
    return state


def improve_crash(args: argparse.Namespace) -> dict[str, Any]:
    out_root = args.out / "crash-improve"
    reference_root = out_root / "uninterrupted"
    keep = args.keep_reference and (reference_root / "crash" / "cycle_1" / "manifest.json").exists()
    if keep:  # the same command's uninterrupted cycle from an earlier run of this benchmark
        shutil.rmtree(out_root / "killed", ignore_errors=True)
    else:
        shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True, exist_ok=True)
    env = _env(args)
    start = time.perf_counter()
    if not keep:
        done = subprocess.run(
            improve_command(args, reference_root), env=env, capture_output=True, text=True, cwd=ROOT
        )
        if done.returncode != 0:
            raise SystemExit(f"the uninterrupted cycle failed:\n{done.stderr[-3000:]}")
    reference_wall = time.perf_counter() - start
    reference = _improve_state(out_root / "uninterrupted" / "crash")
    runs = out_root / "killed"
    root = runs / "crash"
    kills: list[dict[str, Any]] = []
    orphans = tracebacks = 0
    for k, phase in enumerate(IMPROVE_PHASES):
        sig = signal.SIGKILL if k % 2 == 0 else signal.SIGINT
        log = out_root / f"kill-{k + 1}.stderr"
        with log.open("w") as err:  # the child keeps its own copy of the file
            process = subprocess.Popen(
                improve_command(args, runs), env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT
            )
        servers_seen = {spid for spid, _ in _children(process.pid, b"servers")}
        killed_in = None
        while process.poll() is None and killed_in is None:
            # this phase, or (a short phase missed between two polls) the first later one seen
            killed_in = next(
                (p for p in IMPROVE_PHASES[k:] if _in_phase(p, root, process.pid, servers_seen)), None
            )
            if killed_in is not None:
                process.send_signal(sig)
                break
            if not servers_seen:
                servers_seen = {spid for spid, _ in _children(process.pid, b"servers")}
            time.sleep(0.05)
        process.wait(timeout=300)
        if "Traceback" in log.read_text(errors="replace"):
            tracebacks += 1
        deadline = time.monotonic() + 20
        left = _children(process.pid, b"")
        while left and time.monotonic() < deadline:  # children notice a lost parent within a second
            time.sleep(0.5)
            left = _children(process.pid, b"")
        orphans += len(left)
        for pid, _ in left:
            os.kill(pid, signal.SIGKILL)
        kills.append(
            {
                "phase": phase,
                "killed_in": killed_in,
                "signal": sig.name,
                "exit": process.returncode,
                "orphans": len(left),
            }
        )
        print(f"improve kill: {kills[-1]}", flush=True)
    final = subprocess.run(improve_command(args, runs), env=env, capture_output=True, text=True, cwd=ROOT)
    state = _improve_state(root)
    same_sets = {
        name: ids == state["results"].get(name)
        for name, ids in reference["results"].items()
        if not name.startswith("cycle_1/prompts")
    }
    return {
        "kills": kills,
        "phases_hit": sorted({k["killed_in"] for k in kills if k["killed_in"]}),
        "orphans": orphans,
        "tracebacks": tracebacks + ("Traceback" in final.stderr),
        "final_exit": final.returncode,
        "corrupted": state["corrupted"],
        "bad_json": state["bad_json"],
        "lineage_consistent": state["lineage_consistent"],
        "same_problem_sets": same_sets,
        "promoted": [reference["promoted"], state["promoted"]],
        "kept": [reference["kept"], state["kept"]],
        "problems": state["problems"][:10],
        "reference_wall_s": round(reference_wall, 1),
    }


# --- agent.serve behind the proxy ----------------------------------------------------------------


def serve_faults(args: argparse.Namespace) -> dict[str, Any]:
    """``agent.serve`` with its model server behind the proxy: the same questions asked with no
    faults, with every fault mixed in, and with a server that keeps failing (then healed)."""
    import httpx

    from agent.tasks import load_task_problems

    out_root = args.out / f"serve-{args.upstream}"
    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True)
    questions = [p.question for p in load_task_problems("arith", split="test", limit=args.limit, seed=0)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    plan = fault_plan(args, FAULTS)
    with (
        Upstream(args.upstream, out_root) as upstream,
        FaultProxy(upstream.url, upstream_control=upstream) as proxy,
    ):
        command = [sys.executable, "-m", "agent.serve", "--url", proxy.url, "--backend", "llamacpp"]
        command += ["--prompt-format", "chatml", "--port", str(port)]
        env = {**_env(args), "AGENT_SERVE__MAX_CONCURRENT": "8", "AGENT_SERVE__MAX_QUEUE": "256"}
        server = ManagedProcess.start(
            command, env=env, health_url=f"{url}/health", log_file=out_root / "serve.log", startup_timeout=120
        )
        try:

            def ask_all(label: str) -> dict[str, Any]:
                import anyio

                replies: list[tuple[int, str | None, str]] = [(0, None, "")] * len(questions)

                async def main() -> None:
                    limit = anyio.CapacityLimiter(8)
                    async with httpx.AsyncClient(timeout=600) as client:

                        async def one(i: int) -> None:
                            async with limit:
                                body = {
                                    "model": "treeloop-greedy",
                                    "messages": [{"role": "user", "content": questions[i]}],
                                }
                                r = await client.post(f"{url}/v1/chat/completions", json=body)
                                data = r.json()
                                answer = (
                                    (data.get("treeloop") or {}).get("answer")
                                    if r.status_code == 200
                                    else None
                                )
                                message = (
                                    (data.get("error") or {}).get("message", "")
                                    if r.status_code != 200
                                    else ""
                                )
                                replies[i] = (r.status_code, answer, message)

                        async with anyio.create_task_group() as tg:
                            for i in range(len(questions)):
                                tg.start_soon(one, i)

                before = proxy.stats()
                started = time.perf_counter()
                anyio.run(main)
                after = proxy.stats()
                return {
                    "label": label,
                    "replies": replies,
                    "seconds": round(time.perf_counter() - started, 1),
                    "requests": after.requests - before.requests,
                    "injected": sum(after.faults.values()) - sum(before.faults.values()),
                }

            clean = ask_all("clean")
            proxy.plan = plan
            faulted = ask_all("mix")
            proxy.plan = FaultPlan(("http503",), rate=1.0)
            broken = ask_all("persistent 503")
            proxy.plan = FaultPlan()
            healed = ask_all("healed")
            alive = server.running and httpx.get(f"{url}/health").status_code == 200
        finally:
            server.stop()
    rows = []
    for run in (clean, faulted, broken, healed):
        statuses = [status for status, _, _ in run["replies"]]
        rows.append(
            {
                "run": run["label"],
                "requests": len(statuses),
                "ok": statuses.count(200),
                "errors": {str(code): statuses.count(code) for code in sorted(set(statuses)) if code != 200},
                "answers_differ_from_clean": sum(
                    a[1] != b[1] for a, b in zip(run["replies"], clean["replies"], strict=True) if a[0] == 200
                ),
                "error_names_endpoint": all(proxy.url in m for s, _, m in run["replies"] if s != 200),
                "model_requests": run["requests"],
                "injected": run["injected"],
                "seconds": run["seconds"],
            }
        )
    return {"rows": rows, "server_alive_after": alive}


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/faults.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("faults", "crash", "improve", "serve"):
        p = sub.add_parser(mode)
        p.add_argument("--upstream", choices=("embedded", "fake"), default="fake")
        p.add_argument("--method", choices=("greedy", "mcts"), default="greedy")
        p.add_argument("--limit", type=int, default=200, help="generated test problems")
        p.add_argument("--problem-seed", type=int, default=0)
        p.add_argument("--simulations", type=int, default=16, help="mcts simulations per problem")
        p.add_argument("--timeout", type=float, default=20.0, help="AGENT_POLICY__TIMEOUT (s)")
        p.add_argument("--seed", type=int, default=0, help="seed of the fault schedule / kill moments")
        p.add_argument("--max-reruns", type=int, default=20)
        p.add_argument("--out", type=Path, default=Path("runs/bench/faults"))
    for mode in ("faults", "serve"):
        p = sub.choices[mode]
        p.add_argument("--rate", type=float, default=0.1, help="share of requests faulted")
        p.add_argument("--outage-rate", type=float, default=0.01, help="share of requests starting an outage")
        p.add_argument("--retry-after", type=float, default=2.0, help="seconds in the 429 answers")
        p.add_argument("--refuse-seconds", type=float, default=1.0)
    faults = sub.choices["faults"]
    faults.add_argument("--faults", nargs="*", default=list(FAULTS), choices=FAULTS)
    faults.add_argument("--no-mix", dest="mix", action="store_false", help="skip the all-at-once row")
    faults.add_argument(
        "--rows", nargs="*", help="run only these rows (and the clean run), e.g. clean-again mix"
    )
    sub.choices["crash"].add_argument("--kills", type=int, default=20)
    sub.choices["improve"].add_argument("--train-prompts", type=int, default=6)
    sub.choices["improve"].add_argument("--heldout", type=int, default=20)
    sub.choices["improve"].add_argument(
        "--keep-reference", action="store_true", help="reuse the uninterrupted cycle of an earlier run"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "faults":
        rows = fault_rows(args)
        title = (
            f"Faults: agent.evaluate --method {args.method} on {args.limit} generated problems, "
            f"{args.upstream} upstream, fault rate {args.rate} (outages {args.outage_rate}), seed {args.seed}"
        )
        text = markdown(rows, title)
        name = f"faults-{args.upstream}-{args.method}"
        (args.out / f"{name}.md").write_text(text)
        (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2))
        print(text)
        bad = [
            r["fault"] for r in rows if r["lost"] or r["corrupted"] or r["inconsistent"] or r["unclear_stops"]
        ]
    elif args.mode == "serve":
        result = serve_faults(args)
        (args.out / f"serve-{args.upstream}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        rows = {row["run"]: row for row in result["rows"]}
        lost = (
            rows["mix"]["ok"] != rows["mix"]["requests"] or rows["healed"]["ok"] != rows["healed"]["requests"]
        )
        bad = ["serve"] if lost or not result["server_alive_after"] else []
    elif args.mode == "improve":
        result = improve_crash(args)
        (args.out / "crash-improve.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        failed = result["orphans"] or result["corrupted"] or result["bad_json"] or result["final_exit"]
        bad = ["improve"] if failed or not result["lineage_consistent"] else []
    else:
        result = crash(args)
        name = f"crash-{args.upstream}-{args.method}"
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        summary = {k: v for k, v in result.items() if k != "kills"}
        print(json.dumps(summary, indent=2))
        failed = result["lost"] or result["corrupted"] or result["inconsistent"] or result["orphans"]
        bad = ["crash"] if failed else []
    if bad:
        print(f"rows with lost or corrupted results: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
