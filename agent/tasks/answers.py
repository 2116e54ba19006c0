"""Finding and normalizing final answers: pure string functions, shared by every task.

``extract_answer`` finds the final answer a solution states (``#### N``, the last ``\\boxed{...}``,
or "the answer is ..."); ``normalize_number`` and ``parse_number`` turn GSM8K-style numbers
("$1,000", "18 dollars", "5.0", "25%", "\\frac{1}{2}") into one canonical form so that the grader
can compare plain numbers without a LaTeX parser. The grader, the solvers' votes and the search's
answer selectors all compare answers in this form.

An answer that is a computation over plain numbers means the result it states, the value after its
last "=": "12 + 16 = 28 packs" is 28, "$5 + $3 = $8" is 8, "2 * 3 = 6 * 2 = 12" is 12 (whether
the arithmetic is right is not checked: a wrong "12 + 16 = 29" is 29). Every part before the last
"=" must be numbers (decimals or digit fractions such as \\frac{1}{2}, with currency, percent signs
and unit words) joined by + - * / ^ × ÷ \\times \\cdot \\div (or an "x" between spaces) and
parentheses. Anything with a variable or another LaTeX
command ("x = 3", "y = 2x + 1", "f(2) = 5") is not a computation: it is left as written and graded
by math-verify, which reads a pure computation as its right-hand side too, so MATH's computations
grade as before and its equations stay equations.

Left out on purpose: deciding whether two answers are equal (``agent.tasks.grading`` does that,
with math-verify for anything that is not a plain number), evaluating a computation that states no
result ("12 + 16" is not a plain number: math-verify grades it, but it does not vote with "28";
evaluating it would misread ranges and dates such as "5-10" or "3/4/2020"), spelled-out numbers
("five"), scale words ("5 million") and percent-to-fraction conversion ("25%" normalizes to 25,
not 0.25).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

__all__ = ["extract_answer", "gsm8k_gold", "last_boxed", "normalize_number", "parse_number"]

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\b[\s:]*", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"))

# Plain numbers: optional sign, digits with an optional decimal part, or a simple fraction.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FRACTION_RE = re.compile(r"([+-]?\d+)\s*/\s*(\d+)")
_LATEX_FRACTION_RE = re.compile(r"([+-]?)\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TEXT_CMD_RE = re.compile(r"\\(?:text|mbox|mathrm|textrm|textbf)\s*\{([^{}]*)\}")
_UNIT_WORDS_RE = re.compile(r"(?:\s+[A-Za-z]{2,}(?:/[A-Za-z]+)?(?:\^\{?[23]\}?|[²³])?)+$")
# Words that look like units but are mathematics; a number followed by these is not plain.
_MATH_WORDS = frozenset({"pi", "sqrt", "cdot", "times", "frac", "mod", "pmod", "and", "or", "over"})
# One side of a computation (after _strip_decorations): numbers, each with optional unit words,
# joined by arithmetic operators, with parentheses. No variables, no other LaTeX commands.
_OPERAND = (
    r"(?:(?:\(|\\left\()\s*)*[+-]?\s*(?:[£€]\s*)?"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+|\\[dt]?frac\{\s*\d+\s*\}\{\s*\d+\s*\})"
    r"(?:\s+[A-Za-z]{2,})*(?:\s*(?:\)|\\right\)))*"
)
_OPERATOR = r"(?:\s*(?:[-+*/^×÷·]|\\times|\\cdot|\\div)(?![A-Za-z])\s*|\s+x\s+)"  # "3 x 4", not "3x"
_COMPUTATION_RE = re.compile(rf"\s*{_OPERAND}(?:{_OPERATOR}{_OPERAND})*\s*")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def extract_answer(text: str) -> str | None:
    """The final answer stated in ``text``, or None when it states none.

    In priority order: the last ``#### N``, the last ``\\boxed{...}`` (nested braces allowed), the
    last "the answer is ..." / "the final answer is ..." (case-insensitive). The answer comes back
    as written, without math delimiters or a trailing period; it is not normalized.
    """
    for find in (_last_hash, last_boxed, _last_answer_is):
        answer = find(text)
        if answer is not None:
            cleaned = _clean(answer)
            if cleaned:
                return cleaned
    return None


def last_boxed(text: str) -> str | None:
    """The contents of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``."""
    for match in reversed(list(_BOXED_RE.finditer(text))):
        content = _boxed_content(text, match.end())
        if content is not None:
            return content.strip()
    return None


def gsm8k_gold(answer_field: str) -> str:
    """The gold answer of a GSM8K ``answer`` field: the text after ``####``, commas removed.

    Raises ValueError when the field has no ``####`` marker.
    """
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '#### N'")
    return answer_field.split("####")[-1].strip().replace(",", "")


def normalize_number(s: str) -> str:
    """``s`` in canonical number form ("$1,000.50" → "1000.5", "18 dollars" → "18", "1/2" → "1/2").

    A computation over plain numbers becomes the result it states ("12 + 16 = 28 packs" → "28").
    Strings that are not a plain number (after removing currency, thousands separators, units,
    percent signs and a trailing period) come back stripped but otherwise unchanged.
    """
    value = parse_number(s)
    if value is None:
        return s.strip()
    if value.denominator == 1:
        return str(value.numerator)
    cleaned = _number_text(s)
    if "/" in cleaned or "frac" in cleaned:
        return str(value)
    return format(Decimal(value.numerator) / Decimal(value.denominator), "f")


def parse_number(s: str) -> Fraction | None:
    """The exact value of ``s`` if it is a plain number (integer, decimal or a/b), else None.

    A computation over plain numbers ("3 * 4 = 12") has the value of the result it states; one
    that states no result ("3 * 4") is not a plain number.
    """
    cleaned = _number_text(s)
    if _THOUSANDS_RE.fullmatch(cleaned.lstrip("+-")):
        cleaned = cleaned.replace(",", "")
    if _NUMBER_RE.fullmatch(cleaned):
        return Fraction(Decimal(cleaned))
    for pattern in (_FRACTION_RE, _LATEX_FRACTION_RE):
        match = pattern.fullmatch(cleaned)
        if match is not None and int(match.groups()[-1]) != 0:
            numerator = "".join(match.groups()[:-1])
            return Fraction(int(numerator), int(match.groups()[-1]))
    return None


def _last_hash(text: str) -> str | None:
    matches = _HASH_RE.findall(text)
    return matches[-1] if matches else None


def _last_answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end() :].split("\n", 1)[0]
    end = _SENTENCE_END_RE.search(tail)
    return tail[: end.start()] if end else tail


def _boxed_content(text: str, start: int) -> str | None:
    """The braced group starting at ``start`` (after optional spaces), or a bare ``\\boxed 5`` token."""
    rest = text[start:].lstrip()
    if not rest.startswith("{"):
        token = re.match(r"[^\s$]+", rest)
        return token.group(0) if token else None
    depth = 0
    for i, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None


def _clean(answer: str) -> str:
    """Strip whitespace, math delimiters and one trailing period, until nothing changes."""
    previous = None
    while answer != previous:
        previous = answer
        answer = answer.strip().removesuffix(".").rstrip()
        for left, right in _DELIMITERS:
            inner = answer[len(left) : -len(right)]
            if answer.startswith(left) and answer.endswith(right) and inner and right not in inner:
                answer = inner
                break
    return answer


def _number_text(s: str) -> str:
    """``s`` without decorations; of a computation over plain numbers, only the result it states."""
    cleaned = _strip_decorations(s)
    *computation, result = cleaned.split("=")
    if computation and all(_is_computation(part) for part in computation):
        return _strip_decorations(result)
    return cleaned


def _is_computation(part: str) -> bool:
    """Is ``part`` numbers joined by arithmetic (no variables, no math words such as "pi")?"""
    part = " ".join(part.split())  # single spaces keep the regex's backtracking short
    if _COMPUTATION_RE.fullmatch(part) is None:
        return False
    return not any(word.lower() in _MATH_WORDS for word in _WORD_RE.findall(part))


def _strip_decorations(s: str) -> str:
    """Remove what surrounds a number: boxes, currency, separators, units, percent, period."""
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = _TEXT_CMD_RE.sub(r" \1", s)
    for old, new in (("{,}", ","), ("\\!", ""), ("\\,", ""), ("\\ ", " "), ("~", " "), ("−", "-")):
        s = s.replace(old, new)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("^\\circ", "").replace("°", "").strip().removesuffix(".").strip()
    s = re.sub(r"^([+-]?)\s*[£€]\s*", r"\1", s)
    units = _UNIT_WORDS_RE.search(s)
    if units and units.start() > 0 and not _MATH_WORDS & set(units.group(0).lower().split()):
        s = s[: units.start()]
    return s.strip()
