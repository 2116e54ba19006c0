"""GSM8K and MATH loading (files, the hub code path, schema errors) and the tasks' prompt formats."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.errors import ConfigError, DataError
from agent.tasks import gsm8k, hub, math
from agent.tasks.answers import normalize_number
from agent.tasks.base import Task
from agent.tasks.gsm8k import Gsm8kTask, load_gsm8k
from agent.tasks.hub import load_from_hub, load_problems
from agent.tasks.math import MathTask, load_math

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data here")

GSM8K_ROWS = [
    {"question": "Ann has 2 apples and buys 3 more. How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
    {"question": "A pen costs $1,200 cents?", "answer": "It is 1,200.\n#### 1,200"},
]
MATH500_ROW = {
    "problem": "Convert $(0,3)$ to polar coordinates.",
    "solution": "So it is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
    "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
    "subject": "Precalculus",
    "level": "Level 2",
    "unique_id": "test/precalculus/807.json",
}
ORIGINAL_MATH_ROW = {
    "problem": "What is $1+1$?",
    "level": "Level 1",
    "type": "Prealgebra",
    "solution": "We get $\\boxed{1}$, no: $1+1=\\boxed{2}$.",
}


def _write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_all_names_exist() -> None:
    for module in (gsm8k, hub, math):
        assert all(hasattr(module, name) for name in module.__all__)


def test_load_gsm8k(tmp_path: Path) -> None:
    problems = load_gsm8k(_write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS))
    assert [p.id for p in problems] == ["gsm8k-test-0", "gsm8k-test-1"]
    assert [p.gold for p in problems] == ["5", "1200"]
    assert problems[0].question == GSM8K_ROWS[0]["question"]
    assert problems[0].meta["solution"] == GSM8K_ROWS[0]["answer"]


def test_gsm8k_ids_follow_lines_across_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "mini.jsonl"
    path.write_text(json.dumps(GSM8K_ROWS[0]) + "\n\n" + json.dumps(GSM8K_ROWS[1]) + "\n")
    assert [p.id for p in load_gsm8k(path)] == ["gsm8k-mini-0", "gsm8k-mini-2"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": "#### 1"}', "{not json"], r"line 2: not JSON"),
        (['{"question": "q"}'], r"line 1: missing field 'answer'"),
        (['{"answer": "#### 1"}'], r"line 1: missing field 'question'"),
        (['{"question": 3, "answer": "#### 1"}'], r"line 1: field 'question' is not a string"),
        (['{"question": "q", "answer": "no marker"}'], r"line 1: answer has no '#### N'"),
        (['{"question": "q", "answer": "####  "}'], r"line 1: answer has nothing after"),
        (["[1, 2]"], r"line 1: not a JSON object"),
        (["", "  "], r"no records"),
    ],
)
def test_gsm8k_schema_errors(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_gsm8k(path)
    assert str(path) in str(info.value)


def test_missing_file_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_gsm8k(tmp_path / "absent.jsonl")


def test_load_math500_and_original_format(tmp_path: Path) -> None:
    problems = load_math(_write_jsonl(tmp_path / "test.jsonl", [MATH500_ROW, ORIGINAL_MATH_ROW]))
    assert [p.id for p in problems] == ["math-test-precalculus-807", "math-test-1"]
    assert [p.gold for p in problems] == [MATH500_ROW["answer"], "2"]
    assert problems[0].meta == {
        "solution": MATH500_ROW["solution"],
        "subject": "Precalculus",
        "level": 2,
        "unique_id": "test/precalculus/807.json",
    }
    assert problems[1].meta["subject"] == "Prealgebra"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"solution": "$\\boxed{1}$", "answer": "1"}, r"line 1: missing field 'problem'"),
        ({"problem": "p", "solution": "no box"}, r"line 1: no 'answer' field and no \\boxed"),
        ({"problem": "p"}, r"line 1: missing field 'answer'"),
        ({"problem": "p", "answer": 3}, r"line 1: field 'answer' is not a string"),
    ],
)
def test_math_schema_errors(tmp_path: Path, row: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_math(_write_jsonl(tmp_path / "bad.jsonl", [row]))


def test_load_problems_dispatches_files(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS)
    assert load_problems("gsm8k", str(path)) == load_gsm8k(path)
    with pytest.raises(ConfigError, match="unknown task"):
        load_problems("chess", str(path))
    with pytest.raises(ConfigError, match="names no dataset"):
        load_problems("gsm8k", "hf:")


def test_hub_path_with_a_local_dataset_folder(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    (tmp_path / "gsm").mkdir()
    (tmp_path / "math").mkdir()
    _write_jsonl(tmp_path / "gsm" / "test.jsonl", GSM8K_ROWS)
    _write_jsonl(tmp_path / "math" / "test.jsonl", [MATH500_ROW, ORIGINAL_MATH_ROW | {"answer": None}])
    cache = tmp_path / "cache"
    from_hub = load_problems("gsm8k", f"hf:{tmp_path / 'gsm'}", split="test", cache_dir=cache)
    assert from_hub == load_gsm8k(tmp_path / "gsm" / "test.jsonl")  # same ids, golds, meta
    maths = load_problems("math", f"hf:{tmp_path / 'math'}", split="test", cache_dir=cache)
    assert [p.gold for p in maths] == [MATH500_ROW["answer"], "2"]
    assert load_from_hub(str(tmp_path / "gsm"), split="test", cache_dir=cache)[0] == GSM8K_ROWS[0]


def test_hub_errors_are_data_errors(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    (tmp_path / "bad").mkdir()
    _write_jsonl(tmp_path / "bad" / "test.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(DataError, match=r"test: row 1: answer has no '#### N'"):
        load_problems("gsm8k", f"hf:{tmp_path / 'bad'}", split="test", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="cannot load split 'train'"):
        load_from_hub(str(tmp_path / "bad"), split="train", cache_dir=tmp_path / "cache")


def test_hub_without_datasets_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError, match="pip install datasets"):
        load_from_hub("openai/gsm8k", split="test", config="main")


@pytest.mark.parametrize("task", [Gsm8kTask("house"), MathTask()])
def test_tasks_follow_the_protocol(task: Task) -> None:
    assert isinstance(task, Task)
    assert len(task.few_shot()) == 3
    assert "The answer is" in task.instruction  # type: ignore[attr-defined]


def test_gsm8k_few_shot_style() -> None:
    for _question, solution in Gsm8kTask("house").few_shot():
        lines = solution.split("\n")
        assert all(line.strip() for line in lines), "no blank lines"
        assert re.fullmatch(r"The answer is -?\d+\.", lines[-1])
        for line in lines[:-1]:
            left, right = re.search(r"(\d+(?: [-+*/] \d+)+) = (\d+)", line).groups()  # type: ignore[union-attr]
            assert eval(left) == int(right), line  # the worked arithmetic is right
        assert Gsm8kTask().extract_answer(solution) == right


def test_math_few_shot_style() -> None:
    for _question, solution in MathTask().few_shot():
        steps = solution.split("\n\n")
        assert len(steps) >= 3 and all(step.strip() and "\n" not in step for step in steps)
        assert re.fullmatch(r"The answer is \$\\boxed\{.+\}\$\.", steps[-1])
        assert MathTask().extract_answer(solution) == steps[-1][len("The answer is $\\boxed{") : -len("}$.")]


@needs_shared_data
def test_real_gsm8k_files() -> None:
    problems = load_gsm8k(SHARED_DATA / "gsm8k" / "test.jsonl")
    assert len(problems) == 1319 and len({p.id for p in problems}) == 1319
    assert problems[0].id == "gsm8k-test-0" and problems[0].gold == "18"
    for p in problems:
        assert normalize_number(Gsm8kTask().extract_answer(str(p.meta["solution"])) or "") == p.gold


@needs_shared_data
def test_real_math500_file() -> None:
    problems = load_math(SHARED_DATA / "math500" / "test.jsonl")
    assert len(problems) == 500 and len({p.id for p in problems}) == 500
    assert problems[0].id == "math-test-precalculus-807"
    assert problems[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert all(p.gold and isinstance(p.meta["level"], int) for p in problems)
