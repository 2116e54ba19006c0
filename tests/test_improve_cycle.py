"""Self-improvement cycles: the pieces without a server, and one tiny real cycle on the embedded model."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from agent.clients import Endpoint, LlamaCppBackend, RetryPolicy, Sampling
from agent.critics.verifier import features
from agent.errors import ConfigError
from agent.fakes.backend import FunctionBackend
from agent.improve.__main__ import parse_every
from agent.improve.cycle import CycleConfig, Served, promote, run_cycle, step_search
from agent.improve.report import write_report
from agent.improve.select import FilterConfig, select_trajectory
from agent.improve.serving import embedded_swap
from agent.improve.training import step_critics
from agent.prompts import get_format
from agent.runtime import Policy
from agent.search.config import SearchConfig
from agent.search.options import OptionRule
from agent.search.tree import Tree
from agent.tasks import load_task_problems
from servers.llamacpp import EmbeddedServer


def tree_with(terminals: list[tuple[float, str | None, float]]) -> Tree:
    """A root with one terminal child per (value, answer, orm)."""
    tree = Tree("q", SearchConfig(c_min_root=len(terminals) or 1, c_max_root=max(len(terminals), 1)))
    for i, (value, answer, orm) in enumerate(terminals):
        ticket = tree.select()
        assert ticket is not None
        tree.expand(
            ticket, option=f"step {i}", value=value, terminal=True, answer=answer, scores={"orm": orm}
        )
    return tree


def test_select_keeps_the_best_terminal_above_gamma_and_correct() -> None:
    tree = tree_with([(0.4, "5", 0.3), (0.9, "7", 0.95)])
    right = {"5": False, "7": True}
    kept = select_trajectory(tree, problem_id="p", grades=right, config=FilterConfig(gamma=0.8))
    assert kept.kept and kept.reason == "kept" and kept.answer == "7" and kept.steps == ("step 1",)
    assert kept.correct is True
    wrong = select_trajectory(tree, problem_id="p", grades={"7": False}, config=FilterConfig(gamma=0.8))
    assert not wrong.kept and wrong.reason == "wrong_answer" and wrong.correct is False
    low = select_trajectory(tree, problem_id="p", grades=right, config=FilterConfig(gamma=0.99))
    assert low.reason == "orm_below_gamma"
    lenient = select_trajectory(
        tree, problem_id="p", grades={"7": False}, config=FilterConfig(0.8, require_correct=False)
    )
    assert lenient.kept
    no_gold = select_trajectory(tree, problem_id="p", config=FilterConfig(gamma=0.8))
    assert no_gold.kept and no_gold.correct is None
    assert select_trajectory(Tree("q", SearchConfig()), problem_id="p").reason == "no_terminal"
    assert select_trajectory(tree_with([(0.9, None, 0.9)]), problem_id="p").reason == "no_answer"
    assert kept.completion(OptionRule("line"), "<|im_end|>") == "step 1<|im_end|>"


def test_pick_correct_prefers_a_right_terminal_the_critics_ranked_lower() -> None:
    tree = tree_with([(0.6, "5", 0.85), (0.7, "6", 0.9), (0.9, "7", 0.95)])
    grades = {"5": True, "6": False, "7": False}
    by_critic = select_trajectory(tree, problem_id="p", grades=grades, config=FilterConfig(gamma=0.8))
    assert by_critic.answer == "7" and by_critic.reason == "wrong_answer"
    by_answer = select_trajectory(
        tree, problem_id="p", grades=grades, config=FilterConfig(gamma=0.8, pick="correct")
    )
    assert by_answer.kept and by_answer.answer == "5" and by_answer.steps == ("step 0",)
    # the right terminal still has to pass gamma
    strict = FilterConfig(gamma=0.88, pick="correct")
    assert select_trajectory(tree, problem_id="p", grades=grades, config=strict).reason == "orm_below_gamma"
    # nothing right: the best by critic score, dropped as wrong
    none_right = {"5": False, "6": False, "7": False}
    fallback = select_trajectory(
        tree, problem_id="p", grades=none_right, config=FilterConfig(gamma=0.8, pick="correct")
    )
    assert fallback.answer == "7" and fallback.reason == "wrong_answer"
    with pytest.raises(ConfigError, match="pick"):
        FilterConfig(pick="best")  # type: ignore[arg-type]


def test_promote_only_when_not_worse_beyond_noise() -> None:
    best = {"greedy": {"accuracy": 0.5, "problems": 100}, "mcts": {"accuracy": 0.6, "problems": 100}}
    same = {"greedy": {"accuracy": 0.48, "problems": 100}, "mcts": {"accuracy": 0.62, "problems": 100}}
    worse = {"greedy": {"accuracy": 0.40, "problems": 100}, "mcts": {"accuracy": 0.7, "problems": 100}}
    assert promote(same, best)[0]
    ok, why = promote(worse, best)
    assert not ok and "greedy" in why


def test_parse_every() -> None:
    assert parse_every("6h") == 6 * 3600 and parse_every("30m") == 1800 and parse_every("1.5d") == 1.5 * 86400
    with pytest.raises(ConfigError, match="--every"):
        parse_every("six hours")


def test_report_from_manifests(tmp_path: Path) -> None:
    root = tmp_path / "loop"
    for k, (before, after) in enumerate([(0.1, 0.2), (0.2, 0.15)], start=1):
        (root / f"cycle_{k}").mkdir(parents=True)
        manifest = {
            "cycle": k,
            "before": {
                "greedy": {"accuracy": before, "correct": 1, "problems": 10, "tokens_per_solved": 900.0}
            },
            "after": {
                "greedy": {"accuracy": after, "correct": 2, "problems": 10, "tokens_per_solved": 800.0}
            },
            "kept": 3,
            "promoted": k == 1,
            "why": "test",
            "search": {"kept": 3},
            "adapter": {"path": "a.gguf"},
        }
        (root / f"cycle_{k}" / "manifest.json").write_text(json.dumps(manifest))
    (root / "cycle_1" / "search").mkdir()
    (root / "cycle_1" / "search" / "trees.html").write_text("<html></html>")
    text = write_report(root).read_text()
    assert "By number of solution steps" not in text  # the manifests do not say
    # A cycle that records intervals, steps and phase times gets them in the report.
    manifest["after"]["greedy"] |= {
        "interval": [0.05, 0.4],
        "by_steps": {"1": [2, 6], "2": [0, 4]},
        "seconds": 90,
    }
    manifest |= {
        "prompts": {"seconds": 30},
        "search": {
            "kept": 3,
            "searched": 12,
            "reasons": {"kept": 3, "wrong_answer": 7, "no_answer": 2},
            "seconds": 600,
        },
        "adapter": {"path": "a.gguf", "result": {"seconds": 120}},
    }
    (root / "cycle_2" / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(root).read_text()
    assert "| 2 | 0.150 (2/10) [0.05, 0.40] | 800 | 3 kept; kept old |" in text
    assert "| cycle | greedy 1-step | greedy 2-step |" in text and "| 2 | 2/6 | 0/4 |" in text
    assert "| 2 | 0.5 | 10.0 | 2.0 | 1.5 | 3 / 12 | wrong_answer 7, no_answer 2 |" in text
    assert "Search trees: [cycle_1/search/trees.html](cycle_1/search/trees.html)" in text
    assert "cycle_2/search/trees.html" not in text
    assert "| 0 (base) | 0.100 (1/10) | 900 |" in text


@pytest.mark.server
@pytest.mark.anyio
async def test_one_tiny_cycle_changes_the_served_model(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    base_config = embedded_server.config
    retry = RetryPolicy(attempts=12, initial_wait=0.5, max_wait=4.0)  # rides out the swap's restart
    endpoint = Endpoint(LlamaCppBackend(embedded_server.url), max_concurrency=8, retry=retry)
    policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=True)
    swap = embedded_swap(embedded_server, endpoint.backend)  # type: ignore[arg-type]
    cfg = CycleConfig(
        name="tiny",
        runs_dir=tmp_path,
        train_prompts=6,
        heldout=4,
        # Depth 2: the second step is written to the end, so every tree has terminals to keep.
        search=SearchConfig(simulations=8, workers=4, max_depth=2),
        filter=FilterConfig(gamma=0.0, require_correct=False),  # keep something, even from a tiny model
        sft_epochs=1,
        sft_max_steps=4,
        sft_lr=5e-3,
        eval_methods=("greedy",),
    )
    probe = "<|im_start|>user\nWhat is 12 * 3?<|im_end|>\n<|im_start|>assistant\n"
    sampling = Sampling(max_tokens=8, logprobs=5)
    try:
        async with endpoint:
            before = (await endpoint.complete(probe, sampling)).completions[0]
            manifest = await run_cycle(1, cfg, policy, swap)
            assert manifest["kept"] >= 1, manifest["search"]
            adapter = Path(manifest["adapter"]["path"])
            assert adapter.name == "adapter.gguf" and adapter.is_file()
            assert set(manifest["after"]) == {"greedy"} and manifest["after"]["greedy"]["problems"] == 4
            assert (tmp_path / "tiny" / "cycle_1" / "manifest.json").is_file()
            await swap(Served(policy=("cycle_1", adapter)))  # serve the new adapter, promoted or not
            after = (await endpoint.complete(probe, sampling)).completions[0]
            # The fine-tuned adapter changes what the server computes.
            first_before = dict(before.logprobs[0].top)
            first_after = dict(after.logprobs[0].top)
            shared = set(first_before) & set(first_after)
            assert after.text != before.text or any(
                abs(first_before[t] - first_after[t]) > 1e-3 for t in shared
            )
            # Rerunning the finished cycle does nothing and returns the same manifest.
            assert await run_cycle(1, cfg, policy, swap) == manifest
            # Killed after its decision (and lineage.json, if promoted) but before the manifest: the
            # rerun reaches the same end state without deciding again against the new lineage.
            cycle = tmp_path / "tiny" / "cycle_1"
            assert (cycle / "decision.json").is_file()
            (cycle / "manifest.json").unlink()
            again = await run_cycle(1, cfg, policy, swap)
            keys = ("promoted", "why", "before", "after", "kept")
            assert {k: again[k] for k in keys} == {k: manifest[k] for k in keys}
            lineage = tmp_path / "tiny" / "lineage.json"
            assert lineage.exists() == manifest["promoted"]
    finally:
        embedded_server.restart(replace(base_config, lora=()))


def _search_record(problem_id: str, question: str, terminals: list[tuple[list[str], str, bool]]) -> str:
    """One line of a cycle's search/results.jsonl with graded terminal paths."""
    paths = [{"steps": steps, "answer": answer, "correct": correct} for steps, answer, correct in terminals]
    return json.dumps({"id": problem_id, "question": question, "kept": False, "terminals": paths}) + "\n"


