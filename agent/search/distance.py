"""Pure text and vector distances for state merging: edit distance, cosine, nearest duplicate.

State merging (design §4) asks whether a new option says what one of its siblings already says.
This module holds the arithmetic that needs no model: Levenshtein distance over characters
(normalized by the longer text, after collapsing whitespace and case), cosine similarity over
plain float sequences, and "which sibling is the nearest one within a threshold". Everything here
is synchronous and stdlib-only; the async ``Similarity`` implementations in ``agent.merging`` wrap
it. Left out: tokenization (distances are over characters, as in the reference code), numpy
(option texts are a few hundred characters and vectors a few hundred floats), and any notion of
which threshold is right (that is a search setting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "cosine_similarity",
    "edit_distance",
    "find_duplicate",
    "find_similar_vector",
    "nearest_first",
    "normalize_text",
    "normalized_edit_distance",
]


def normalize_text(text: str) -> str:
    """``text`` with runs of whitespace collapsed to one space, stripped and lowercased."""
    return " ".join(text.split()).lower()


def edit_distance(a: str, b: str, *, limit: int | None = None) -> int:
    """Levenshtein distance (insert, delete, substitute; each costs 1) between ``a`` and ``b``.

    Two rows of the dynamic programme, so O(len(a) * len(b)) time and O(min) memory. With
    ``limit``, stop early once the distance is known to exceed it and return ``limit + 1``.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    # A shared prefix or suffix never changes the distance; trimming it is free speed.
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    a, b = a[start:end_a], b[start:end_b]
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    if not b:
        return len(a) if limit is None else min(len(a), limit + 1)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        diagonal, left = i - 1, i
        for j, char_b in enumerate(b, start=1):
            up = previous[j]
            # Neighbouring cells differ by at most 1, so a match can take the diagonal as is.
            left = diagonal if char_a == char_b else 1 + min(diagonal, up, left)
            current.append(left)
            diagonal = up
        # Row minima never decrease, so once a whole row is over the limit, so is the answer.
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1] if limit is None else min(previous[-1], limit + 1)


def normalized_edit_distance(a: str, b: str) -> float:
    """Edit distance of the normalized texts divided by the longer one's length: 0 same, 1 unlike."""
    a, b = normalize_text(a), normalize_text(b)
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


def cosine_similarity(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine of the angle between ``u`` and ``v``, in [-1, 1]; 0.0 when either is all zeros."""
    if len(u) != len(v):
        raise ValueError(f"vectors differ in length: {len(u)} and {len(v)}")
    norm_u, norm_v = math.hypot(*u), math.hypot(*v)
    if norm_u == 0.0 or norm_v == 0.0:
        return 0.0
    # Normalize each vector first: the product of two tiny norms would underflow to zero.
    dot = math.fsum((x / norm_u) * (y / norm_v) for x, y in zip(u, v, strict=True))
    return max(-1.0, min(1.0, dot))


def find_duplicate(candidate: str, siblings: Sequence[str], *, threshold: float) -> int | None:
    """Index of the sibling nearest to ``candidate`` by normalized edit distance, if that distance
    is at most ``threshold`` (in [0, 1]); ``None`` when no sibling is that close. Ties go to the
    earlier sibling."""
    _check_unit(threshold, "threshold")
    text = normalize_text(candidate)
    best: tuple[float, int] | None = None
    for index, sibling in enumerate(siblings):
        other = normalize_text(sibling)
        longest = max(len(text), len(other))
        if not longest:
            distance = 0.0
        else:
            # One past the threshold in characters, so float rounding cannot drop a boundary case.
            chars = edit_distance(text, other, limit=math.floor(threshold * longest) + 1)
            distance = chars / longest
        if distance <= threshold and (best is None or distance < best[0]):
            best = (distance, index)
    return best[1] if best else None


def find_similar_vector(
    vector: Sequence[float], others: Sequence[Sequence[float]], *, threshold: float
) -> int | None:
    """Index of the vector in ``others`` most cosine-similar to ``vector``, if that similarity is
    at least ``threshold``; ``None`` otherwise. Ties go to the earlier vector."""
    best: tuple[float, int] | None = None
    for index, other in enumerate(others):
        similarity = cosine_similarity(vector, other)
        if similarity >= threshold and (best is None or similarity > best[0]):
            best = (similarity, index)
    return best[1] if best else None


def nearest_first(candidate: str, siblings: Sequence[str]) -> list[int]:
    """Sibling indices ordered by normalized edit distance to ``candidate``, nearest first
    (stable: equally distant siblings keep their order)."""
    distances = [normalized_edit_distance(candidate, sibling) for sibling in siblings]
    return sorted(range(len(siblings)), key=distances.__getitem__)


def _check_unit(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
