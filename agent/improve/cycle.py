"""One self-improvement cycle: imagine, search, select and filter, fine-tune, swap, evaluate, promote.

Each cycle writes ``runs/<name>/cycle_<k>/``; every step leaves its outputs and then a ``done.json``
(written last), so a rerun skips finished steps, and the searches and evaluations resume problem by
problem. The promotion decision is written (``decision.json``) before ``runs/<name>/lineage.json``
(the promoted adapter) is updated, and the cycle's ``manifest.json`` last of all: data -> adapter ->
evaluation -> decision, the lineage of the adapter. A cycle killed at any point resumes to the same
end state.

The policy is served by the embedded llama.cpp server (adapters are swapped by restarting it on its
port) or by SGLang / vLLM (adapters loaded at run time on every worker). Fine-tuning runs as a
separate process, ``python -m finetune.sft``, from the base model on all the data kept so far.

Critics stay fixed across cycles (the paper), or with ``refresh_critics`` the value, PRM and ORM
are retrained each cycle (``python -m finetune.critics --trajectories``) on every graded terminal
path of the search trees so far, served as adapters next to the policy's, and used (``trained``
critics) by the cycle's evaluation and every later search; with ``verifier`` critics the feature
verifier's weights are refitted instead (``python -m finetune.verifier --trajectories``) and the
searches keep scoring with it. A cycle's candidate is its policy
adapter together with its critics; both are promoted, or kept out, together, unless
``judge_apart``: then each is also evaluated with the other's current version, and the best part
that is not worse is promoted.

Data: ``arith`` generates its training and held-out splits. GSM8K and MATH take ``data`` (training
problems: a JSONL file or ``hf:owner/name``) and ``heldout_data`` (evaluation problems); each cycle
searches its own slice of the training problems, imagination is seeded from them, and no held-out
question is searched, imagined or trained on: a training set that shares a question with the
held-out set is refused (``ConfigError``) and an imagined near-duplicate of one is dropped.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import structlog

from agent.driver import SharedBudget
from agent.errors import ConfigError
from agent.evaluate import evaluate, save_tree
from agent.improve.curriculum import (
    CurriculumConfig,
    base_terminals,
    choose,
    cycle_levels,
    difficulty,
    more_terminals,
)
from agent.improve.imagine import ImagineConfig, imagine, mix
from agent.improve.promotion import CRITIC_FREE, judge_apart, promote
from agent.improve.select import Decision, FilterConfig, select_trajectory
from agent.improve.training import CRITIC_ROLES, VERIFIER, step_critics, step_train
from agent.runs import RunDir, write_json_atomic, write_lines_atomic
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.search.options import OptionRule
from agent.solvers import CriticsKind, SolverConfig, solve_with
from agent.stats import wilson_interval
from agent.tasks import Problem, get_task, load_task_problems
from agent.tasks.grading import Grader
from agent.trees import write_tree_page

__all__ = [
    "CRITIC_ROLES",
    "CycleConfig",
    "Served",
    "Swap",
    "check_data",
    "check_disjoint",
    "heldout_problems",
    "judge_apart",
    "promote",
    "real_prompts",
    "run_cycle",
    "training_prompts",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Served:
    """What the policy server should serve: the policy's adapter (None: the base model) and the
    critics' adapters by role (empty: the critics of ``CycleConfig.critics``), each (name, path)."""

    policy: tuple[str, Path] | None = None
    critics: dict[str, tuple[str, Path]] = field(default_factory=dict)


Swap = Callable[[Served], Awaitable[dict[str, str]]]
"""Serve ``Served`` and return how requests select each critic adapter (role -> reference)."""


