"""Critic protocols: each scores a (partial) solution with a probability in [0, 1].

A state is the question plus the reasoning steps so far. Three roles, one shape:

- value function ``v(s)``: will a solution continued from this state end correct?
- process reward model ``PRM(s)``: is the last step of this state correct?
- outcome reward model ``ORM(s)``: is this complete solution's final answer correct?

Every critic returns a ``CriticScore``: the probability, what computing it cost, and whether the
critic had to fall back because its evidence was missing (``missing``), so such cases are counted
rather than silently turned into a 0 or a 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from agent.clients.base import Usage

__all__ = ["Critic", "CriticRole", "CriticScore"]

CriticRole = Literal["value", "prm", "orm"]


@dataclass(frozen=True, slots=True)
class CriticScore:
    p: float
    usage: Usage = field(default_factory=Usage)
    missing: bool = False  # the critic's evidence was absent and ``p`` is a documented fallback

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"a critic score is a probability in [0, 1], got {self.p}")


@runtime_checkable
class Critic(Protocol):
    """Scores the state (question, steps). ``name`` says what it is, e.g. "generative-prm"."""

    name: str
    role: CriticRole

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore: ...
