"""What the real-server benchmarks (prefix_reuse, throughput, quality) share.

- ``embedded_bench``: starts the embedded llama.cpp server on the bundled model (one at a time; it is
  always stopped on exit), and yields a policy ``Endpoint`` whose backend is a ``RecordingBackend``
  around ``LlamaCppBackend``, after one warm-up burst.
- ``RecordingBackend``: implements the ``Backend`` protocol around any inner backend and records every
  call that reached it: prompt, ``n``, sampling, the completions' texts, usage, start and end times,
  and the tag of the caller (``run_tag``, a context variable each benchmark sets per problem). It sits
  inside the ``Endpoint``, so a retried request is recorded once per attempt, as the server saw it.
- ``CpuSnapshot``: CPU seconds used by the machine (``/proc/stat``), by this process and by the
  server process; the difference over a run is how much other processes took. On a small machine
  llama.cpp's busy-polling threads slow down by an order of magnitude when they lose a core, so every
  table says how busy the rest of the machine was.
- ``print_table``: a plain-text table with a note under it saying what "ideal" means.
- ``wilson_interval``: the 95% (Wilson score) confidence interval of an accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from rich import box
from rich.console import Console
from rich.table import Table

from agent.cli import configure_logging
from agent.clients import Backend, CompletionResult, Endpoint, LlamaCppBackend, Sampling, Usage
from agent.prompts import PromptFormat, get_format
from agent.runtime import Policy
from agent.stats import wilson_interval
from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

__all__ = [
    "Bench",
    "Call",
    "CpuSnapshot",
    "RecordingBackend",
    "add_server_args",
    "embedded_bench",
    "load_average",
    "print_table",
    "process_cpu_seconds",
    "run_tag",
    "wilson_interval",
]

run_tag: ContextVar[str | None] = ContextVar("bench_run_tag", default=None)
"""Set inside a task (for example to a problem id); every call made from that task is tagged with it."""


@dataclass
class Call:
    """One call that reached the inner backend."""

    prompt: str
    n: int
    sampling: Sampling
    start: float  # time.perf_counter()
    end: float
    tag: str | None
    usage: Usage = field(default_factory=Usage)
    texts: tuple[str, ...] = ()
    finish_reasons: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class RecordingBackend:
    """A ``Backend`` that forwards to ``inner`` and records every call in ``calls``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.dialect = inner.dialect
        self.calls: list[Call] = []

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        start = time.perf_counter()
        tag = run_tag.get()
        try:
            result = await self.inner.complete(prompt, sampling, n=n)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(prompt, n, sampling, start, time.perf_counter(), tag, error=error))
            raise
        self.calls.append(
            Call(
                prompt,
                n,
                sampling,
                start,
                time.perf_counter(),
                tag,
                usage=result.usage,
                texts=tuple(c.text for c in result.completions),
                finish_reasons=tuple(c.finish_reason for c in result.completions),
            )
        )
        return result

    async def health(self) -> None:
        await self.inner.health()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def clear(self) -> None:
        self.calls.clear()

    def between(self, start: float, end: float) -> list[Call]:
        """Calls that started at or after ``start`` and ended at or before ``end``."""
        return [c for c in self.calls if c.start >= start and c.end <= end]


@dataclass
class Bench:
    """A running embedded server and the recorded policy endpoint that talks to it."""

    endpoint: Endpoint
    recorder: RecordingBackend
    fmt: PromptFormat
    server: EmbeddedServer
    parallel: int
    threads: int
    in_flight: int = 0  # the client's limiter (0: parallel)
    pinned: bool = False  # slot affinity
    extras: tuple[str, ...] = ()  # other server or client options, for the table's title

    @property
    def policy(self) -> Policy:
        return Policy(endpoint=self.endpoint, fmt=self.fmt, embedded=True)

    def describe(self) -> str:
        return (
            f"embedded llama.cpp, bundled SmolLM2-135M-Instruct, {self.parallel} slots, "
            f"{self.threads} threads, {self.in_flight or self.parallel} requests in flight"
            + (", slot affinity" if self.pinned else "")
            + "".join(f", {extra}" for extra in self.extras)
        )


def add_server_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedded server")
    group.add_argument("--parallel", type=int, default=8, help="server slots (8)")
    group.add_argument(
        "--in-flight", type=int, help="requests in flight at most (the client's limiter; default: --parallel)"
    )
    group.add_argument(
        "--pin-slots", action="store_true", help="slot affinity: each problem's requests name one server slot"
    )
    group.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="server threads (default: all cores)"
    )
    group.add_argument("--ctx-per-slot", type=int, default=2048, help="context per slot (2048)")
    group.add_argument(
        "--adaptive",
        action="store_true",
        help="the client's limit follows the server's load signals, up to --in-flight (agent.clients.load)",
    )
    group.add_argument(
        "--server-queue", type=int, help="with --adaptive: requests allowed to wait at the server"
    )
    group.add_argument("--cache-reuse", type=int, default=0, help="llama.cpp cache_reuse chunk (0: off)")
    group.add_argument("--ram-cache-mib", type=int, help="host-RAM prompt cache, MiB (default: llama.cpp's)")
    group.add_argument("--server-log", type=Path, help="native server log (default: the cache's logs/)")
    group.add_argument("--timeout", type=float, default=600.0, help="seconds per request attempt (600)")