def _addition_trees(search: Path, n: int) -> None:
    """A cycle's search/results.jsonl: ``n`` addition problems, each tree with one right and one
    miscomputed terminal path."""
    lines = ""
    for j in range(n):
        a, b = 3 + j, 4 + 2 * j
        right = ([f"{a} + {b} = {a + b}", f"The answer is {a + b}."], str(a + b), True)
        wrong = ([f"{a} + {b} = {a + b + 1}", f"The answer is {a + b + 1}."], str(a + b + 1), False)
        lines += _search_record(f"p{j}", f"Sam has {a} pens and buys {b} more. How many now?", [right, wrong])
    search.mkdir(parents=True)
    (search / "results.jsonl").write_text(lines)


@pytest.mark.anyio
async def test_refresh_critics_needs_right_and_wrong_paths(tmp_path: Path) -> None:
    cfg = CycleConfig(name="c", runs_dir=tmp_path, refresh_critics=True)
    search = tmp_path / "c" / "cycle_1" / "search"
    search.mkdir(parents=True)
    wrong = [(["3 + 4 = 8", "The answer is 8."], "8", False)]
    (search / "results.jsonl").write_text(_search_record("p1", "3 + 4?", wrong))
    why = await step_critics(1, cfg, tmp_path / "c" / "cycle_1" / "critics")
    assert why == "critics kept: 0 of 1 graded paths right, need both kinds"


