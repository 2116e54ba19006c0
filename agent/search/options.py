"""Options: how a reasoning step ends and how steps join into a solution.

- ``line`` (GSM8K-style): a step ends at a newline.
- ``paragraph`` (MATH-style): a step ends at a blank line, but only once the step holds a formula
  (``$...$``, ``\\(...\\)``, ``\\[...\\]``); otherwise generation continues to the next blank line,
  bounded by the per-option token cap.
- Always: end of sequence, the final-answer pattern, or the token cap.

Steps are stored without separators and joined with exactly one separator, so a state's text is
the same however its steps were generated, and every child's prompt extends its parent's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.search.config import OptionKind

__all__ = ["OptionRule", "has_final_answer"]

_FINAL = re.compile(r"####\s*\S|\\boxed\s*\{|\banswer is\b", re.IGNORECASE)
_FORMULA = re.compile(r"\$[^$]+\$|\\\(|\\\[")


def has_final_answer(text: str) -> bool:
    """Whether ``text`` states a final answer (``#### N``, ``\\boxed{...}``, "the answer is")."""
    return _FINAL.search(text) is not None


@dataclass(frozen=True, slots=True)
class OptionRule:
    kind: OptionKind = "line"

    @property
    def separator(self) -> str:
        return "\n" if self.kind == "line" else "\n\n"

    @property
    def stop(self) -> tuple[str, ...]:
        return (self.separator,)

    def join(self, steps: Sequence[str]) -> str:
        """The solution text so far, ending with one separator when there are steps."""
        return "".join(f"{step}{self.separator}" for step in steps)

    def clean(self, text: str) -> str:
        """One step's text without leading/trailing blank space or separators."""
        return text.strip()

    def needs_more(self, text: str, *, stopped_at_separator: bool) -> bool:
        """A paragraph step that ended at a blank line before any formula keeps going."""
        if self.kind == "line" or not stopped_at_separator or has_final_answer(text):
            return False
        return _FORMULA.search(text) is None and bool(text.strip())
