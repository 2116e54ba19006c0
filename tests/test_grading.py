"""The shared grader (agent.tasks.grading): a table of tricky GSM8K and MATH cases, and failures.

A second table grades what each task extracts from a whole solution; votes are checked to compare
the same normalized answers the grader compares.

One Grader (one spawn pool) serves the whole table; the failure tests start their own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from agent.errors import GradingError
from agent.search.config import SearchConfig
from agent.search.final import choose
from agent.search.tree import Tree
from agent.solvers import vote
from agent.tasks import get_task, grading
from agent.tasks.answers import normalize_number, parse_number
from agent.tasks.grading import Grader, grade_sync

# (answer, gold, expected)
CASES: list[tuple[str, str, bool]] = [
    # GSM8K-style numbers: separators, currency, units, decimals, percents, signs.
    ("1,000", "1000", True),
    ("1000", "1,000", True),
    ("18 dollars", "18", True),
    ("$18", "18", True),
    ("\\$18.00", "18", True),
    ("5.0", "5", True),
    ("5", "5.0", True),
    ("540 meters", "540", True),
    ("25%", "25", True),
    ("25\\%", "25", True),
    ("-3", "-3", True),
    ("−3", "-3", True),
    ("3", "-3", False),
    ("17", "18", False),
    ("1000001", "1000000", False),
    ("18.5", "18", False),
    ("1,2", "12", False),
    # Fractions and decimals.
    ("0.5", "1/2", True),
    ("1/2", "0.5", True),
    ("0.5", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "0.5", True),
    ("\\tfrac12", "\\frac{1}{2}", True),
    ("0.3333333", "\\frac{1}{3}", True),
    ("0.33", "\\frac{1}{3}", False),
    ("\\frac{14}{3}", "14/3", True),
    ("\\frac{19}{12}", "\\frac{19}{12}", True),
    ("\\frac{12}{19}", "\\frac{19}{12}", False),
    # Sets, intervals, tuples.
    ("\\{2,1\\}", "\\{1,2\\}", True),
    ("\\{1,3\\}", "\\{1,2\\}", False),
    ("(0,1]", "(0,1]", True),
    ("[0,1)", "(0,1]", False),
    ("(4, \\infty)", "(4,\\infty)", True),
    ("[-2, 7]", "[-2,7]", True),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\left(3,\\frac{\\pi}{2}\\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("(1,2,3)", "(1,2,3)", True),
    ("(3,2,1)", "(1,2,3)", False),
    # Expressions, roots, pi.
    ("(x+1)^2", "x^2+2x+1", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2+2x-1", "(x+1)^2", False),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("2\\sqrt{3}", "2\\sqrt{2}", False),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("2\\pi", "2 \\pi", True),
    ("3.14159265", "\\pi", True),
    ("3\\pi", "2\\pi", False),
    ("-\\frac{1}{2}", "-0.5", True),
    ("\\frac{1}{2}", "-0.5", False),
    ("10\\text{ cm}", "10", True),
    ("$\\frac{3}{4}$", "\\frac{3}{4}", True),
    ("\\boxed{7}", "7", True),
    ("x = 5", "5", True),
    ("\\text{(C)}", "\\text{(C)}", True),
    # Computations over plain numbers mean the result they state (the value after the last "=").
    ("12 + 16 = 28 packs of groceries", "28", True),
    ("3 * 4 = 12.", "12", True),
    ("$5 + $3 = $8", "8", True),
    ("\\$5 + \\$3 = \\$8.00", "8", True),
    ("2 * 3 = 6 * 2 = 12", "12", True),
    ("2 * 3 = 6 * 2 = 12", "6", False),
    ("3 x 4 = 12 apples", "12", True),
    ("(2 + 3) \\times 4 = 20", "20", True),
    ("1,000 + 500 = 1,500", "1500", True),
    ("10 / 4 = 2.5", "\\frac{5}{2}", True),
    ("5 - 8 = -3", "-3", True),
    ("\\boxed{40 - 12 = 28}", "28", True),
    ("12 + 16 = 29", "28", False),  # the stated result counts, not the arithmetic
    ("12 + 16 = 29", "29", True),
    ("12 + 16", "28", True),  # no stated result: not a plain number, math-verify evaluates it
    ("28 (12 + 16)", "28", False),  # the result is not last: left as written
    # Equations with variables are not computations: MATH answers keep their meaning.
    ("y = 2x + 1", "1", False),
    ("y = 2x + 1", "y = 2x + 1", True),
    ("x = 3", "3", True),
    ("f(2) = 5", "5", True),
    ("no number here", "28", False),
    ("12 + 16 =", "28", False),
    # Wrong or useless answers.
    ("", "5", False),
    ("five", "5", False),
    ("\\frac{1}{0}", "5", False),
    ("the answer", "\\frac{1}{2}", False),
]


# (task, solution, gold, expected): what the task extracts from a whole solution, then the grade.
SOLUTIONS: list[tuple[str, str, str, bool]] = [
    ("arith", "Ann buys 12 + 16 packs.\nThe answer is 12 + 16 = 28 packs of groceries.", "28", True),
    ("arith", "The answer is 3 * 4 = 12.", "12", True),
    ("arith", "The answer is 2 * 3 = 6 * 2 = 12.", "12", True),
    ("arith", "I could not finish this one.", "12", False),
    ("gsm8k", "The answer is $5 + $3 = $8.", "8", True),
    ("gsm8k", "She pays 5 * 6 = 30 dollars.\n#### 30", "30", True),
    ("gsm8k", "The answer is 48 - 30 = 17 muffins.", "18", False),
    ("math", "So the line is $y = 2x + 1$.\n\nThe answer is $\\boxed{y = 2x + 1}$.", "y=2x+1", True),
    ("math", "The answer is $\\boxed{y = 2x + 1}$.", "1", False),
    ("math", "Their sum is $\\boxed{2 + 5 = 7}$.", "7", True),
    ("math", "The answer is $\\boxed{\\frac{1}{2}}$.", "0.5", True),
]


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    grader = Grader(max_workers=2)
    yield grader
    grader.close()


def _crash(answer: str, gold: str) -> bool:
    os._exit(3)


def _fail(answer: str, gold: str) -> bool:
    raise ValueError("parser exploded")


def _slow(answer: str, gold: str) -> bool:
    time.sleep(2)
    return True


@pytest.mark.anyio
async def test_table(grader: Grader) -> None:
    results = await grader.grade_many([(answer, gold) for answer, gold, _ in CASES])
    wrong = [case for case, result in zip(CASES, results, strict=True) if result != case[2]]
    assert wrong == []


@pytest.mark.anyio
async def test_solutions_table(grader: Grader) -> None:
    answers = [get_task(task).extract_answer(text) for task, text, _, _ in SOLUTIONS]
    golds = [gold for _, _, gold, _ in SOLUTIONS]
    results = await grader.grade_many(zip(answers, golds, strict=True))
    wrong = [case for case, result in zip(SOLUTIONS, results, strict=True) if result != case[3]]
    assert wrong == []


def test_equation_answers_keep_their_form() -> None:
    equations = ("y = 2x + 1", "x = 3", "2x = 4", "f(2) = 5", "a = 1, b = 2", "2 pi = 6.28", "3 <= 5")
    for answer in (*equations, "28 (12 + 16)", "12 + 16", "12 + 16 ="):
        assert parse_number(answer) is None
        assert normalize_number(answer) == answer
    assert normalize_number("no number here") == "no number here"
    assert normalize_number("12 + 16 = 28 packs of groceries") == "28"
    assert normalize_number("10 / 4 = 5/2") == "5/2"


def test_votes_count_a_computation_as_its_result() -> None:
    """Self-consistency and the ηMCTS vote selector compare the form the grader compares."""
    spelled = ["12 + 16 = 28 packs of groceries", "28", "$28", "2 * 3 = 6 * 2 = 12", "12 + 16 = 28."]
    assert vote([*spelled, None]) == ("28", {"28": 4, "12": 1})
    assert vote(["y = 2x + 1", "1", "y = 2x + 1"]) == ("y = 2x + 1", {"y = 2x + 1": 2, "1": 1})
    tree = Tree("q", SearchConfig(c_min_root=3, c_max_root=3))
    for answer, orm in (("12 + 16 = 28 packs", 0.4), ("29", 0.7), ("4 * 7 = 28", 0.4)):
        ticket = tree.select()
        assert ticket is not None
        normalized = normalize_number(answer)  # as the driver stores a terminal's answer
        tree.expand(ticket, option=answer, value=0.5, terminal=True, answer=normalized, scores={"orm": orm})
    assert choose(tree, "vote").answer == "28"  # 0.4 + 0.4 against 0.7


@pytest.mark.anyio
@pytest.mark.parametrize(("answer", "gold", "expected"), CASES[::7])
async def test_grade_one(grader: Grader, answer: str, gold: str, expected: bool) -> None:
    assert await grader.grade(answer, gold) is expected


@pytest.mark.anyio
async def test_none_answer_is_wrong(grader: Grader) -> None:
    assert await grader.grade(None, "5") is False
    assert await grader.grade_many([(None, "\\frac{1}{2}"), ("0.5", "\\frac{1}{2}")]) == [False, True]


@pytest.mark.anyio
async def test_grade_many_empty(grader: Grader) -> None:
    assert await grader.grade_many([]) == []


@pytest.mark.anyio
async def test_plain_numbers_skip_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_verify_worker", _crash)  # would kill a worker if it were called
    numeric = [
        case for case in CASES if parse_number(case[0]) is not None and parse_number(case[1]) is not None
    ]
    assert len(numeric) > 20
    async with Grader() as fast:
        assert await fast.grade_many([(a, g) for a, g, _ in numeric]) == [e for _, _, e in numeric]


def test_grade_sync_in_process() -> None:
    assert grade_sync("\\dfrac{1}{2}", "0.5") is True
    assert grade_sync("\\{1,2\\}", "\\{2,1\\}") is True
    assert grade_sync("(0,1]", "[0,1)") is False
    assert grade_sync(None, "1") is False


@pytest.mark.anyio
async def test_crashed_worker_raises_grading_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Grader(max_workers=1) as faulty:
        monkeypatch.setattr(grading, "_verify_worker", _crash)
        with pytest.raises(GradingError, match="died"):
            await faulty.grade("\\frac{1}{2}", "x")
        monkeypatch.undo()
        assert await faulty.grade("\\frac{1}{2}", "0.5") is True  # a fresh pool takes over
        assert await faulty.grade("\\sqrt{4}", "2") is True


@pytest.mark.anyio
async def test_deadline_raises_grading_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_verify_worker", _slow)
    async with Grader(max_workers=1, timeout_s=0.2) as slow:
        with pytest.raises(GradingError, match="longer than"):
            await slow.grade("\\frac{1}{2}", "x")


@pytest.mark.anyio
async def test_worker_exception_raises_grading_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_verify_worker", _fail)
    async with Grader(max_workers=1) as failing:
        with pytest.raises(GradingError, match="parser exploded"):
            await failing.grade("\\frac{1}{2}", "x")