@dataclass(frozen=True)
class CycleConfig:
    """Everything a run of cycles does (stored in each cycle's manifest)."""

    name: str = "loop"
    task: str = "arith"
    data: str | None = None  # training problems (JSONL or hf:owner/name); arith: generated
    heldout_data: str | None = None  # evaluation problems; arith: the generated test split
    prompt: str | None = None  # the task's prompt variant (agent.tasks.variants; None: its default)
    train_prompts: int = 40  # real training prompts per cycle (imagination seeds)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # which of them, by difficulty
    heldout: int = 40  # held-out test problems for evaluation
    synthetic_ratio: float = 0.5  # share of imagined prompts in the searched set
    seed: int = 0
    imagine: ImagineConfig = field(default_factory=ImagineConfig)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(simulations=16))
    critics: CriticsKind = "arithmetic"
    filter: FilterConfig = field(default_factory=FilterConfig)
    sft_epochs: int = 3
    sft_max_steps: int | None = None
    sft_lr: float = 2e-4
    # "base": each cycle trains a new LoRA from the base model on every trajectory kept so far (the
    # paper); "promoted": it continues the promoted policy adapter on this cycle's trajectories only.
    train_from: Literal["base", "promoted"] = "base"
    base: str | None = None  # the served model to fine-tune (GGUF, HF dir or hub id; None: bundled)
    refresh_critics: bool = False  # retrain value/PRM/ORM each cycle on the search trees' paths
    critic_steps: int = 40  # optimizer steps of the critic adapter when refreshing
    critic_synthetic_problems: int = 1000  # generated problems whose references and corruptions join the rows
    search_tokens: int | None = None  # one budget of policy completion tokens for a cycle's searches
    # Double a difficulty level's minimum terminals per tree (and its token cap) each cycle while
    # fewer than half of the previous cycle's trees of that level found the gold answer.
    more_terminals: bool = False
    # With refreshed critics: also evaluate the new policy with the current critics and the new
    # critics with the current policy, and promote the best part that is not worse (judge_apart).
    judge_apart: bool = False
    eval_methods: tuple[str, ...] = ("greedy", "mcts")
    concurrency: int = 8
    runs_dir: Path = Path("runs")

    @property
    def root(self) -> Path:
        return self.runs_dir / self.name


def _done(path: Path) -> dict[str, Any] | None:
    return _done_file(path / "done.json")


def _done_file(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _mark(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / "done.json", info)
    return info


def _write_problems(path: Path, problems: list[Problem]) -> None:
    lines = [
        json.dumps({"id": p.id, "question": p.question, "gold": p.gold, "meta": p.meta}) for p in problems
    ]
    write_lines_atomic(path, lines)


def _read_problems(path: Path) -> list[Problem]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        Problem(id=r["id"], question=r["question"], gold=r["gold"], meta=r.get("meta") or {}) for r in rows
    ]


# --- the data ----------------------------------------------------------------------------------


def check_data(cfg: CycleConfig) -> None:
    """ConfigError unless the task has its training and held-out problems, and they are disjoint."""
    if cfg.task == "arith":
        if cfg.data or cfg.heldout_data:
            raise ConfigError(
                "the arith task generates its problems; --data and --heldout-data are for gsm8k/math"
            )
        return
    if not cfg.data or not cfg.heldout_data:
        raise ConfigError(
            f"task {cfg.task!r} needs --data (training problems) and --heldout-data (evaluation problems): "
            "JSONL files in the official format or hf:owner/name, e.g. --data "
            "../shared/data/gsm8k/train.jsonl --heldout-data ../shared/data/gsm8k/test.jsonl"
        )
    check_disjoint(_training_pool(cfg.task, cfg.data, cfg.seed), heldout_problems(cfg))


def check_disjoint(train: list[Problem], heldout: list[Problem]) -> None:
    """ConfigError naming the shared questions when a training problem is also a held-out one."""
    held = {_key(p.question) for p in heldout}
    shared = [p.id for p in train if _key(p.question) in held]
    if shared:
        raise ConfigError(
            f"{len(shared)} training problems are also held-out problems ({', '.join(shared[:3])}); the "
            "held-out set must never be trained on: remove them from --data or choose another --heldout-data"
        )


def _key(question: str) -> str:
    return " ".join(question.lower().split())


@functools.lru_cache(maxsize=4)
def _training_pool(task: str, data: str, seed: int) -> list[Problem]:
    """The training problems in a fixed shuffled order (cycles take consecutive slices)."""
    pool = load_task_problems(task, data=data, split="train")
    random.Random(f"pool:{seed}").shuffle(pool)
    return pool


