"""Engine overhead: CPU time of the search core and the async driver per LLM request.

The policy is an in-process fake with zero latency (``agent.fakes.FunctionBackend``), so all the CPU
time measured is treeloop's own: selection, expansion and backup in the pure core, the driver's
simulation loop and critic mixing, state merging by edit distance, and the endpoint layer (retry
loop, capacity limiter, per-attempt deadline). The fake's own cost (building its answers) is
measured separately and subtracted.

    python bench/engine_overhead.py --searches 64 --simulations 48 --concurrency 16
"""

from __future__ import annotations

import argparse
import time
import zlib

import anyio

from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.driver import SearchSetup, run_search
from agent.fakes.backend import FunctionBackend, FunctionCritic
from agent.merging import EditDistanceSimilarity
from agent.prompts import get_format
from agent.search.config import SearchConfig
from agent.search.tree import Tree
from agent.tasks import Problem, get_task


def fake_policy(prompt: str, sampling: Sampling, index: int) -> str:
    depth = prompt.rsplit("<|im_start|>assistant\n", 1)[1].count("\n")
    seed = zlib.crc32(f"{prompt[-200:]}{index}{sampling.temperature}".encode())
    if depth >= 3 and seed % 3 == 0:
        return f"The answer is {seed % 7}.\n"
    return f"Step {depth}: we add {seed % 50} and {seed % 13} to get {seed % 50 + seed % 13} items\n"


def core_only(simulations: int, trees: int) -> tuple[float, int]:
    """CPU seconds of select/expand/backup alone over ``trees`` trees, and the expansions done."""
    config = SearchConfig(simulations=simulations, max_simulations=simulations, max_depth=6)
    start = time.process_time()
    expansions = 0
    for _ in range(trees):
        expansions += _grow(Tree("q", config), simulations)
    return time.process_time() - start, expansions


def _grow(tree: Tree, simulations: int) -> int:
    expansions = 0
    while tree.simulations < simulations:
        ticket = tree.select()
        assert ticket is not None
        if ticket.kind == "revisit":
            tree.revisit(ticket)
            continue
        value = (zlib.crc32(str(len(tree.nodes)).encode()) % 100) / 100
        tree.expand(ticket, option=f"o{len(tree.nodes)}", value=value, terminal=value > 0.8, answer="1")
        expansions += 1
    return expansions


async def driver(args: argparse.Namespace) -> tuple[float, int, float]:
    backend = FunctionBackend(fake_policy)
    endpoint = Endpoint(backend, max_concurrency=args.concurrency * 4, retry=RetryPolicy(attempts=3))
    setup = SearchSetup(
        policy=endpoint,
        fmt=get_format("chatml"),
        task=get_task("gsm8k"),
        prm=FunctionCritic(lambda q, steps: 0.5 + 0.4 * (len(steps[-1]) % 2), role="prm"),
        orm=FunctionCritic(lambda q, steps: 0.8 if "3" in steps[-1] else 0.3, role="orm"),
        similarity=EditDistanceSimilarity(0.15),
    )
    config = SearchConfig(
        simulations=args.simulations, max_simulations=args.simulations, workers=args.workers, max_depth=6
    )
    limiter = anyio.CapacityLimiter(args.concurrency)
    question = "A shop sells 12 apples a day for 5 days and then 7 more. How many apples does it sell?"

    async def one(i: int) -> None:
        async with limiter:
            await run_search(Problem(id=f"p{i}", question=f"{question} ({i})"), setup=setup, config=config)

    start = time.process_time()
    async with anyio.create_task_group() as tg:
        for i in range(args.searches):
            tg.start_soon(one, i)
    cpu = time.process_time() - start

    # The fake's own share: replay the same prompts straight into it, without treeloop around it.
    sampling = Sampling(max_tokens=96, temperature=0.8, stop=("\n",))
    prompts = list(backend.prompts)
    replay = FunctionBackend(fake_policy)
    start = time.process_time()
    for prompt in prompts:
        await replay.complete(prompt, sampling)
    fake_cpu = time.process_time() - start
    return cpu, backend.calls, fake_cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", type=int, default=64)
    parser.add_argument("--simulations", type=int, default=48)
    parser.add_argument("--workers", type=int, default=4, help="simulations in flight per tree")
    parser.add_argument("--concurrency", type=int, default=16, help="trees in flight at once")
    args = parser.parse_args()

    core_cpu, expansions = core_only(args.simulations, args.searches)
    cpu, requests, fake_cpu = anyio.run(driver, args)
    own = cpu - fake_cpu
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'core: select+expand+backup per expansion':<44} {core_cpu / expansions * 1e3:>9.3f} ms")
    print(f"{'driver + core + endpoint, CPU per request':<44} {own / requests * 1e3:>9.3f} ms")
    print(f"{'  (fake policy CPU per request, subtracted)':<44} {fake_cpu / requests * 1e3:>9.3f} ms")
    print(f"{'requests':<44} {requests:>12}")
    print(f"{'searches x simulations':<44} {args.searches:>5} x {args.simulations:<5}")
    print("target: <= 0.5 ms of treeloop CPU per LLM request")


if __name__ == "__main__":
    main()
