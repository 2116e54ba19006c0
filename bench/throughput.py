"""Benchmark: generation throughput of ηMCTS against the server's own peak, on one embedded server.

In one run of the embedded llama.cpp server (bundled SmolLM2-135M-Instruct):

(a) Peak. K concurrent requests (K = the server's slots, default 8), each a long generation: the
    prompt asks for a numbered list of 200 animals, ``max_tokens`` 128, sampled with a different
    seed each. Our ``Sampling`` has no ``ignore_eos``, so a request may stop early; the table says
    how many reached the token cap. Several rounds, after one warm-up burst that is not counted;
    tokens/s = completion tokens / wall time of the round.
(b) MCTS. M arith problems searched concurrently (``solve_problem``, method ``mcts``, critics
    ``arithmetic`` by default, C trees at a time) through the same endpoint (K requests in flight at
    most); generation tokens/s = (policy + critic completion tokens) / wall of the whole batch.
(c) SC@n. The same M problems, self-consistency with ``--sc`` samples (8; 0 skips it), C problems
    at a time: the sampling baseline on the same server in the same run.

The table also shows what explains a gap: prompt tokens the server had to evaluate (not cached),
completion tokens per request (MCTS options are short, so per-request overhead weighs more), and the
mean number of requests in flight (sum of request durations / wall; at most K), and the cores used
by this benchmark with its server and by every other process during each phase.

    PYTHONPATH=. python bench/throughput.py --problems 8 --concurrency 8 --simulations 16
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import anyio
from _common import (
    Bench,
    Call,
    CpuSnapshot,
    add_server_args,
    burst,
    embedded_bench,
    load_average,
    print_table,
    run_tag,
)

from agent.cli import add_search_args, search_config
from agent.clients import Usage
from agent.solvers import CRITICS, Solution, SolverConfig, solve_problem
from agent.tasks import Problem, get_task, load_task_problems

__all__ = ["Phase", "main"]

LIST_QUESTION = (
    "Write a numbered list of 200 different animals, one per line, with a short description of each. "
    "Do not stop before you reach 200."
)


@dataclass
class Phase:
    """What one measured phase did."""

    name: str
    calls: list[Call]
    wall: float
    completion: int  # generated tokens counted for the throughput
    reached_cap: int | None = None  # peak rounds: completions that hit max_tokens
    ours: float = 0.0  # cores used by this benchmark and its server, on average
    others: float = 0.0  # cores used by every other process on the machine

    @property
    def usage(self) -> Usage:
        return sum((c.usage for c in self.calls), Usage())

    @property
    def tokens_per_second(self) -> float:
        return self.completion / self.wall if self.wall else 0.0

    @property
    def in_flight(self) -> float:
        return sum(c.end - c.start for c in self.calls) / self.wall if self.wall else 0.0


async def _peak(bench: Bench, *, rounds: int, max_tokens: int) -> list[Phase]:
    await burst(bench, LIST_QUESTION, max_tokens=max_tokens, seed=1000)  # warm-up, not counted
    phases = []
    for r in range(rounds):
        cpu = CpuSnapshot.take(bench.server)
        calls = await burst(bench, LIST_QUESTION, max_tokens=max_tokens, seed=r * bench.parallel)
        after = CpuSnapshot.take(bench.server)
        capped = sum(reason == "length" for c in calls for reason in c.finish_reasons)
        completion = sum(c.usage.completion_tokens for c in calls)
        phase = Phase(f"peak round {r + 1}", calls, after.wall - cpu.wall, completion, capped)
        phase.ours, phase.others = after.ours_since(cpu), after.others_since(cpu)
        phases.append(phase)
    return phases


async def _solve(
    bench: Bench, problems: list[Problem], config: SolverConfig, concurrency: int, name: str
) -> Phase:
    """The problems solved with ``config``, ``concurrency`` at a time; tokens/s over the batch."""
    task = get_task("arith")
    limiter = anyio.CapacityLimiter(concurrency)
    solutions: list[Solution] = []

    async def one(problem: Problem) -> None:
        async with limiter:
            run_tag.set(problem.id)
            solution = await solve_problem(
                problem, policy=bench.endpoint, task=task, fmt=bench.fmt, config=config
            )
            solutions.append(solution)

    before = len(bench.recorder.calls)
    cpu = CpuSnapshot.take(bench.server)
    async with anyio.create_task_group() as tg:
        for problem in problems:
            tg.start_soon(one, problem)
    after = CpuSnapshot.take(bench.server)
    completion = sum(s.usage.completion_tokens for s in solutions)  # policy and critics
    phase = Phase(name, bench.recorder.calls[before:], after.wall - cpu.wall, completion)
    phase.ours, phase.others = after.ours_since(cpu), after.others_since(cpu)
    return phase


async def _run(args: argparse.Namespace) -> None:
    problems = load_task_problems("arith", limit=args.problems, seed=args.seed, split=args.split)
    config = SolverConfig(method="mcts", search=search_config(args), critics=args.critics)
    load_before = load_average()
    async with embedded_bench(args) as bench:
        peak = await _peak(bench, rounds=args.rounds, max_tokens=args.max_tokens)
        load_between = load_average()
        mcts = await _solve(bench, problems, config, args.concurrency, "MCTS")
        sc = None
        if args.sc:
            sc_config = SolverConfig(method="sc", n=args.sc)
            sc = await _solve(bench, problems, sc_config, args.concurrency, f"SC@{args.sc}")
        describe = bench.describe()
        k = bench.parallel

    peak_wall = sum(p.wall for p in peak)
    peak_total = Phase(
        "peak, all rounds",
        [c for p in peak for c in p.calls],
        peak_wall,
        sum(p.completion for p in peak),
        sum(p.reached_cap or 0 for p in peak),
        ours=sum(p.ours * p.wall for p in peak) / peak_wall if peak_wall else 0.0,
        others=sum(p.others * p.wall for p in peak) / peak_wall if peak_wall else 0.0,
    )
    best = peak_total.tokens_per_second
    recorded_completion = mcts.usage.completion_tokens
    solved = [mcts, *([sc] if sc else [])]
    rows = [_row(p, best, len(problems)) for p in [*peak, peak_total, *solved]]
    versus = (
        [
            f"MCTS / {sc.name} completion tok/s = {mcts.tokens_per_second / sc.tokens_per_second:.2f}; "
            f"prompt tokens per problem {mcts.usage.prompt_tokens / len(problems):.0f} vs "
            f"{sc.usage.prompt_tokens / len(problems):.0f}."
        ]
        if sc and sc.tokens_per_second
        else []
    )
    print_table(
        f"Generation throughput: peak (K={k} concurrent, max_tokens {args.max_tokens}, {args.rounds} rounds) "
        f"vs MCTS ({args.problems} arith problems, {args.concurrency} trees at a time, {args.simulations} "
        f"simulations, preset {args.preset}, critics {args.critics}) and SC@{args.sc} on the same problems; "
        f"{describe}",
        [
            "phase",
            "requests",
            "completion tok",
            "hit cap",
            "prompt tok evaluated",
            "wall s",
            "gen tok/s",
            "% of peak",
            "mean in flight",
            "tok/request",
            "prompt tok/problem",
            "cached %",
            "median uncached tok/request",
            "our CPU",
            "others' CPU",
        ],
        rows,
        notes=[
            *versus,
            f"ideal = the peak row: MCTS generating as fast as {k} concurrent long generations "
            f"({best:.1f} tok/s here) would be 100% of peak.",
            "MCTS gen tok/s counts policy + critic completion tokens (SearchResult usage; "
            f"{mcts.completion} here, {recorded_completion} in the recorded requests); "
            "'prompt tok evaluated' = prompt tokens not served from the cache, work the peak rows barely do.",
            "median uncached tok/request: prompt tokens a request made the server evaluate, typically; "
            "a step that continues its parent in the same slot needs only the separator the parent "
            "sampled (stop strings are sampled, not decoded) and the tokens after it.",
            "hit cap = completions that ran to max_tokens (no ignore_eos: the rest stopped by themselves).",
            "our CPU / others' CPU = cores used on average by this benchmark and its server / by every "
            "other process on the machine (from /proc); others' CPU above ~0.1 means the numbers are "
            "disturbed (llama.cpp's busy-polling threads suffer badly when they lose a core).",
            f"load average: before {load_before}, after the peak rounds {load_between}, "
            f"after MCTS {load_average()}.",
        ],
    )


def _row(p: Phase, best: float, problems: int) -> list[object]:
    usage = p.usage
    requests = usage.requests
    return [
        p.name,
        requests,
        p.completion,
        p.reached_cap,
        usage.prompt_tokens - usage.cached_tokens,
        round(p.wall, 1),
        round(p.tokens_per_second, 1),
        f"{100 * p.tokens_per_second / best:.0f}%" if best else "-",
        round(p.in_flight, 2),
        round(usage.completion_tokens / requests, 1) if requests else None,
        "-" if p.name.startswith("peak") else round(usage.prompt_tokens / problems),
        f"{100 * usage.cached_ratio:.0f}",
        statistics.median(c.usage.prompt_tokens - c.usage.cached_tokens for c in p.calls)
        if p.calls
        else None,
        f"{p.ours:.2f}",
        f"{p.others:.2f}",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    peak = parser.add_argument_group("peak")
    peak.add_argument("--rounds", type=int, default=3, help="measured rounds of K requests (3)")
    peak.add_argument("--max-tokens", type=int, default=128, help="tokens per peak request (128)")
    mcts = parser.add_argument_group("mcts")
    mcts.add_argument("--problems", type=int, default=8, help="generated arith problems (8)")
    mcts.add_argument("--concurrency", type=int, default=8, help="trees searched at once (8)")
    mcts.add_argument("--critics", choices=CRITICS, default="arithmetic")
    mcts.add_argument("--sc", type=int, default=8, help="SC@n phase on the same problems (8; 0 skips it)")
    mcts.add_argument("--seed", type=int, default=0, help="seed of the generated problems (0)")
    mcts.add_argument("--split", choices=("train", "test"), default="test")
    add_search_args(parser)
    parser.set_defaults(simulations=16)
    add_server_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    anyio.run(_run, args)


if __name__ == "__main__":
    main()
