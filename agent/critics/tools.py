"""An outcome critic that checks a finished solution with tools: arithmetic, sympy, and its own code.

The paper's tool-augmented ORM (algorithm.md §6) checks MATH solutions symbolically or by running
code. ``ToolCheckedORM`` needs no model; it runs three checks on the solution text, cheapest first:

1. arithmetic: every claim ``a op b = r`` is recomputed (``check_claims``, shared with
   ``ArithmeticCritic``);
2. math (``math_check``), with sympy through math-verify in ``agent.tasks.grading.Grader``'s
   process pool:
   - every equality inside LaTeX math (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) whose
     sides are variable-free and whose left side is an expression, e.g.
     ``\\frac{3}{4} + \\frac{1}{8} = \\frac{7}{8}``: both sides must be equal. Skipped: sides with
     letters (variables, units, ``\\text``) other than ``\\frac \\sqrt \\cdot \\times \\div \\pi
     \\left \\right \\boxed``, decimals on the right (they may be rounded), chains with other
     relations (``\\approx``, ``<``, ``\\le``, ...); at most ``max_equations``, the last ones;
   - consistency: on the line that states the final answer, the value right after the last "="
     before the answer must equal the answer ("... = 12, so the answer is \\boxed{13}" fails);
3. code (``sandbox``): the fenced python blocks (three backticks and ``python``), joined in order,
   run in ``agent.critics.sandbox``, at most ``max_runs`` at a time per critic; the last non-empty
   line the code prints must equal the final answer.

The score (constants below; the first rule that applies wins):

    any arithmetic claim wrong, or any math check fails      P_WRONG = 0.1
    the code fails, prints nothing, or disagrees             P_WRONG = 0.1
    the code agrees with the final answer                    P_CODE_AGREES = 0.95
    arithmetic or math checked and everything held           P_RIGHT = 0.9
    nothing to check                                         P_NO_CLAIM = 0.5, missing=True

Code is only run when the solution states a final answer to compare with. Answers are compared by
the grader (plain numbers exactly, anything else by math-verify), so "0.5" equals "\\frac{1}{2}".

Left out on purpose: checking that the answer solves the question (that needs the gold answer or
a model), equations with variables, code that does not print its result, and other languages.
A grader failure (a crashed worker) raises GradingError: a broken tool is not evidence of a wrong
solution.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Sequence
from types import TracebackType

import anyio

from agent.critics.arithmetic import P_NO_CLAIM, P_RIGHT, P_WRONG, check_claims
from agent.critics.base import CriticRole, CriticScore
from agent.critics.sandbox import SandboxLimits, run_python
from agent.tasks.answers import extract_answer, parse_number
from agent.tasks.grading import Grader

__all__ = ["P_CODE_AGREES", "ToolCheckedORM", "code_blocks", "math_pairs"]

P_CODE_AGREES = 0.95
"""Score when the solution's own code, run in the sandbox, prints the stated final answer."""
_DEFAULT_LIMITS = SandboxLimits()

_CODE_RE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_KNOWN_COMMANDS_RE = re.compile(r"\\(?:[dt]?frac|sqrt|cdot|times|div|pi|left|right|boxed)(?![A-Za-z])")
_OTHER_RELATIONS = ("\\approx", "<", ">", "\\le", "\\ge", "\\ne", "\\sim", "\\equiv", "\\pm", "\\mp")
_EQUALS_RE = re.compile(r"(?<![<>!=:])=(?!=)")
_ANSWER_MARKERS_RE = re.compile(r"\\boxed|\\fbox|####|\banswer\s+is\b", re.IGNORECASE)
_RHS_END_RE = re.compile(r"\$|\\\)|\\\]|[,;:]|\s(?:so|thus|hence|therefore|which|and)\b", re.IGNORECASE)


def code_blocks(text: str) -> tuple[list[str], str]:
    """The fenced Python blocks of ``text``, and ``text`` with them removed."""
    return [m.group(1) for m in _CODE_RE.finditer(text)], _CODE_RE.sub("\n", text)


