"""Select and filter: one trajectory per searched prompt, kept for fine-tuning or dropped, with why.

The trajectory is the best leaf by critic score: the terminal node with the highest critic value
(its mixed value/PRM/ORM score). It is kept when its ORM score exceeds ``gamma`` and, where a gold
answer exists and ``require_correct`` is set, when its answer is right. Every prompt gets a
``Decision`` saying which rule kept or dropped it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from agent.search.options import OptionRule
from agent.search.tree import Tree

__all__ = ["Decision", "FilterConfig", "select_trajectory"]

Reason = Literal["kept", "no_terminal", "no_answer", "orm_below_gamma", "wrong_answer"]


@dataclass(frozen=True, slots=True)
class FilterConfig:
    gamma: float = 0.8  # keep when the ORM score is above this (the paper's checkpoints suggest 0.9-0.98)
    require_correct: bool = True  # where a gold answer exists


@dataclass(frozen=True, slots=True)
class Decision:
    problem_id: str
    kept: bool
    reason: Reason
    steps: tuple[str, ...] = ()
    answer: str | None = None
    orm: float | None = None
    value: float | None = None
    correct: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def completion(self, rule: OptionRule, end: str) -> str:
        """The trajectory as a training completion: steps joined by one separator, then ``end``."""
        return rule.join(self.steps).rstrip("\n") + end


def select_trajectory(
    tree: Tree, *, problem_id: str, correct: bool | None, config: FilterConfig = FilterConfig()
) -> Decision:
    """Pick the best terminal trajectory of ``tree`` and decide whether to keep it.

    ``correct`` is whether that trajectory's answer matches the gold one (None without a gold
    answer); the caller grades it, since grading is async and lives outside the search core.
    """
    node = best_terminal(tree)
    if node is None:
        return Decision(problem_id, kept=False, reason="no_terminal")
    common = {
        "steps": tuple(tree.steps(node.id)),
        "answer": node.answer,
        "orm": node.scores.get("orm"),
        "value": node.value,
        "correct": correct,
    }
    if node.answer is None:
        return Decision(problem_id, kept=False, reason="no_answer", **common)
    orm = node.scores.get("orm", node.value if node.value is not None else 0.0)
    if orm <= config.gamma:
        return Decision(problem_id, kept=False, reason="orm_below_gamma", **common)
    if config.require_correct and correct is False:
        return Decision(problem_id, kept=False, reason="wrong_answer", **common)
    return Decision(problem_id, kept=True, reason="kept", **common)


def best_terminal(tree: Tree) -> Any:
    """The terminal node with the highest critic value (ties: more visits), or None."""
    terminals = tree.terminals()
    if not terminals:
        return None
    return max(terminals, key=lambda n: (n.value if n.value is not None else 0.0, n.visits))