def training_prompts(k: int, cfg: CycleConfig) -> list[Problem]:
    """Cycle ``k``'s real training prompts (see ``real_prompts``)."""
    return real_prompts(k, cfg)[0]


def real_prompts(k: int, cfg: CycleConfig) -> tuple[list[Problem], dict[str, Any]]:
    """Cycle ``k``'s real training prompts and, with a curriculum, what chose them.

    Without a curriculum: generated ones (arith), or the k-th slice of the training problems
    (wrapping around once they are all used). With one (``agent.improve.curriculum``): drawn by
    difficulty from the cycle's generated problems or from the training problems not yet searched.
    """
    if cfg.task != "arith":
        check_data(cfg)
        assert cfg.data is not None
    if cfg.curriculum.kind == "steps":
        if cfg.task == "arith":  # the first train_prompts of these are the cycle's prompts without one
            pool = load_task_problems(
                cfg.task, split="train", limit=max(200, 10 * cfg.train_prompts), seed=cfg.seed + k
            )
        else:
            assert cfg.data is not None
            pool = _training_pool(cfg.task, cfg.data, cfg.seed)
        return choose(pool, cfg.train_prompts, root=cfg.root, k=k, config=cfg.curriculum)
    if cfg.task == "arith":
        return load_task_problems(cfg.task, split="train", limit=cfg.train_prompts, seed=cfg.seed + k), {}
    assert cfg.data is not None
    pool = _training_pool(cfg.task, cfg.data, cfg.seed)
    start = (k - 1) * cfg.train_prompts
    return [pool[(start + i) % len(pool)] for i in range(min(cfg.train_prompts, len(pool)))], {}


def heldout_problems(cfg: CycleConfig) -> list[Problem]:
    """The evaluation problems: the generated test split (arith) or the first of ``heldout_data``."""
    if cfg.task == "arith":
        return load_task_problems(cfg.task, split="test", limit=cfg.heldout, seed=cfg.seed)
    if not cfg.heldout_data:
        check_data(cfg)
    return load_task_problems(cfg.task, data=cfg.heldout_data, split="test", limit=cfg.heldout)


# --- the steps ---------------------------------------------------------------------------------


