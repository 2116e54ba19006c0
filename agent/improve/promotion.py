"""When a cycle's candidate is promoted: the noise rule, and the choice among a candidate's parts.

Pure functions of held-out evaluations (``{method: {"accuracy", "problems", ...}}``), used by
``agent.improve.cycle``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CRITIC_FREE", "PARTS", "judge_apart", "promote"]


def promote(new: dict[str, dict[str, Any]], best: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Promote unless a method got worse beyond noise (one binomial standard error of the best)."""
    for method, result in new.items():
        old = best.get(method)
        if old is None:
            continue
        p, n = old["accuracy"], max(old["problems"], 1)
        noise = math.sqrt(max(p * (1 - p), 1 / n) / n)
        if result["accuracy"] < p - noise:
            return False, f"{method} accuracy {result['accuracy']:.3f} < {p:.3f} - noise {noise:.3f}"
    return True, "not worse than the current policy beyond noise on any method"


PARTS = ("together", "policy", "critics")


def judge_apart(
    parts: dict[str, dict[str, dict[str, Any]]], baseline: dict[str, dict[str, Any]]
) -> tuple[str | None, str]:
    """Which part of a cycle's candidate to promote, from its evaluations with each part alone.

    ``parts`` holds the held-out evaluations of ``together`` (the new policy with the new critics),
    ``policy`` (the new policy with the current critics) and ``critics`` (the current policy with
    the new critics). A part qualifies when no method got worse than ``baseline`` beyond noise
    (``promote``); among those, the highest mean accuracy over the methods wins, ties going to the
    order of ``PARTS``. None when no part qualifies.
    """
    qualified = []
    reasons = []
    for label in PARTS:
        if label not in parts:
            continue
        ok, why = promote(parts[label], baseline)
        if ok:
            mean = sum(r["accuracy"] for r in parts[label].values()) / max(1, len(parts[label]))
            qualified.append((-mean, PARTS.index(label), label))
        else:
            reasons.append(f"{label}: {why}")
    if not qualified:
        return None, "no part is as good as the current policy and critics (" + "; ".join(reasons) + ")"
    _, _, best = min(qualified)
    what = {
        "together": "new policy and new critics",
        "policy": "new policy with the current critics",
        "critics": "new critics with the current policy",
    }[best]
    return best, f"{what}: the best of the parts not worse than the current ones beyond noise"


CRITIC_FREE = ("greedy", "sc")  # evaluation methods that never call a critic
