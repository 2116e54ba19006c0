"""What a task is: problems with gold answers, a prompt format, answer extraction.

A task knows how to load its problems, how to ask the policy for a solution and how to find the
final answer in a solution. Grading (is this answer equal to the gold one?) is shared by every task
and lives in ``agent.tasks.grading``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.tasks.variants import PromptVariant

__all__ = ["Problem", "Task"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: a stable id, the question text and, when known, the gold final answer."""

    id: str
    question: str
    gold: str | None = None
    meta: dict[str, str | int | float] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """A family of problems (GSM8K, MATH, generated arithmetic, ...)."""

    name: str
    prompt: PromptVariant  # the named instruction and worked examples (agent.tasks.variants)
    instruction: str  # the system instruction: how to lay out a solution and state the answer

    def few_shot(self) -> Sequence[tuple[str, str]]:
        """Worked (question, solution) pairs shown before the question, in the task's answer style."""
        ...

    def extract_answer(self, solution: str) -> str | None:
        """The final answer written in ``solution``, or None when it states none."""
        ...