@asynccontextmanager
async def embedded_bench(args: argparse.Namespace, *, warm_up: bool = True) -> AsyncIterator[Bench]:
    """Start the embedded server, yield the recorded endpoint, stop the server on the way out."""
    configure_logging("warning")
    config = EmbeddedServerConfig(
        parallel=args.parallel,
        threads=args.threads,
        ctx_per_slot=args.ctx_per_slot,
        log_file=args.server_log,
        cache_reuse=args.cache_reuse,
        ram_cache_mib=args.ram_cache_mib,
    )
    async with EmbeddedServer(config) as server:
        pin = args.parallel if args.pin_slots else 0
        backend = LlamaCppBackend(server.url, max_n=args.parallel, timeout=args.timeout, pin_slots=pin)
        recorder = RecordingBackend(backend)
        in_flight = args.in_flight or args.parallel
        async with (
            Endpoint(recorder, max_concurrency=in_flight, timeout=args.timeout) as endpoint,
            AsyncExitStack() as stack,
        ):
            if args.adaptive:
                await stack.enter_async_context(endpoint.governed(queue=args.server_queue))
            bench = Bench(
                endpoint=endpoint,
                recorder=recorder,
                fmt=get_format(server.prompt_format),
                server=server,
                parallel=args.parallel,
                threads=args.threads,
                in_flight=in_flight,
                pinned=bool(pin),
                extras=tuple(
                    label
                    for label, on in (
                        (f"adaptive (server queue {args.server_queue or 'default'})", args.adaptive),
                        (f"cache_reuse {args.cache_reuse}", args.cache_reuse),
                        (f"RAM cache {args.ram_cache_mib} MiB", args.ram_cache_mib is not None),
                    )
                    if on
                ),
            )
            await endpoint.health()
            if warm_up:
                await burst(bench, "Say hello.", max_tokens=16)
                recorder.clear()
            yield bench


async def burst(bench: Bench, question: str, *, max_tokens: int, seed: int = 0) -> list[Call]:
    """``parallel`` concurrent requests of one chat question (sampled, a different seed each)."""
    prompt = bench.fmt.render(instruction="You are a helpful assistant.", examples=(), question=question)
    before = len(bench.recorder.calls)

    async def one(i: int) -> None:
        sampling = Sampling(
            max_tokens=max_tokens, temperature=0.8, top_p=0.95, stop=bench.fmt.stop, seed=seed + i
        )
        await bench.endpoint.complete(prompt, sampling)

    async with anyio.create_task_group() as tg:
        for i in range(bench.parallel):
            tg.start_soon(one, i)
    return bench.recorder.calls[before:]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from ``/proc/<pid>/stat`` (Linux)."""
    after = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields from the state on
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far: by the whole machine, by this process, by the server process."""

    wall: float
    machine: float
    ours: float

    @staticmethod
    def take(server: EmbeddedServer | None = None) -> CpuSnapshot:
        tick = os.sysconf("SC_CLK_TCK")
        machine = 0.0
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
            values = [int(v) for v in fields[:8]]
            machine = (sum(values) - values[3] - values[4]) / tick
        except (OSError, ValueError, IndexError):
            pass
        times = os.times()
        ours = times.user + times.system
        process = server.process if server is not None else None
        if process is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                ours += process_cpu_seconds(process.popen.pid)
        return CpuSnapshot(time.perf_counter(), machine, ours)

    def ours_since(self, before: CpuSnapshot) -> float:
        """Cores used on average by this benchmark and its server since ``before``."""
        return (self.ours - before.ours) / max(self.wall - before.wall, 1e-9)

    def others_since(self, before: CpuSnapshot) -> float:
        """Cores used on average by every other process on the machine since ``before``."""
        busy = (self.machine - before.machine) - (self.ours - before.ours)
        return max(0.0, busy) / max(self.wall - before.wall, 1e-9)

    def since(self, before: CpuSnapshot) -> str:
        return (
            f"CPU over {self.wall - before.wall:.0f} s: this benchmark and its server "
            f"{self.ours_since(before):.2f} cores, other processes {self.others_since(before):.2f} cores "
            f"(of {os.cpu_count()})"
        )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    notes: Sequence[str] = (),
    console: Console | None = None,
) -> None:
    """The title (it may be long: it is not wrapped), a plain-text table, then one line per note."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    out = console or Console(width=200, highlight=False, emoji=False, markup=False)
    out.print(title, soft_wrap=True)
    out.print(table)
    for note in notes:
        out.print(note, soft_wrap=True)
    out.print()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