async def step_prompts(k: int, cfg: CycleConfig, policy: Policy, out: Path) -> list[Problem]:
    """Real training prompts plus validated imagined ones (rephrasings, backward questions)."""
    if await anyio.to_thread.run_sync(_done, out):
        return await anyio.to_thread.run_sync(_read_problems, out / "prompts.jsonl")
    started = time.perf_counter()
    heldout = await anyio.to_thread.run_sync(heldout_problems, cfg)
    real, chosen_by = await anyio.to_thread.run_sync(real_prompts, k, cfg)
    check_disjoint(real, heldout)
    held = [p.question for p in heldout]  # an imagined near-duplicate of one is dropped
    result = await imagine(real, policy=policy.endpoint, fmt=policy.fmt, config=cfg.imagine, existing=held)
    ratio = min(cfg.synthetic_ratio, len(result.problems) / max(1, len(real) + len(result.problems)))
    prompts = mix(real, result.problems, ratio=ratio, seed=cfg.seed + k)
    _write_problems(out / "prompts.jsonl", prompts)
    (out / "rejected.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in result.rejected))
    counts: dict[str, Any] = {"real": len(real), "imagined": len(result.problems), "used": len(prompts)}
    if chosen_by:
        counts["curriculum"] = chosen_by
    _mark(out, {**counts, **result.reasons(), "seconds": round(time.perf_counter() - started, 1)})
    return prompts


async def step_search(
    cfg: CycleConfig,
    policy: Policy,
    prompts: list[Problem],
    out: Path,
    *,
    critics: CriticsKind,
    terminals: dict[int, int] | None = None,
) -> list[Decision]:
    """ηMCTS on every prompt, then one trajectory per prompt, kept or dropped with the reason.

    Each record also lists every terminal path of the tree, graded (the critics' training data).
    ``terminals`` maps a difficulty level to its trees' minimum terminals (``more_terminals``);
    the token cap per tree grows in proportion.
    """
    run = RunDir(out)
    started = time.perf_counter()
    task = get_task(cfg.task, prompt=cfg.prompt)
    settings = {
        "task": cfg.task,
        "prompt": task.prompt.identity(),
        "data": "cycle prompts",
        "method": "mcts",
        "n": 1,
        "solver": asdict(cfg.search),
        "critics": critics,
    }
    records = await anyio.to_thread.run_sync(run.open, settings)
    done = {r["id"] for r in records}
    config = SolverConfig(method="mcts", search=cfg.search, critics=critics)
    limiter = anyio.CapacityLimiter(cfg.concurrency)

    def config_for(problem: Problem) -> SolverConfig:
        level = difficulty(problem)
        base = base_terminals(cfg.search.min_terminals)
        if not terminals or level not in terminals or terminals[level] <= base:
            return config
        search = cfg.search
        cap = search.max_tokens and round(search.max_tokens * terminals[level] / base)
        return replace(config, search=replace(search, min_terminals=terminals[level], max_tokens=cap))

    shared = None
    if cfg.search_tokens is not None:  # what finished searches spent counts against it on a resume
        spent = sum(r["tokens"]["completion_tokens"] for r in records)
        shared = SharedBudget(max_tokens=cfg.search_tokens, tokens=spent)

    async with Grader() as grader:

        async def one(problem: Problem) -> None:
            async with limiter:
                solution = await solve_with(
                    policy, problem, task=task, config=config_for(problem), shared=shared
                )
            assert solution.search is not None
            tree = solution.search.tree
            grades: dict[str, bool] = {}
            if problem.gold is not None:
                answers = sorted({n.answer for n in tree.terminals() if n.answer is not None})
                marks = await grader.grade_many((answer, problem.gold) for answer in answers)
                grades = dict(zip(answers, marks, strict=True))
            decision = select_trajectory(tree, problem_id=problem.id, grades=grades, config=cfg.filter)
            record = {"id": problem.id, "question": problem.question, **decision.as_dict()}
            record["tokens"] = solution.usage.as_dict()
            record["terminals"] = [
                {"steps": tree.steps(n.id), "answer": n.answer, "correct": grades.get(n.answer or "")}
                for n in tree.terminals()
            ]
            saved = {
                "id": problem.id,
                "gold": problem.gold,
                "answer": solution.answer,
                "chosen": solution.search.choice.node,
                **tree.to_dict(),
            }
            await anyio.to_thread.run_sync(save_tree, out / "trees", problem.id, saved)
            await anyio.to_thread.run_sync(run.append, record)
            records.append(record)

        async with anyio.create_task_group() as tg:
            for problem in prompts:
                if problem.id not in done:
                    tg.start_soon(one, problem)
    if (out / "trees").is_dir():  # one page to look at every tree of the cycle
        await write_tree_page(out / "trees", out / "trees.html")
    kept = sum(1 for r in records if r["kept"])
    reasons: dict[str, int] = {}
    for r in records:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    info: dict[str, Any] = {"searched": len(records), "kept": kept, "reasons": reasons}
    if terminals:
        info["min_terminals"] = {str(level): n for level, n in terminals.items()}
    info["seconds"] = round(time.perf_counter() - started, 1)  # this process's share, on a resume
    await anyio.to_thread.run_sync(_mark, out, info)
    return [_decision(r) for r in records]


def _decision(record: dict[str, Any]) -> Decision:
    fields = {k: record[k] for k in Decision.__dataclass_fields__ if k in record}
    fields["steps"] = tuple(fields.get("steps") or ())
    return Decision(**fields)


def _peft_dir(adapter: Path) -> Path:
    """The PEFT directory of a cycle's adapter (its GGUF lies beside it, named adapter.gguf)."""
    return adapter.parent / "adapter" if adapter.suffix == ".gguf" else adapter


def _this_cycle(data: Path, k: int, path: Path) -> tuple[Path, int]:
    """The rows of ``data`` kept in cycle ``k`` only, written to ``path``; and how many."""
    rows = [line for line in data.read_text().splitlines() if json.loads(line).get("cycle") == k]
    write_lines_atomic(path, rows)
    return path, len(rows)


def step_data(k: int, cfg: CycleConfig, policy: Policy, out: Path) -> Path:
    """All trajectories kept in cycles 1..k, as SFT examples: the policy's prompt, the solution."""
    path = out / "sft.jsonl"
    if _done(out):
        return path
    task, rule = get_task(cfg.task, prompt=cfg.prompt), OptionRule(cfg.search.option)
    lines = []
    for j in range(1, k + 1):
        results = cfg.root / f"cycle_{j}" / "search" / "results.jsonl"
        for line in results.read_text().splitlines():
            record = json.loads(line)
            if not record["kept"]:
                continue
            prompt = policy.fmt.render(
                instruction=task.instruction, examples=task.few_shot(), question=record["question"]
            )
            completion = _decision(record).completion(rule, policy.fmt.stop[0])
            lines.append(
                json.dumps({"id": record["id"], "cycle": j, "prompt": prompt, "completion": completion})
            )
    write_lines_atomic(path, lines)
    _mark(out, {"examples": len(lines)})
    return path


async def step_eval(
    cfg: CycleConfig, policy: Policy, out: Path, *, critics: CriticsKind
) -> dict[str, dict[str, Any]]:
    """Greedy and ηMCTS accuracy of the served policy on the held-out problems (resumable)."""
    task = get_task(cfg.task, prompt=cfg.prompt)
    problems = await anyio.to_thread.run_sync(heldout_problems, cfg)
    results = {}
    for method in cfg.eval_methods:
        config = SolverConfig(method=method, search=cfg.search, critics=critics)  # type: ignore[arg-type]
        started = time.perf_counter()
        summary = await evaluate(
            problems, task=task, policy=policy, config=config, out=out / method, concurrency=cfg.concurrency
        )
        solved = summary.correct
        tokens = summary.usage.prompt_tokens + summary.usage.completion_tokens
        results[method] = {
            "accuracy": summary.accuracy,
            "correct": summary.correct,
            "problems": summary.problems,
            # None when nothing was solved: there is no cost per solved problem to report.
            "tokens_per_solved": tokens / solved if solved else None,
            "completion_tokens_per_solved": summary.usage.completion_tokens / solved if solved else None,
            "interval": list(wilson_interval(summary.correct, summary.problems)),
            "by_steps": await anyio.to_thread.run_sync(_by_steps, problems, out / method / "results.jsonl"),
            "coverage": summary.coverage,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return results


def _by_steps(problems: list[Problem], results: Path) -> dict[str, list[int]]:
    """Right and total per number of solution steps (``meta["steps"]``: generated and GSM8K problems), as
    ``{"2": [right, total]}``; empty when the problems do not say."""
    steps = {p.id: p.meta.get("steps") for p in problems}
    table: dict[str, list[int]] = {}
    for line in results.read_text().splitlines() if results.exists() else []:
        record = json.loads(line)
        k = steps.get(record.get("id"))
        if k is not None:
            cell = table.setdefault(str(k), [0, 0])
            cell[0] += bool(record.get("correct"))
            cell[1] += 1
    return dict(sorted(table.items(), key=lambda item: int(item[0])))


async def _eval_parts(
    cfg: CycleConfig,
    policy: Policy,
    swap: Swap,
    candidate: Served,
    current: Served,
    evaluations: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]],
    out: Path,
) -> dict[str, tuple[Served, dict[str, dict[str, Any]]]]:
    """The new policy with the current critics, and the new critics with the current policy, each
    evaluated on the held-out problems with the methods that call critics; a critic-free method's
    result is the one of the same policy (``evaluations``: the new policy's with the new critics,
    the current policy's with the current critics)."""
    together, baseline = evaluations
    searched = tuple(m for m in cfg.eval_methods if m not in CRITIC_FREE)
    parts = {}
    for label, served, same_policy in (
        ("policy", Served(policy=candidate.policy, critics=current.critics), together),
        ("critics", Served(policy=current.policy, critics=candidate.critics), baseline),
    ):
        part_policy, part_kind = await _serve(swap, served, policy, cfg)
        evaluation = {m: same_policy[m] for m in cfg.eval_methods if m in CRITIC_FREE and m in same_policy}
        part_cfg = replace(cfg, eval_methods=searched)
        evaluation |= await step_eval(part_cfg, part_policy, out / f"eval-{label}", critics=part_kind)
        parts[label] = (served, evaluation)
    return parts


