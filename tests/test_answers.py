"""Final-answer extraction and number normalization (agent.tasks.answers)."""

from __future__ import annotations

import pytest

from agent.tasks import answers
from agent.tasks.answers import extract_answer, gsm8k_gold, last_boxed, normalize_number, parse_number


def test_all_names_exist() -> None:
    assert all(hasattr(answers, name) for name in answers.__all__)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 + 4 = 7 apples.\n#### 7", "7"),
        ("#### 1,000", "1,000"),
        ("#### 5\nlater: #### 6", "6"),
        ("#### 42\nThe answer is $\\boxed{7}$.", "42"),
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("The answer is $\\boxed{\\{1,2\\}}$.", "\\{1,2\\}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed 5", "5"),
        ("The answer is 36.", "36"),
        ("the answer is 36", "36"),
        ("THE ANSWER IS -4.", "-4"),
        ("The answer is 3.5.", "3.5"),
        ("The answer is 18 dollars. That was easy.", "18 dollars"),
        ("The answer is $18.", "$18"),
        ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("The answer is 5. Wait, no. The final answer is 6.", "6"),
        ("The final answer is:\n$(0, 1]$", "(0, 1]"),
        ("The answer is: **42**", "42"),
        ("#### \nThe answer is 9.", "9"),
        ("no final answer here, just 12 and 13", None),
        ("", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_last_boxed_nested_and_fbox() -> None:
    assert last_boxed("\\boxed{a{b{c}}d} and \\fbox{e}") == "e"
    assert last_boxed("\\boxed{a{b{c}}d}") == "a{b{c}}d"
    assert last_boxed("\\boxed{1} then \\boxed{2") == "1"
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,000", "1000"),
        ("1,000,000", "1000000"),
        ("$1,000.50", "1000.5"),
        ("\\$18", "18"),
        ("18 dollars", "18"),
        ("540 meters", "540"),
        ("12 km/h", "12"),
        ("10\\text{ cm}^2", "10"),
        ("5.0", "5"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("18.", "18"),
        ("25%", "25"),
        ("25\\%", "25"),
        ("90^\\circ", "90"),
        ("-5", "-5"),
        ("−5", "-5"),
        ("1/2", "1/2"),
        ("2/4", "1/2"),
        ("\\frac{1}{2}", "1/2"),
        ("-\\dfrac{3}{6}", "-1/2"),
        ("1{,}000", "1000"),
        ("10,\\!000", "10000"),
        ("\\boxed{18}", "18"),
        # Computations over plain numbers: the result they state.
        ("12 + 16 = 28 packs of groceries", "28"),
        ("3 * 4 = 12.", "12"),
        ("$5 + $3 = $8", "8"),
        ("2 * 3 = 6 * 2 = 12", "12"),
        ("3 x 4 = 12", "12"),
        ("2 \\times 3 = 6", "6"),
        ("\\left(2 + 3\\right) \\cdot 4 = 20", "20"),
        ("\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}", "5/6"),
        ("10 / 4 = 2.5", "2.5"),
        ("3 packs * $4 = $12", "12"),
        ("25% * 80 = 20", "20"),
        ("\\boxed{12+16=28}", "28"),
        # Not plain numbers: returned stripped, otherwise unchanged.
        ("1,2", "1,2"),
        ("2 pi", "2 pi"),
        ("  x + 1 ", "x + 1"),
        ("1/0", "1/0"),
        ("12 + 16", "12 + 16"),
        ("28 (12 + 16)", "28 (12 + 16)"),
        ("y = 2x + 1", "y = 2x + 1"),
        ("x = 3", "x = 3"),
        ("2x = 4", "2x = 4"),
        ("10 = 2 \\cdot 5", "10 = 2 \\cdot 5"),
        ("5 because 2 + 3 = 5", "5 because 2 + 3 = 5"),
        ("3 >= 2", "3 >= 2"),
        ("12 + 16 =", "12 + 16 ="),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


def test_parse_number_is_exact() -> None:
    assert parse_number("0.1") == parse_number("1/10")
    assert parse_number("1,000") == 1000
    assert parse_number("(1,2)") is None
    assert parse_number("7 - 3 = 4 apples") == 4
    assert parse_number("7 - 3") is None  # a computation stating no result is not a plain number


def test_gsm8k_gold() -> None:
    assert gsm8k_gold("48/2 = <<48/2=24>>24\n#### 72") == "72"
    assert gsm8k_gold("x\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no marker")