@pytest.mark.anyio
async def test_a_refreshed_verifier_is_refitted_on_search_paths_and_scores_in_process(tmp_path: Path) -> None:
    """With ``verifier`` critics, refreshing refits the feature verifier's weights on the trees'
    graded paths (``finetune.verifier``, its own process) instead of training a LoRA critic; the
    weights are not put on the policy server but score the cycle's later searches."""
    pytest.importorskip("torch")
    from agent.critics.verifier import load_weights
    from agent.improve.cycle import _serve
    from agent.solvers import build_critics

    cfg = CycleConfig(name="c", runs_dir=tmp_path, refresh_critics=True, critics="verifier")
    _addition_trees(tmp_path / "c" / "cycle_1" / "search", 12)
    out = tmp_path / "c" / "cycle_1" / "critics"
    critics = await step_critics(1, cfg, out)
    assert not isinstance(critics, str), critics
    assert list(critics) == ["verifier"]
    name, path = critics["verifier"]
    assert name == "cycle_1_verifier" and path == out / "verifier.json"
    weights = load_weights(path)
    assert weights.roles == ("value", "prm", "orm")
    assert weights.weights["orm"]["wrong_claim"] < 0  # the wrong paths are the ones that miscompute
    fitted = path.stat().st_mtime_ns
    assert await step_critics(1, cfg, out) == critics  # done: not fitted again
    assert path.stat().st_mtime_ns == fitted

    async def swap(to: Served) -> dict[str, str]:
        return {}

    async with Endpoint(FunctionBackend(lambda *_: "The answer is 1."), max_concurrency=1) as endpoint:
        policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)
        active, kind = await _serve(swap, Served(critics=critics), policy, cfg)
        assert kind == "verifier" and active.verifier == path and active.critic_adapters == {}
        orm = build_critics(kind, policy=endpoint, fmt=policy.fmt, verifier=active.verifier)["orm"]
        again, kind = await _serve(swap, Served(), policy, cfg)  # the current critics: the configured ones
        assert kind == "verifier" and again.verifier is None
    question, steps = "Sam has 3 pens and buys 4 more. How many now?", ["3 + 4 = 8", "The answer is 8."]
    z = weights.bias["orm"] + sum(
        w * v for f, w in weights.weights["orm"].items() if (v := features(question, steps)[f])
    )
    assert (await orm.score(question, steps)).p == pytest.approx(1 / (1 + math.exp(-z)))


