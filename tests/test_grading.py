"""The shared grader (agent.tasks.grading): a table of tricky GSM8K and MATH cases, and failures.

One Grader (one spawn pool) serves the whole table; the failure tests start their own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from agent.errors import GradingError
from agent.tasks import grading
from agent.tasks.answers import parse_number
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
    # Wrong or useless answers.
    ("", "5", False),
    ("five", "5", False),
    ("\\frac{1}{0}", "5", False),
    ("the answer", "\\frac{1}{2}", False),
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
