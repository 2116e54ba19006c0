"""Select and filter: one trajectory per searched prompt, kept for fine-tuning or dropped, with why.

The trajectory is the best leaf by critic score: the terminal node with the highest critic value
(its mixed value/PRM/ORM score), as in the paper (``pick="critic"``). With ``pick="correct"`` and a
gold answer, the best-scored terminal among those with the right answer is taken instead (and the
best overall when none is right): a search that found the answer somewhere then yields a trace
even when the critics ranked a wrong leaf first, which matters when the critics are weak. It is
kept when its ORM score exceeds ``gamma`` and, where a gold answer exists and ``require_correct``
is set, when its answer is right. Every prompt gets a ``Decision`` saying which rule kept or
dropped it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from agent.search.options import OptionRule
from agent.search.tree import Tree

__all__ = ["Decision", "FilterConfig", "Pick", "best_terminal", "select_trajectory"]

Reason = Literal["kept", "no_terminal", "no_answer", "orm_below_gamma", "wrong_answer"]
Pick = Literal["critic", "correct"]


@dataclass(frozen=True, slots=True)
class FilterConfig:
    gamma: float = 0.8  # keep when the ORM score is above this (the paper's checkpoints suggest 0.9-0.98)
    require_correct: bool = True  # where a gold answer exists
    pick: Pick = "critic"  # "correct": prefer the best-scored terminal with the gold answer

    def __post_init__(self) -> None:
        if self.pick not in ("critic", "correct"):
            from agent.errors import ConfigError

            raise ConfigError(f"pick must be 'critic' or 'correct', got {self.pick!r}")


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
    tree: Tree,
    *,
    problem_id: str,
    grades: Mapping[str, bool] | None = None,
    config: FilterConfig = FilterConfig(),
) -> Decision:
    """Pick one terminal trajectory of ``tree`` and decide whether to keep it.

    ``grades`` says for each terminal answer whether it matches the gold one (None or a missing
    answer: no gold to check against); the caller grades, since grading is async and lives outside
    the search core.
    """
    grades = grades or {}
    node = best_terminal(tree)
    if config.pick == "correct":
        node = best_terminal(tree, among=lambda n: grades.get(n.answer) is True) or node
    if node is None:
        return Decision(problem_id, kept=False, reason="no_terminal")
    correct = grades.get(node.answer) if node.answer is not None else None
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


def best_terminal(tree: Tree, among: Callable[[Any], bool] = lambda node: True) -> Any:
    """The terminal node (of those ``among`` accepts) with the highest critic value (ties: more
    visits), or None."""
    terminals = [n for n in tree.terminals() if among(n)]
    if not terminals:
        return None
    return max(terminals, key=lambda n: (n.value if n.value is not None else 0.0, n.visits))
