"""The feature verifier: its features, its weights file, its fitting, and the shipped weights at work."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from agent.critics.verifier import FEATURES, FeatureVerifier, VerifierWeights, features, load_weights
from agent.errors import ConfigError

AUC_ON_CORRUPTIONS = 0.7  # measured 0.76 (150 problems, 600 solutions); the arithmetic re-check: 0.60

QUESTION = (
    "A baker makes 48 muffins. She puts them in boxes of 6. Her cousin lives 12 miles away. "
    "How many boxes does she fill?"
)


def test_a_right_solution_has_no_warning_signs() -> None:
    f = features(QUESTION, ["She fills 48 / 6 = 8 boxes.", "The answer is 8."])
    assert f["wrong_claim"] == 0 and f["ungrounded"] == 0 and f["no_claim"] == 0
    assert f["answered"] == 1 and f["answer_follows"] == 1 and f["answer_elsewhere"] == 0
    assert f["answer_from_question"] == 0 and f["dropped"] == 0
    assert f["unused"] == pytest.approx(1 / 3)  # the distractor (12) is never used
    assert set(f) == set(FEATURES) and all(0.0 <= v <= 1.0 for v in f.values())


def test_each_kind_of_mistake_shows_in_its_feature() -> None:
    assert features(QUESTION, ["48 / 6 = 9 boxes.", "The answer is 9."])["wrong_claim"] == 1
    made_up = features(QUESTION, ["48 / 5 = 9.6 boxes.", "The answer is 9.6."])
    assert made_up["ungrounded"] > 0 and made_up["answer_not_whole"] == 1
    assert features(QUESTION, ["48 / 6 = 8 boxes.", "The answer is 6."])["answer_elsewhere"] == 1
    assert features(QUESTION, ["48 / 6 = 8 boxes.", "The answer is 6."])["answer_from_question"] == 1
    dropped = features(QUESTION, ["48 / 6 = 8 boxes.", "48 + 12 = 60 miles.", "The answer is 60."])
    assert dropped["dropped"] == 1 and dropped["answer_follows"] == 1
    assert features(QUESTION, ["She fills boxes.", "She fills boxes."])["repeated"] == 1
    assert features(QUESTION, ["She fills many boxes."])["no_claim"] == 1
    # An earlier result grounds a later operand; "twice" grounds 2.
    chained = features(
        "Tom has 5 cards. Ann has twice as many. How many do they have?", ["5 * 2 = 10", "10 + 5 = 15"]
    )
    assert chained["ungrounded"] == 0 and chained["dropped"] == 0


def test_the_prm_view_judges_the_last_step_in_context() -> None:
    steps = ["48 / 6 = 9 boxes.", "9 + 1 = 10 boxes."]
    assert features(QUESTION, steps)["wrong_claim"] == 1
    last = features(QUESTION, steps, last_step_only=True)
    assert last["wrong_claim"] == 0 and last["ungrounded"] == 0  # 9 is an earlier result; 1 a constant


def weights_file(tmp_path: Path, **overrides: object) -> Path:
    roles = {
        role: {"bias": 1.0, "weights": {"wrong_claim": -5.0, "ungrounded": -3.0}}
        for role in ("orm", "prm", "value")
    }
    data = {"features": list(FEATURES), "roles": roles} | overrides
    path = tmp_path / "verifier.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.anyio
async def test_scores_are_the_logistic_model_of_the_features(tmp_path: Path) -> None:
    weights = load_weights(weights_file(tmp_path))
    orm = FeatureVerifier(weights, "orm")
    right = await orm.score(QUESTION, ["48 / 6 = 8 boxes.", "The answer is 8."])
    wrong = await orm.score(QUESTION, ["48 / 6 = 9 boxes.", "The answer is 9."])
    assert right.p == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert wrong.p == pytest.approx(1 / (1 + math.exp(4.0)))
    assert right.usage.requests == 0 and orm.name == "verifier-orm"


def test_bad_weights_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"finetune\.verifier"):
        load_weights(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a verifier weights file"):
        load_weights(tmp_path / "bad.json")
    bad_feature = {"roles": {"orm": {"bias": 0, "weights": {"vibes": 1.0}}}}
    with pytest.raises(ConfigError, match="unknown features"):
        load_weights(weights_file(tmp_path, **bad_feature))
    with pytest.raises(ConfigError, match="no prm model"):
        FeatureVerifier(VerifierWeights(bias={"orm": 0.0}, weights={"orm": {}}), "prm")


def test_fit_recovers_a_known_logistic_model_from_soft_targets() -> None:
    pytest.importorskip("torch")
    from finetune.verifier import fit_logistic

    rng = random.Random(0)
    rows = [[rng.random(), rng.random()] for _ in range(2000)]
    targets = [1 / (1 + math.exp(-(0.5 + 3.0 * a - 2.0 * b))) for a, b in rows]
    bias, (wa, wb) = fit_logistic(rows, targets, l2=0.0)
    assert bias == pytest.approx(0.5, abs=0.05)
    assert wa == pytest.approx(3.0, abs=0.05) and wb == pytest.approx(-2.0, abs=0.05)


def synthetic_trajectories(path: Path, n: int, *, split: str = "train") -> Path:
    """Graded solutions of generated problems: references (right) and controlled corruptions (wrong)."""
    from agent.improve.synth import synthetic_solutions
    from agent.tasks import load_task_problems
    from agent.tasks.answers import extract_answer

    problems = load_task_problems("arith", split=split, limit=n, seed=0)
    lines = []
    for s in synthetic_solutions(problems, seed=0):
        answer = extract_answer("\n".join(s.steps))
        row = {"problem_id": s.problem_id, "question": s.question, "gold": s.gold, "steps": list(s.steps)}
        lines.append(json.dumps(row | {"answer": answer, "correct": s.correct}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_finetune_verifier_fits_reports_and_ships(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from agent.solvers import build_critics
    from finetune.verifier import main

    data = synthetic_trajectories(tmp_path / "trajectories.jsonl", 120)
    out, shipped = tmp_path / "fit", tmp_path / "package"
    argv = [
        "--trajectories",
        str(data),
        "--out",
        str(out),
        "--problems",
        "120",
        "--ship",
        "--ship-dir",
        str(shipped),
    ]
    assert main(argv) == 0
    manifest = json.loads((shipped / "verifier-manifest.json").read_text())
    assert manifest["command"].startswith("python -m finetune.verifier --trajectories")
    assert manifest["data"]["exactly_labelled"] == manifest["data"]["solutions"] > 0
    # References against their corruptions, on problems never fitted on: an easy, real test of the fit.
    assert manifest["metrics"]["verifier orm"]["auc"] > 0.8
    assert "| wrong_claim |" in (out / "report.md").read_text()
    critics = build_critics("verifier", policy=None, fmt=None, verifier=shipped / "verifier.json")  # type: ignore[arg-type]
    assert sorted(critics) == ["orm", "prm", "value"] and critics["orm"].name == "verifier-orm"


def test_finetune_verifier_refuses_data_without_both_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    from finetune.verifier import main

    data = synthetic_trajectories(tmp_path / "t.jsonl", 30)
    right_only = [line for line in data.read_text().splitlines() if '"correct": true' in line]
    data.write_text("\n".join(right_only) + "\n")
    assert main(["--trajectories", str(data), "--out", str(tmp_path / "fit")]) == 2
    assert "right and wrong solutions" in capsys.readouterr().err


def test_finetune_verifier_fits_on_all_problems_when_holding_out_would_leave_one_kind(tmp_path: Path) -> None:
    """Search trees often hold all their right paths in a few problems: when the held-out problems
    take every wrong (or every right) solution, the fit uses every problem and reports no held-out
    rows, rather than failing the same way on every rerun."""
    pytest.importorskip("torch")
    from agent.improve.critic_data import heldout_problems
    from finetune.verifier import main

    rows = [
        json.loads(line) for line in synthetic_trajectories(tmp_path / "t.jsonl", 30).read_text().splitlines()
    ]
    ids = sorted({r["problem_id"] for r in rows})
    held = heldout_problems(ids, holdout=0.25, seed=0)
    wrong_in = sorted(held)[0]  # the only problem with wrong solutions is a held-out one
    kept = [r for r in rows if r["correct"] or r["problem_id"] == wrong_in]
    data = tmp_path / "one-wrong.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in kept))
    out = tmp_path / "fit"
    assert main(["--trajectories", str(data), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["heldout_problems"] == 0 and manifest["metrics"] == {}
    assert manifest["data"]["train_orm"] == len(kept)
    assert "No held-out rows" in (out / "report.md").read_text()


@pytest.mark.anyio
async def test_rerank_with_the_verifier_needs_no_model_requests(tmp_path: Path) -> None:
    from agent.clients import Endpoint, RetryPolicy, Sampling
    from agent.fakes.backend import FunctionBackend
    from agent.prompts import get_format
    from agent.solvers import SolverConfig, solve_problem
    from agent.tasks import Problem, get_task

    samples = ["48 / 6 = 9 boxes.\nThe answer is 9."] * 3 + ["48 / 6 = 8 boxes.\nThe answer is 8."]

    def write(prompt: str, sampling: Sampling, index: int) -> str:
        return samples[index % len(samples)]

    policy = Endpoint(FunctionBackend(write), retry=RetryPolicy(attempts=1))
    solution = await solve_problem(
        Problem(id="p", question=QUESTION, gold="8"),
        policy=policy,
        task=get_task("gsm8k"),
        fmt=get_format("chatml"),
        config=SolverConfig(method="rerank", n=4, critics="verifier"),
        verifier=weights_file(tmp_path),
    )
    assert solution.answers == {"rerank": "8", "orm_vote": "8", "majority": "9"}
    assert solution.usage.requests == 1  # the sampling request; the verifier asks nothing


def test_the_shipped_verifier_loads_with_its_manifest() -> None:
    from agent.critics.shipped import SHIPPED_DIR, shipped_verifier

    weights = shipped_verifier()
    assert weights.roles == ("value", "prm", "orm")
    manifest = json.loads((SHIPPED_DIR / "verifier-manifest.json").read_text())
    assert manifest["command"].startswith("python -m finetune.verifier")
    assert manifest["data"]["solutions"] >= 1000 and manifest["metrics"]["verifier orm"]["auc"] > 0.5


@pytest.mark.anyio
async def test_the_shipped_verifier_tells_references_from_corruptions_on_unseen_problems(
    tmp_path: Path,
) -> None:
    """Fitted on the policy's own solutions to TRAIN problems; here references and controlled
    corruptions of TEST problems, which it never saw."""
    from agent.critics.shipped import shipped_verifier
    from agent.improve.calibration import calibration_report

    data = synthetic_trajectories(tmp_path / "t.jsonl", 150, split="test")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    orm = FeatureVerifier(shipped_verifier(), "orm")
    scores = [(await orm.score(r["question"], r["steps"])).p for r in rows]
    report = calibration_report(scores, [r["correct"] for r in rows])
    assert report.auc is not None and report.auc > AUC_ON_CORRUPTIONS
