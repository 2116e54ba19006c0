"""Critics: value function, PRM and ORM behind one protocol, and the mix that makes a node's value.

Shipped here are the critics that need no training: ``GenerativeCritic`` (asks a model yes/no and
reads the log-probabilities), ``ArithmeticCritic`` (recomputes stated arithmetic) and
``SelfConsistencyScorer`` (agreement among the tree's answers; not a verifier). Trained critics
arrive later through the same ``Critic`` protocol.

The node value at expansion mixes the critics' scores, all probabilities in [0, 1]:
``combine(weights, scores) = sum(w_r * s_r) / sum(w_r)`` over the roles with ``w_r > 0``. A weight
of 0 means that critic is never called: the caller checks ``weights.active`` and skips it; passing
its score anyway is harmless, it is ignored. Averaging the ORM over rollouts (``mean_k ORM``) is
the caller's job; ``combine`` takes one number per role.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from agent.critics.agreement import SelfConsistencyScorer
from agent.critics.arithmetic import ArithmeticCritic, CheckedCritic, Claim, check_claims
from agent.critics.base import Critic, CriticRole, CriticScore
from agent.critics.generative import GenerativeCritic
from agent.errors import ConfigError

__all__ = [
    "ArithmeticCritic",
    "CheckedCritic",
    "Claim",
    "Critic",
    "CriticRole",
    "CriticScore",
    "CriticWeights",
    "GenerativeCritic",
    "SelfConsistencyScorer",
    "check_claims",
    "combine",
]


@dataclass(frozen=True, slots=True)
class CriticWeights:
    """The weights ``b_value``, ``b_prm``, ``b_orm`` of the node value (paper: all 1.0).

    Each is a finite number >= 0 and at least one is positive. 0 switches that critic off: the
    search must not call it (see ``active``).
    """

    value: float = 1.0
    prm: float = 1.0
    orm: float = 1.0

    def __post_init__(self) -> None:
        for role, weight in self.items():
            if not math.isfinite(weight) or weight < 0:
                raise ConfigError(f"critic weight {role} must be a finite number >= 0, got {weight}")
        if not any(weight > 0 for _, weight in self.items()):
            raise ConfigError("at least one critic weight (value, prm, orm) must be positive")

    def items(self) -> tuple[tuple[CriticRole, float], ...]:
        return (("value", self.value), ("prm", self.prm), ("orm", self.orm))

    @property
    def active(self) -> tuple[CriticRole, ...]:
        """The roles whose critics the search calls: those with a positive weight."""
        return tuple(role for role, weight in self.items() if weight > 0)


def combine(weights: CriticWeights, scores: Mapping[CriticRole, float]) -> float:
    """The weighted mean of the active roles' scores; every active role must have a score in [0, 1].

    Scores of roles with weight 0 are ignored (their critics should not have been called).
    """
    total = 0.0
    for role in weights.active:
        if role not in scores:
            raise ValueError(f"no {role} score, but its weight is {getattr(weights, role)}")
        score = scores[role]
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"the {role} score must be in [0, 1], got {score}")
        total += getattr(weights, role) * score
    return total / sum(getattr(weights, role) for role in weights.active)
