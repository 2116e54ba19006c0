"""The generated arithmetic word problems (agent.tasks.arith): correct, reproducible, varied, split cleanly.

Every reference solution is re-checked line by line: each step's ``a op b = c`` is evaluated, its
operands must come from the question (digits, number words, a few everyday constants such as 7
days a week) or from earlier steps, and the last line must state the gold answer.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.tasks import arith, arith_scenarios
from agent.tasks.arith import INSTRUCTION, ArithTask, generate_problems
from agent.tasks.arith_scenarios import MAX_VALUE, NAMES, SCENARIOS, Draft, Reject
from agent.tasks.base import Problem, Task

_EXPR = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
_WORD_VALUES = {
    **{
        w: i
        for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
    },
    "dozen": 12,
    "twice": 2,
    "half": 2,
}
# Everyday facts a solution may use without the question stating them: legs of a chicken / goat,
# points of a basket, weekdays, days in a week, eggs in a dozen.
_IMPLICIT = {2, 3, 4, 5, 7, 12}
_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}


def _question_numbers(question: str) -> set[int]:
    words = re.findall(r"[a-z]+", question.lower())
    return {int(n) for n in re.findall(r"\d+", question)} | {
        _WORD_VALUES[w] for w in words if w in _WORD_VALUES
    }


def _check_solution(question: str, solution: str, gold: int, steps: int) -> None:
    """The solution is well formed, every step is right and grounded, and it ends with the gold answer."""
    lines = solution.split("\n")
    assert all(line.strip() == line and line for line in lines), solution
    assert lines[-1] == f"The answer is {gold}."
    assert len(lines) == steps + 1, solution
    known = _question_numbers(question) | _IMPLICIT
    value = None
    for line in lines[:-1]:
        exprs = _EXPR.findall(line)
        assert len(exprs) == 1, line
        a, op, b, c = exprs[0]
        a_, b_, c_ = int(a), int(b), int(c)
        if op == "/":
            assert b_ != 0 and a_ % b_ == 0, line
            assert a_ // b_ == c_, line
        else:
            assert _OPS[op](a_, b_) == c_, line
        assert a_ in known and b_ in known, (line, question)
        assert line[0].isupper() or line[0].isdigit(), line
        known.add(c_)
        value = c_
    assert value == gold, solution


def _check_problem(p: Problem) -> None:
    assert p.gold is not None and re.fullmatch(r"\d+", p.gold), p.gold
    gold = int(p.gold)
    assert 1 <= gold <= MAX_VALUE
    assert isinstance(p.meta["steps"], int) and 1 <= p.meta["steps"] <= 3
    assert p.meta["scenario"] in SCENARIOS
    assert isinstance(p.meta["solution"], str)
    _check_solution(p.question, p.meta["solution"], gold, p.meta["steps"])
    _check_text(p.question)
    assert p.question.endswith("?")


def _check_text(text: str) -> None:
    assert "{" not in text and "}" not in text and "  " not in text and " ." not in text, text
    for sentence in re.split(r"(?<=[.?!]) (?=[A-Z0-9$])", text):
        assert sentence[0].isupper(), (sentence, text)
    assert not re.search(r"\b1 [a-z]*[^su]s\b", text), text  # "1 cups" (but "1 bus" is fine)
    assert not re.search(r"\b(a|an) (a|an)\b", text), text


@pytest.fixture(scope="module")
def test_set() -> list[Problem]:
    return generate_problems(1000, seed=0)


# --- API -----------------------------------------------------------------------------------------


def test_all_names_exist() -> None:
    assert all(hasattr(arith, name) for name in arith.__all__)
    assert all(hasattr(arith_scenarios, name) for name in arith_scenarios.__all__)


def test_task_protocol() -> None:
    task = ArithTask(prompt="house")
    assert isinstance(task, Task)
    assert task.name == "arith"
    assert (
        task.instruction == INSTRUCTION and INSTRUCTION.count(".") == 1 and "The answer is N" in INSTRUCTION
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"n": 3, "steps": (0, 2)},
        {"n": 3, "steps": (3, 1)},
        {"n": 3, "steps": (1, 4)},
        {"n": 3, "distractor_prob": -0.1},
        {"n": 3, "distractor_prob": 1.5},
        {"n": 3, "split": "dev"},
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        generate_problems(**kwargs)  # type: ignore[arg-type]


def test_load_rejects_unknown_split() -> None:
    with pytest.raises(ConfigError, match="train"):
        ArithTask().load(3, split="validation")
    with pytest.raises(ConfigError):
        ArithTask(steps=(2, 5))


# --- reproducibility -----------------------------------------------------------------------------


def test_same_seed_same_list_and_prefix_stable() -> None:
    first = generate_problems(60, seed=7)
    assert first == generate_problems(60, seed=7)
    assert generate_problems(20, seed=7) == first[:20]
    assert [p.question for p in generate_problems(60, seed=8)] != [p.question for p in first]


def test_ids() -> None:
    test = generate_problems(3, seed=12)
    train = generate_problems(3, seed=12, split="train")
    assert [p.id for p in test] == ["arith-s12-00000", "arith-s12-00001", "arith-s12-00002"]
    assert [p.id for p in train] == [
        "arith-train-s12-00000",
        "arith-train-s12-00001",
        "arith-train-s12-00002",
    ]
    assert ArithTask().load(2, seed=12) == test[:2]


# --- correctness ---------------------------------------------------------------------------------


def test_every_solution_checks_out(test_set: list[Problem]) -> None:
    for p in test_set:
        _check_problem(p)


def test_extract_answer_reads_reference_solutions(test_set: list[Problem]) -> None:
    task = ArithTask()
    assert all(task.extract_answer(str(p.meta["solution"])) == p.gold for p in test_set[:200])
    assert task.extract_answer("I am not sure.") is None


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_scenario_writes_every_step_count(name: str, k: int) -> None:
    written = 0
    for seed in range(25):
        draft = Draft(random.Random(f"{name}/{k}/{seed}"))
        try:
            SCENARIOS[name](draft, k)
        except Reject:
            continue
        written += 1
        assert draft.n_steps == k and draft.answer is not None
        question = " ".join([*draft.body, draft.question])
        _check_text(question)
        solution = "\n".join([*draft.lines, f"The answer is {draft.answer}."])
        _check_solution(question, solution, draft.answer, k)
    assert written >= 20, f"{name} rejected too many drafts for k={k}"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    n=st.integers(1, 6),
    steps=st.sampled_from([(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]),
    distractor_prob=st.floats(0.0, 1.0),
    split=st.sampled_from(["train", "test"]),
)
def test_any_seed_gives_valid_problems(
    seed: int, n: int, steps: tuple[int, int], distractor_prob: float, split: str
) -> None:
    problems = generate_problems(n, seed=seed, steps=steps, distractor_prob=distractor_prob, split=split)  # type: ignore[arg-type]
    assert len(problems) == n
    assert len({p.question for p in problems}) == n
    for p in problems:
        _check_problem(p)
        assert steps[0] <= int(p.meta["steps"]) <= steps[1]


# --- variety -------------------------------------------------------------------------------------


def test_variety(test_set: list[Problem]) -> None:
    sample = test_set[:500]
    questions = [p.question for p in sample]
    assert len({p.meta["scenario"] for p in sample}) >= 25
    names = {person.name for person in NAMES if any(re.search(rf"\b{person.name}\b", q) for q in questions)}
    assert len(names) >= 30
    assert len({tuple(q.split()[:3]) for q in questions}) >= 100
    masked = {re.sub(r"\d+", "N", q.rsplit(". ", 1)[-1]) for q in questions}
    for person in NAMES:
        masked = {m.replace(person.name, "X") for m in masked}
    assert len(masked) >= 60, "too few distinct question forms"
    ops = Counter(expr[1] for p in sample for expr in _EXPR.findall(str(p.meta["solution"])))
    assert all(ops[op] >= 25 for op in "+-*/"), ops
    worded = [
        q for q in questions if re.search(r"\b(two|three|four|five|six|seven|eight|nine|ten|dozen)\b", q)
    ]
    assert len(worded) >= 50
    assert any("twice as" in q for q in questions) and any("half" in q for q in questions)


def test_step_mix(test_set: list[Problem]) -> None:
    counts = Counter(p.meta["steps"] for p in test_set)
    for k, share in arith.STEP_WEIGHTS.items():
        assert abs(counts[k] / len(test_set) - share) < 0.06, counts
    assert {p.meta["steps"] for p in generate_problems(50, seed=1, steps=(2, 2))} == {2}
    assert {p.meta["steps"] for p in generate_problems(100, seed=1, steps=(1, 2))} == {1, 2}


def test_distractor_rate(test_set: list[Problem]) -> None:
    rate = sum(int(p.meta["distractor"]) for p in test_set) / len(test_set)
    assert abs(rate - 0.3) < 0.05
    assert not any(p.meta["distractor"] for p in generate_problems(200, seed=2, distractor_prob=0.0))
    always = generate_problems(200, seed=2, distractor_prob=1.0)
    assert sum(int(p.meta["distractor"]) for p in always) >= 190


def test_distractor_does_not_change_the_problem() -> None:
    plain = generate_problems(200, seed=4, distractor_prob=0.0)
    noisy = generate_problems(200, seed=4, distractor_prob=1.0)
    for a, b in zip(plain, noisy, strict=True):
        assert (a.gold, a.meta["solution"]) == (b.gold, b.meta["solution"])
        if b.meta["distractor"]:
            extra = [s for s in re.split(r"(?<=[.?]) ", b.question) if s not in a.question]
            assert len(extra) == 1 and re.search(r"\d", extra[0]), (a.question, b.question)


# --- splits and few-shot -------------------------------------------------------------------------


def test_no_duplicate_questions(test_set: list[Problem]) -> None:
    assert len({p.question for p in test_set}) == len(test_set)


def test_train_and_test_never_overlap(test_set: list[Problem]) -> None:
    task = ArithTask()
    train = {p.question for seed in (0, 1) for p in task.load(1000, seed=seed, split="train")}
    test = {p.question for p in test_set} | {p.question for p in task.load(500, seed=1)}
    assert not train & test
    # Without distractors too: the story itself is never shared, only told with a different aside.
    cores = [generate_problems(1000, seed=0, split=split, distractor_prob=0.0) for split in ("train", "test")]
    assert not {p.question for p in cores[0]} & {p.question for p in cores[1]}


def test_few_shot(test_set: list[Problem]) -> None:
    shots = ArithTask(prompt="house").few_shot()
    assert len(shots) == 3 and shots == ArithTask(prompt="house").few_shot()
    for question, solution in shots:
        gold = int(solution.rsplit(" ", 1)[-1].rstrip("."))
        steps = solution.count("\n")
        _check_solution(question, solution, gold, steps)
    assert sorted(solution.count("\n") for _, solution in shots) == [1, 2, 3]
    shot_questions = {q for q, _ in shots}
    firsts = {generate_problems(1, seed=seed)[0].question for seed in range(1001)}
    train = {p.question for p in generate_problems(500, seed=0, split="train")}
    assert not shot_questions & (firsts | train | {p.question for p in test_set})


def test_same_problems_in_another_process() -> None:
    """Nothing depends on hash randomization or on state left by earlier calls."""
    code = (
        "from agent.tasks.arith import generate_problems;"
        "print([(p.id, p.question, p.gold) for p in generate_problems(30, seed=9)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([(p.id, p.question, p.gold) for p in generate_problems(30, seed=9)])