# --- the cycle ---------------------------------------------------------------------------------


async def run_cycle(k: int, cfg: CycleConfig, policy: Policy, swap: Swap) -> dict[str, Any]:
    """Run (or resume) cycle ``k``; returns its manifest."""
    out = cfg.root / f"cycle_{k}"
    manifest_path = anyio.Path(out / "manifest.json")
    if await manifest_path.exists():
        return json.loads(await manifest_path.read_text())
    structlog.contextvars.bind_contextvars(cycle=k)
    await anyio.to_thread.run_sync(check_data, cfg)
    # A cycle killed after its decision resumes from that decision, and from the lineage as it was
    # before it (lineage.json may already name this cycle's adapter).
    decided = await anyio.to_thread.run_sync(_done_file, out / "decision.json")
    lineage = decided["lineage_before"] if decided else await anyio.to_thread.run_sync(_lineage, cfg)
    current = _served(lineage)
    active, kind = await _serve(swap, current, policy, cfg)  # search with the current policy and critics
    baseline = (
        (decided or {}).get("baseline")
        or lineage.get("eval")
        or await step_eval(cfg, active, cfg.root / "baseline" / "eval", critics=kind)
    )

    prompts = await step_prompts(k, cfg, active, out / "prompts")
    terminals = None
    if cfg.more_terminals:
        base = base_terminals(cfg.search.min_terminals)
        terminals = await anyio.to_thread.run_sync(
            functools.partial(more_terminals, cfg.root, k, base=base, cap=cfg.search.max_simulations)
        )
    decisions = await step_search(cfg, active, prompts, out / "search", critics=kind, terminals=terminals)
    data = await anyio.to_thread.run_sync(step_data, k, cfg, active, out / "data")
    data_info = await anyio.to_thread.run_sync(_done, out / "data") or {}
    examples = data_info.get("examples", 0)
    trained: dict[str, Any] = {"files": {}}
    adapter = None
    init_adapter = None
    if cfg.train_from == "promoted" and current.policy is not None:
        init_adapter = _peft_dir(current.policy[1])
        data, examples = await anyio.to_thread.run_sync(
            _this_cycle, data, k, out / "data" / "sft-cycle.jsonl"
        )
    if examples:
        trained = await step_train(cfg, data, out / "adapter", init_adapter=init_adapter)
        adapter = out / "adapter" / ("adapter.gguf" if "gguf" in trained["files"] else "adapter")
    critics, critics_note = dict(current.critics), "critics fixed"  # (judged apart: see "judged")
    if cfg.refresh_critics:
        refreshed = await step_critics(k, cfg, out / "critics")
        if isinstance(refreshed, str):
            critics_note = refreshed
        else:
            critics, critics_note = refreshed, "critics retrained"
    candidate = Served(policy=(f"cycle_{k}", adapter) if adapter else current.policy, critics=critics)
    judged = None
    if candidate == current:
        evaluation, promoted, why = baseline, False, "no trajectory to train on: nothing to fine-tune"
    elif decided:
        evaluation, promoted, why = decided["evaluation"], decided["promoted"], decided["why"]
        judged = decided.get("judged")
        if decided.get("served") is not None:  # the part a judged-apart decision chose
            candidate = _served(decided["served"])
        if promoted:
            await _serve(swap, candidate, policy, cfg)
    else:
        new_policy, new_kind = await _serve(swap, candidate, policy, cfg)
        evaluation = await step_eval(cfg, new_policy, out / "eval", critics=new_kind)
        promoted, why = promote(evaluation, baseline)
        apart = cfg.judge_apart and any(m not in CRITIC_FREE for m in cfg.eval_methods)
        if apart and candidate.policy != current.policy and candidate.critics != current.critics:
            parts = {"together": (candidate, evaluation)}
            parts |= await _eval_parts(cfg, policy, swap, candidate, current, (evaluation, baseline), out)
            chosen, why = judge_apart({label: ev for label, (_, ev) in parts.items()}, baseline)
            judged = {"chosen": chosen, **{label: ev for label, (_, ev) in parts.items()}}
            promoted = chosen is not None
            if chosen is not None:
                candidate, evaluation = parts[chosen]
                await _serve(swap, candidate, policy, cfg)  # the last part evaluated was another one
        # The decision is written before lineage.json and the manifest: a kill in between resumes
        # here, so lineage.json never names an adapter whose evaluation and decision are not on disk.
        decision = {
            "promoted": promoted,
            "why": why,
            "evaluation": evaluation,
            "judged": judged,
            "served": _served_record(candidate),
            "baseline": baseline,
            "lineage_before": lineage,
        }
        await anyio.to_thread.run_sync(write_json_atomic, out / "decision.json", _jsonable(decision))
        if not promoted:
            await _serve(swap, current, policy, cfg)
    if promoted:
        policy_cycle = (
            k if candidate.policy != current.policy else lineage.get("policy_cycle", lineage.get("cycle"))
        )
        promoted_to = {
            **_served_record(candidate),
            "cycle": k,
            "policy_cycle": policy_cycle,
            "eval": evaluation,
        }
        await anyio.to_thread.run_sync(write_json_atomic, cfg.root / "lineage.json", promoted_to)
    manifest = {
        "cycle": k,
        "config": _jsonable(asdict(cfg)),
        "prompts": await anyio.to_thread.run_sync(_done, out / "prompts"),
        "search": await anyio.to_thread.run_sync(_done, out / "search"),
        "kept": sum(d.kept for d in decisions),
        "levels": {  # real prompts kept, searched and with the gold found, by difficulty (steps; MATH: level)
            str(level): [stats.kept, stats.searched, stats.found]
            for level, stats in (await anyio.to_thread.run_sync(cycle_levels, out)).items()
        },
        "data": {"path": str(data), **data_info},
        "adapter": {"path": str(adapter) if adapter else None, **trained},
        "critics": {
            "note": critics_note,
            "adapters": {role: str(path) for role, (_, path) in candidate.critics.items()},
        },
        "before": baseline,
        "after": evaluation,
        "promoted": promoted,
        "why": why,
    }
    manifest["policy_changed"] = promoted and candidate.policy != current.policy
    if judged is not None:
        manifest["judged"] = judged
    await anyio.to_thread.run_sync(write_json_atomic, out / "manifest.json", manifest)
    log.info("cycle_done", cycle=k, promoted=promoted, why=why)
    return manifest