@pytest.mark.server
@pytest.mark.anyio
async def test_refreshed_critics_are_trained_on_search_paths_and_served_beside_the_policy(
    embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    cfg = CycleConfig(name="c", runs_dir=tmp_path, refresh_critics=True, critic_steps=2)
    _addition_trees(tmp_path / "c" / "cycle_1" / "search", 6)
    out = tmp_path / "c" / "cycle_1" / "critics"
    critics = await step_critics(1, cfg, out)
    assert not isinstance(critics, str), critics
    assert sorted(critics) == ["orm", "prm", "value"]
    assert all(path.name == "adapter.gguf" and path.is_file() for _, path in critics.values())
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 12
    assert await step_critics(1, cfg, out) == critics  # done: not trained again

    base_config = embedded_server.config
    backend = LlamaCppBackend(embedded_server.url)
    retry = RetryPolicy(attempts=12, initial_wait=0.5, max_wait=4.0)
    swap = embedded_swap(embedded_server, backend)
    try:
        async with Endpoint(backend, max_concurrency=4, retry=retry) as endpoint:
            policy_adapter = critics["orm"][1]  # any adapter of this base model will do as the policy's
            refs = await swap(Served(policy=("cycle_1", policy_adapter), critics=critics))
            assert refs == {"orm": "1", "value": "2", "prm": "3"}
            assert backend.lora == ((0, 1.0),)  # the policy's requests name their adapter
            listed = [Path(p) for p in embedded_server.config.lora]
            assert listed[0] == policy_adapter.absolute() and len(listed) == 4
            prompt = "<|im_start|>user\nIs 3 + 4 = 7 right?<|im_end|>\n<|im_start|>assistant\n"
            sampling = Sampling(max_tokens=1, logprobs=5)
            as_policy = (await endpoint.complete(prompt, sampling)).completions[0].logprobs[0].top
            as_value = (
                (await endpoint.with_adapter(refs["value"]).complete(prompt, sampling))
                .completions[0]
                .logprobs[0]
                .top
            )
            # one adapter answers the three critic roles, so here the policy's adapter is that same
            # file: both differ from the bare model (no adapter applied)
            async with Endpoint(LlamaCppBackend(embedded_server.url), retry=retry) as bare:
                as_base = (await bare.complete(prompt, sampling)).completions[0].logprobs[0].top
            assert dict(as_policy) == dict(as_value) != dict(as_base)
            assert await swap(Served()) == {} and backend.lora == () and embedded_server.config.lora == ()
    finally:
        embedded_server.restart(replace(base_config, lora=()))


@pytest.mark.anyio
async def test_a_cycles_searches_share_one_token_budget(tmp_path: Path) -> None:
    def write(prompt: str, sampling: Sampling, index: int) -> str:
        return "Add 1 and 1 to get 2.\n"  # a step that never reaches an answer

    prompts = load_task_problems("arith", split="train", limit=6, seed=0)
    search = SearchConfig(simulations=12, max_simulations=12, workers=2, max_depth=50, merge="none")

    async def spent(budget: int | None, out: Path) -> int:
        async with Endpoint(FunctionBackend(write), max_concurrency=4) as endpoint:
            policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)
            cfg = CycleConfig(name="b", runs_dir=tmp_path, search=search, search_tokens=budget)
            decisions = await step_search(cfg, policy, prompts, out, critics="none")
        assert len(decisions) == 6 and all(d.reason == "no_terminal" for d in decisions)
        records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert sorted(p.stem for p in (out / "trees").glob("*.json")) == sorted(p.id for p in prompts)
        assert "synthetic" not in (page := (out / "trees.html").read_text()) and prompts[0].id in page
        return sum(r["tokens"]["completion_tokens"] for r in records)

    unbounded = await spent(None, tmp_path / "free")
    bounded = await spent(60, tmp_path / "bounded")
    assert unbounded > 6 * 12  # every tree spends its simulations
    assert bounded < unbounded / 2  # the trees stopped on the shared budget (plus requests in flight)


