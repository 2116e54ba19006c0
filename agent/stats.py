"""Small statistics the reports share: the interval of a proportion."""

from __future__ import annotations

import math

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, trials: int, *, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / trials`` (z = 1.96: 95%).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``trials``
    successes, so it is sound for small samples and extreme accuracies. (0, 1) for no trials.
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