def math_pairs(text: str, answer: str | None, *, limit: int = 8) -> list[tuple[str, str]]:
    """What the math check compares, as (value, expected) pairs: see the module docstring."""
    pairs: list[tuple[str, str]] = []
    for match in _MATH_RE.finditer(text):
        content = next(group for group in match.groups() if group is not None)
        if any(relation in content for relation in _OTHER_RELATIONS):
            continue
        sides = [side.strip() for side in _EQUALS_RE.split(content)]
        for lhs, rhs in itertools.pairwise(sides):
            if _numeric(lhs) and _numeric(rhs) and "." not in rhs and parse_number(lhs) is None:
                pairs.append((rhs, lhs))
    pairs = pairs[-limit:] if limit > 0 else []
    consistency = _answer_line_value(text) if answer is not None else None
    if consistency is not None and answer is not None:
        pairs.append((consistency, answer))
    return pairs


class ToolCheckedORM:
    """Scores a finished solution by re-checking its arithmetic, its LaTeX math and its code.

    ``grader`` is shared when given (its pool is then the caller's to close); otherwise the critic
    starts its own on first use and ``aclose`` (or ``async with``) shuts it down. ``extract``
    finds the final answer in the solution text. ``max_runs`` (default: the CPU count) caps the
    sandboxed programs running at once.
    """

    name = "tool-checked-orm"
    role: CriticRole = "orm"

    def __init__(
        self,
        *,
        sandbox: bool = True,
        limits: SandboxLimits = _DEFAULT_LIMITS,
        math_check: bool = True,
        grader: Grader | None = None,
        extract: Callable[[str], str | None] = extract_answer,
        max_equations: int = 8,
        max_runs: int | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.math_check = math_check
        self.extract = extract
        self.max_equations = max_equations
        self.max_runs = max_runs or os.cpu_count() or 1
        self._grader = grader
        self._owns_grader = grader is None
        self._runs: anyio.CapacityLimiter | None = None  # created on first use, inside a loop

    @property
    def grader(self) -> Grader:
        if self._grader is None:
            self._grader = Grader(max_workers=1)
        return self._grader

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        blocks, prose = code_blocks("\n".join(steps))
        claims = check_claims(prose)
        if not all(claim.ok for claim in claims):
            return CriticScore(P_WRONG)
        answer = self.extract(prose)
        checked = bool(claims)
        if self.math_check:
            pairs = math_pairs(prose, answer, limit=self.max_equations)
            if pairs and not all(await self.grader.grade_many(pairs)):
                return CriticScore(P_WRONG)
            checked = checked or bool(pairs)
        if self.sandbox and blocks and answer is not None:
            agrees = await self._code_agrees("\n\n".join(blocks), answer)
            return CriticScore(P_CODE_AGREES if agrees else P_WRONG)
        return CriticScore(P_RIGHT) if checked else CriticScore(P_NO_CLAIM, missing=True)

    async def _code_agrees(self, code: str, answer: str) -> bool:
        if self._runs is None:
            self._runs = anyio.CapacityLimiter(self.max_runs)
        async with self._runs:
            result = await run_python(code, limits=self.limits)
        printed = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if not result.ok or not printed:
            return False
        return await self.grader.grade(printed[-1], answer)

    async def aclose(self) -> None:
        """Shut down the grading pool if this critic started it."""
        if self._owns_grader and self._grader is not None:
            grader, self._grader = self._grader, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(grader.close)

    async def __aenter__(self) -> ToolCheckedORM:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _numeric(side: str) -> bool:
    """True for a variable-free LaTeX expression with at least one digit."""
    stripped = _KNOWN_COMMANDS_RE.sub(" ", side)
    return bool(side) and any(ch.isdigit() for ch in side) and not re.search(r"[A-Za-z%,\\]", stripped)


def _answer_line_value(text: str) -> str | None:
    """On the last line stating the answer, the value after the last "=" before the answer."""
    for line in reversed(text.splitlines()):
        markers = list(_ANSWER_MARKERS_RE.finditer(line))
        if not markers:
            continue
        before = line[: markers[-1].start()]
        equals = list(_EQUALS_RE.finditer(before))
        if not equals:
            return None
        value = _RHS_END_RE.split(before[equals[-1].end() :], maxsplit=1)[0].strip()
        return value or None
    return None
