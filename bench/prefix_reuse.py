"""Benchmark: how much of ηMCTS's prompt the real llama.cpp server takes from its prefix cache.

Runs MCTS (``solve_problem``, method ``mcts``) on generated arith problems against the embedded
llama.cpp server, through a ``RecordingBackend`` that records every request. Per problem (one
search tree) and in total it reports:

- requests, prompt tokens and cached tokens, as the server reported them (``timings.cache_n``);
- the ideal cached tokens: for each request, the longest prefix (in characters) its prompt shares
  with the prompt of any request sent before it (found with a sorted list of earlier prompts: the
  longest common prefix with a set is reached at a neighbour in sorted order), turned into tokens
  with that request's own characters per token (prompt characters / prompt tokens); a request with
  ``n`` > 1 completions adds (n - 1) x its prompt, which the server evaluates once;
- cached / ideal and cached / prompt, and how many requests got less than 90% of their ideal;
- a second ideal, "reachable": only requests that had *finished* before this one was sent count,
  with their prompt and their generated text (a child's prompt is its parent's prompt plus the
  option the parent generated; a slot holds both). The gap between the two ideals is what
  concurrency costs (a prompt being evaluated in another slot cannot be reused yet); the gap
  between the reachable ideal and the measured count is the server's slot policy.

llama.cpp keeps one cache per slot: a request reuses only the cache of the slot it lands on (the
server picks an idle slot by prompt similarity), so while other requests hold the best slot, or
after the slot has been reused for another prompt, the measured count falls below the ideal. A radix
cache (SGLang) would get close to the ideal.

    PYTHONPATH=. python bench/prefix_reuse.py --problems 6 --simulations 16
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from _common import (
    Bench,
    Call,
    CpuSnapshot,
    add_server_args,
    embedded_bench,
    load_average,
    print_table,
    run_tag,
)

from agent.cli import add_search_args, search_config
from agent.solvers import CRITICS, SolverConfig, solve_problem
from agent.tasks import Problem, Task, get_task, load_task_problems

__all__ = ["Ideal", "ideal_cached", "main"]


@dataclass
class Ideal:
    """Per request: tokens an ideal prefix cache would serve.

    ``prompts``: from the prompts of every request sent before it; ``reachable``: from the prompts and
    generated texts of the requests that had finished before it was sent.
    """

    prompts: float
    reachable: float


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class _PrefixSet:
    """Strings seen so far; the longest prefix a new string shares with any of them."""

    def __init__(self) -> None:
        self._sorted: list[str] = []

    def longest(self, s: str) -> int:
        i = bisect.bisect_left(self._sorted, s)
        best = 0
        for j in (i - 1, i):
            if 0 <= j < len(self._sorted):
                best = max(best, _common_prefix(s, self._sorted[j]))
        return best

    def add(self, s: str) -> None:
        i = bisect.bisect_left(self._sorted, s)
        if i == len(self._sorted) or self._sorted[i] != s:
            self._sorted.insert(i, s)


def ideal_cached(calls: Sequence[Call]) -> list[Ideal]:
    """The ideal cached tokens of each successful call, in the order of ``calls``.

    A request that repeats an earlier prompt exactly counts the whole prompt as cacheable (the
    server re-evaluates at least the last token, a difference of one token).
    """
    order = sorted(range(len(calls)), key=lambda i: calls[i].start)
    by_end = [(calls[i].end, i) for i in range(len(calls)) if calls[i].ok]
    heapq.heapify(by_end)
    prompts, finished = _PrefixSet(), _PrefixSet()
    result: list[Ideal] = [Ideal(0.0, 0.0)] * len(calls)
    for i in order:
        call = calls[i]
        while by_end and by_end[0][0] <= call.start:
            _, j = heapq.heappop(by_end)
            finished.add(calls[j].prompt)
            for text in calls[j].texts:
                finished.add(calls[j].prompt + text)
        if call.ok and call.usage.prompt_tokens > 0:
            per_prompt = call.usage.prompt_tokens / call.n  # tokens of one copy of the prompt
            chars_per_token = max(len(call.prompt), 1) / per_prompt
            repeats = (call.n - 1) * per_prompt
            result[i] = Ideal(
                prompts=min(per_prompt, prompts.longest(call.prompt) / chars_per_token) + repeats,
                reachable=min(per_prompt, finished.longest(call.prompt) / chars_per_token) + repeats,
            )
        prompts.add(call.prompt)
    return result


async def _run(args: argparse.Namespace) -> None:
    task = get_task("arith")
    problems = load_task_problems("arith", limit=args.problems, seed=args.seed, split=args.split)
    config = SolverConfig(method="mcts", search=search_config(args), critics=args.critics)
    load_before = load_average()
    async with embedded_bench(args) as bench:
        cpu = CpuSnapshot.take(bench.server)
        await _solve_all(bench, problems, config, task, concurrency=args.concurrency)
        cpu_line = CpuSnapshot.take(bench.server).since(cpu)
        wall = time.perf_counter() - cpu.wall
        calls = list(bench.recorder.calls)
        describe = bench.describe()
    machine = f"{cpu_line}; load average before {load_before}"
    _report(args, calls, [p.id for p in problems], wall, describe, machine)


async def _solve_all(
    bench: Bench, problems: list[Problem], config: SolverConfig, task: Task, *, concurrency: int
) -> None:
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(problem: Problem) -> None:
        async with limiter:
            run_tag.set(problem.id)
            await solve_problem(problem, policy=bench.endpoint, task=task, fmt=bench.fmt, config=config)

    async with anyio.create_task_group() as tg:
        for problem in problems:
            tg.start_soon(one, problem)


def _report(
    args: argparse.Namespace,
    calls: list[Call],
    order: list[str],
    wall: float,
    describe: str,
    machine: str,
) -> None:
    ideals = ideal_cached(calls)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, call in enumerate(calls):
        if call.ok:
            groups[call.tag or "?"].append(i)
    failed = sum(not c.ok for c in calls)
    columns = [
        "problem",
        "requests",
        "prompt tok",
        "cached tok",
        "ideal cached",
        "cached/ideal",
        "cached/prompt",
        "ideal/prompt",
        "<90% of ideal",
        "reachable ideal",
        "cached/reachable",
    ]
    rows = []
    for tag in [*order, *sorted(set(groups) - set(order))]:
        if tag in groups:
            rows.append(_row(tag, [calls[i] for i in groups[tag]], [ideals[i] for i in groups[tag]]))
    ok = [i for i, c in enumerate(calls) if c.ok]
    rows.append(_row("total", [calls[i] for i in ok], [ideals[i] for i in ok]))
    print_table(
        f"Prefix reuse during MCTS: {args.problems} arith problems (seed {args.seed}, {args.split}), "
        f"{args.simulations} simulations, preset {args.preset}, critics {args.critics}, "
        f"{args.concurrency} tree(s) at a time; {describe}",
        columns,
        rows,
        notes=[
            "ideal = for each request, the longest prefix its prompt shares with any earlier request's "
            "prompt, in tokens at that request's own chars/token, plus (n-1) x prompt for n>1 requests; "
            "a perfect prefix cache (e.g. a radix tree holding every earlier prompt) reaches 100% "
            "cached/ideal.",
            "reachable ideal = the same from requests that had finished before this one was sent, with "
            "their generated text (a child's prompt extends its parent's prompt + option; slots keep "
            "generated tokens); ideal - reachable is what concurrency costs, reachable - cached the "
            "slot policy.",
            "llama.cpp caches per slot: a request only reuses the cache of the slot it lands on, so "
            "measured cached tokens can be below the ideal (busy or overwritten slots); "
            "'<90% of ideal' counts those requests.",
            f"wall {wall:.1f} s; failed requests {failed}; {machine}, after {load_average()}.",
        ],
    )


def _row(tag: str, calls: list[Call], ideals: list[Ideal]) -> list[object]:
    requests = sum(c.usage.requests for c in calls)
    prompt = sum(c.usage.prompt_tokens for c in calls)
    cached = sum(c.usage.cached_tokens for c in calls)
    ideal = sum(x.prompts for x in ideals)
    reachable = sum(x.reachable for x in ideals)
    below = sum(c.usage.cached_tokens < 0.9 * x.prompts for c, x in zip(calls, ideals, strict=True))
    return [
        tag,
        requests,
        prompt,
        cached,
        round(ideal),
        _pct(cached, ideal),
        _pct(cached, prompt),
        _pct(ideal, prompt),
        below,
        round(reachable),
        _pct(cached, reachable),
    ]


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=6, help="generated arith problems (6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated problems (0)")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--critics", choices=CRITICS, default="arithmetic")
    parser.add_argument("--concurrency", type=int, default=1, help="trees searched at once (1)")
    add_search_args(parser)
    parser.set_defaults(simulations=16)
    add_server_args(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    anyio.run(_run, args)


if __name__ == "__main__":
    main()