async def _serve(swap: Swap, served: Served, policy: Policy, cfg: CycleConfig) -> tuple[Policy, CriticsKind]:
    """Serve ``served``; the policy to call and the critics kind that go with it."""
    refs = await swap(served)
    if not served.critics:
        return replace(policy, critic_adapters={}), cfg.critics
    if VERIFIER in served.critics:  # refitted weights, scored in this process
        return replace(policy, critic_adapters={}, verifier=served.critics[VERIFIER][1]), "verifier"
    return replace(policy, critic_adapters=refs), "trained"


def _served_record(served: Served) -> dict[str, Any]:
    """``served`` in lineage.json's form (``_served`` reads it back)."""
    return {
        "adapter_name": served.policy[0] if served.policy else None,
        "adapter_path": str(served.policy[1]) if served.policy else None,
        "critics": {role: [name, str(path)] for role, (name, path) in served.critics.items()},
    }


def _served(lineage: dict[str, Any]) -> Served:
    name, path = lineage.get("adapter_name"), lineage.get("adapter_path")
    critics = {role: (ref[0], Path(ref[1])) for role, ref in (lineage.get("critics") or {}).items()}
    return Served(policy=(name, Path(path)) if name and path else None, critics=critics)


def _lineage(cfg: CycleConfig) -> dict[str, Any]:
    path = cfg.root / "lineage.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