def _gsm8k_file(path: Path, questions: list[str]) -> str:
    rows = [{"question": q, "answer": f"It is {i}.\n#### {i}"} for i, q in enumerate(questions)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cycles_on_a_dataset_take_consecutive_slices_and_never_the_heldout(tmp_path: Path) -> None:
    from agent.errors import ConfigError
    from agent.improve.cycle import check_data, heldout_problems, training_prompts

    train = _gsm8k_file(
        tmp_path / "train.jsonl", [f"Sam has {i} pens and buys 2. How many now?" for i in range(5)]
    )
    test = _gsm8k_file(tmp_path / "test.jsonl", ["Ann has 7 cups and breaks 1. How many are left?"])
    cfg = CycleConfig(task="gsm8k", data=train, heldout_data=test, train_prompts=2, heldout=10)
    check_data(cfg)
    first, second, third = (training_prompts(k, cfg) for k in (1, 2, 3))
    assert len(first) == len(second) == 2 and not {p.id for p in first} & {p.id for p in second}
    assert len({p.id for p in [*first, *second, *third]}) == 5  # the fifth, then around again
    assert [p.question for p in heldout_problems(cfg)] == ["Ann has 7 cups and breaks 1. How many are left?"]
    with pytest.raises(ConfigError, match=r"--data .* --heldout-data"):
        check_data(CycleConfig(task="gsm8k", data=train))
    with pytest.raises(ConfigError, match="generates its problems"):
        check_data(CycleConfig(task="arith", data=train))
    leaky = _gsm8k_file(
        tmp_path / "leaky.jsonl", ["ann has 7 cups and  breaks 1. How many are left?", "Other?"]
    )
    with pytest.raises(ConfigError, match="1 training problems are also held-out"):
        check_data(CycleConfig(task="gsm8k", data=leaky, heldout_data=test))


def test_improve_cli_refuses_a_dataset_task_without_data_before_starting_a_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.improve.__main__ import main

    assert main(["--task", "gsm8k", "--runs", "/nonexistent"]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_training_from_the_promoted_adapter_takes_this_cycles_rows_and_its_peft_dir(tmp_path: Path) -> None:
    from agent.improve.__main__ import build_parser
    from agent.improve.cycle import _peft_dir, _this_cycle

    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": str(i), "cycle": c, "prompt": "p", "completion": "c"}) + "\n"
            for i, c in enumerate([1, 1, 2, 3, 2])
        )
    )
    path, count = _this_cycle(data, 2, tmp_path / "sft-cycle.jsonl")
    assert count == 2 and [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["2", "4"]
    assert _peft_dir(Path("runs/x/cycle_1/adapter/adapter.gguf")) == Path("runs/x/cycle_1/adapter/adapter")
    assert _peft_dir(Path("runs/x/cycle_1/adapter/adapter")) == Path("runs/x/cycle_1/adapter/adapter")
    assert build_parser().parse_args(["--train-from", "promoted"]).train_from == "promoted"
    assert build_parser().parse_args([]).train_from == "base"


def test_judging_apart_promotes_the_best_part_that_is_not_worse() -> None:
    from agent.improve.cycle import judge_apart

    def ev(greedy: float, mcts: float) -> dict[str, dict[str, float | int]]:
        return {
            "greedy": {"accuracy": greedy, "correct": int(greedy * 200), "problems": 200},
            "mcts": {"accuracy": mcts, "correct": int(mcts * 200), "problems": 200},
        }

    baseline = ev(0.10, 0.12)
    # The new critics hurt the search: the new policy with the current critics is promoted.
    chosen, why = judge_apart(
        {"together": ev(0.15, 0.05), "policy": ev(0.15, 0.16), "critics": ev(0.10, 0.06)}, baseline
    )
    assert chosen == "policy" and "current critics" in why
    # Equal accuracy: together first.
    assert judge_apart({"together": ev(0.15, 0.16), "policy": ev(0.15, 0.16)}, baseline)[0] == "together"
    chosen, why = judge_apart({"together": ev(0.02, 0.05), "critics": ev(0.10, 0.01)}, baseline)
    assert chosen is None and "together: greedy accuracy" in why and "critics: mcts accuracy" in why


@pytest.mark.anyio
async def test_parts_are_served_and_evaluated_apart(tmp_path: Path) -> None:
    from agent.improve.cycle import _eval_parts, judge_apart, step_eval

    served: list[Served] = []
    new_policy = ("cycle_1", tmp_path / "policy.gguf")
    heldout = {p.question: p.gold for p in load_task_problems("arith", split="test", limit=6, seed=0)}

    def answer(prompt: str, sampling: Sampling, index: int) -> str:
        gold = next(g for q, g in heldout.items() if q in prompt)
        right = served[-1].policy == new_policy  # only the new policy knows the answers
        return f"The answer is {gold if right else 0}."

    async def swap(to: Served) -> dict[str, str]:
        served.append(to)
        return {role: str(i + 1) for i, role in enumerate(to.critics)}

    search = SearchConfig(simulations=2, max_simulations=2, workers=1, max_depth=1)
    cfg = CycleConfig(name="j", runs_dir=tmp_path, heldout=6, search=search, judge_apart=True)
    async with Endpoint(FunctionBackend(answer), max_concurrency=4) as endpoint:
        policy = Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)
        current = Served()
        await swap(current)
        baseline = await step_eval(cfg, policy, tmp_path / "base", critics="arithmetic")
        candidate = Served(policy=new_policy)
        await swap(candidate)
        together = await step_eval(cfg, policy, tmp_path / "together", critics="arithmetic")
        evaluations = (together, baseline)
        parts = await _eval_parts(cfg, policy, swap, candidate, current, evaluations, tmp_path / "cycle")
    assert served[2:] == [Served(policy=new_policy), Served()]
    assert baseline["mcts"]["accuracy"] == 0.0 and together["mcts"]["accuracy"] == 1.0
    policy_part, critics_part = parts["policy"][1], parts["critics"][1]
    assert policy_part["greedy"] == together["greedy"]  # greedy calls no critic: not evaluated again
    assert critics_part["greedy"] == baseline["greedy"]
    assert (tmp_path / "cycle" / "eval-policy" / "mcts").is_dir()
    assert not (tmp_path / "cycle" / "eval-policy" / "greedy").exists()
    assert policy_part["mcts"]["accuracy"] == 1.0 and critics_part["mcts"]["accuracy"] == 0.0
    worse = {m: {**r, "accuracy": 0.0} for m, r in together.items()}
    assert (
        judge_apart({"together": worse, "policy": policy_part, "critics": critics_part}, baseline)[0]
        == "policy"
    )


def test_judge_apart_needs_refreshed_critics(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.improve.__main__ import main

    assert main(["--judge-apart", "--runs", "/nonexistent"]) == 2
    assert "add --refresh-critics" in capsys.readouterr().err
    assert main(["--judge-apart", "--refresh-critics", "--eval", "greedy", "--runs", "/nonexistent"]) == 2
    assert "add mcts to --eval" in capsys.readouterr().err
    assert main(["--advance", "0.5", "--runs", "/nonexistent"]) == 2
    assert "add --curriculum steps" in capsys.readouterr().err
