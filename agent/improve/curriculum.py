"""A curriculum over problem difficulty for self-improvement cycles.

A problem's difficulty is its number of solution steps: the generator's count for ``arith``, the
lines of the reference solution for GSM8K, the level (1-5) for MATH (``difficulty``). Without a
curriculum a cycle searches training problems as they come, and with a small policy almost every
kept trajectory is a one-step problem: multi-step problems are rarely solved, so never trained on.

With ``kind="steps"`` each cycle's real training prompts are drawn by level:

- The **frontier** is the easiest level not yet passed. A level is passed when, in the latest
  earlier cycle that searched real prompts of it, at least ``advance`` of them were kept (the
  search found and kept a right trajectory). The first cycle starts at the easiest level.
- ``frontier_share`` of the prompts are frontier problems; the rest review the easier levels, in
  equal parts (so what was learned is kept); at the easiest level all prompts are frontier ones.
- Problems are taken in the pool's order, skipping those earlier cycles searched, as long as the
  level has unused ones (then it starts over).

The rates per level are read from the earlier cycles' own files (``prompts/prompts.jsonl`` and
``search/results.jsonl``), so a resumed run draws the same prompts, and each cycle's
``prompts/done.json`` records the frontier and the rates it was chosen from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError
from agent.tasks import Problem

__all__ = [
    "CurriculumConfig",
    "LevelStats",
    "base_terminals",
    "choose",
    "cycle_levels",
    "difficulty",
    "draw",
    "frontier",
    "level_history",
    "more_terminals",
    "plan",
]

CurriculumKind = Literal["none", "steps"]


@dataclass(frozen=True)
class CurriculumConfig:
    kind: CurriculumKind = "none"
    advance: float = 0.25  # share of a level's searched real prompts kept for the level to count as passed
    frontier_share: float = 0.5  # share of the real prompts drawn at the frontier level

    def __post_init__(self) -> None:
        if self.kind not in ("none", "steps"):
            raise ConfigError(f"curriculum must be 'none' or 'steps', not {self.kind!r}")
        if not (0 < self.advance <= 1 and 0 < self.frontier_share <= 1):
            raise ConfigError(
                f"curriculum advance (--advance, {self.advance}) and frontier share ({self.frontier_share}) "
                "must be in (0, 1]"
            )


@dataclass(frozen=True)
class LevelStats:
    searched: int
    kept: int
    found: int = 0  # trees with the gold answer among their terminals

    @property
    def rate(self) -> float:
        return self.kept / self.searched if self.searched else 0.0

    @property
    def found_rate(self) -> float:
        return self.found / self.searched if self.searched else 0.0


def difficulty(problem: Problem) -> int | None:
    """The problem's number of solution steps (``meta["steps"]``) or MATH level; None if unknown."""
    for key in ("steps", "level"):
        value = problem.meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def levels_of(pool: Sequence[Problem]) -> list[int]:
    """The difficulty levels present in ``pool``; ConfigError when a problem has none."""
    levels = set()
    for problem in pool:
        level = difficulty(problem)
        if level is None:
            raise ConfigError(
                f"training problem {problem.id} has no difficulty: a curriculum over steps needs the "
                "generated task, GSM8K records with their solutions, or MATH records with a level; "
                "run without --curriculum"
            )
        levels.add(level)
    return sorted(levels)


def level_history(root: Path, k: int) -> list[dict[int, LevelStats]]:
    """Per earlier cycle (1..k-1, oldest first): searched and kept real prompts by level."""
    return [cycle_levels(root / f"cycle_{j}") for j in range(1, k)]


def cycle_levels(cycle: Path) -> dict[int, LevelStats]:
    """A cycle's searched and kept real prompts by difficulty (empty before its search has run)."""
    prompts_path = cycle / "prompts" / "prompts.jsonl"
    results_path = cycle / "search" / "results.jsonl"
    if not prompts_path.exists() or not results_path.exists():
        return {}
    levels: dict[str, int] = {}
    for row in _rows(prompts_path):
        meta = row.get("meta") or {}
        level = difficulty(Problem(id=row["id"], question="", gold=None, meta=meta))
        if level is not None and "source" not in meta:  # imagined prompts name their source
            levels[row["id"]] = level
    searched: dict[int, int] = {}
    kept: dict[int, int] = {}
    found: dict[int, int] = {}
    for record in _rows(results_path):
        level = levels.get(record.get("id", ""))
        if level is not None:
            searched[level] = searched.get(level, 0) + 1
            kept[level] = kept.get(level, 0) + bool(record.get("kept"))
            gold = any(t.get("correct") for t in record.get("terminals") or ())
            found[level] = found.get(level, 0) + gold
    return {level: LevelStats(searched[level], kept[level], found[level]) for level in sorted(searched)}


def base_terminals(min_terminals: int) -> int:
    """A level's minimum terminals per tree before ``more_terminals`` raises it."""
    return max(2, min_terminals)


def more_terminals(root: Path, k: int, *, base: int, cap: int, found_below: float = 0.5) -> dict[int, int]:
    """Per level, the minimum terminals of cycle ``k``'s trees where few trees find the gold.

    A level starts at ``base``; when fewer than ``found_below`` of the previous cycle's trees of a
    level had the gold among their terminals, the level's minimum doubles (up to ``cap``); otherwise
    it stays. The previous cycle's setting is read from its ``search/done.json``.
    """
    if k <= 1:
        return {}
    previous = root / f"cycle_{k - 1}"
    done = previous / "search" / "done.json"
    before = {
        int(lv): int(n)
        for lv, n in (json.loads(done.read_text()) if done.exists() else {}).get("min_terminals", {}).items()
    }
    plan = dict(before)
    for level, stats in cycle_levels(previous).items():
        current = before.get(level, base)
        plan[level] = min(cap, 2 * current) if stats.found_rate < found_below else current
    return dict(sorted(plan.items()))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def frontier(levels: Sequence[int], history: Sequence[dict[int, LevelStats]], advance: float) -> int:
    """The easiest level not yet passed (the hardest level once all are)."""
    for level in levels:
        latest = next((cycle[level] for cycle in reversed(history) if level in cycle), None)
        if latest is None or latest.rate < advance:
            return level
    return levels[-1]


def plan(levels: Sequence[int], at: int, n: int, share: float) -> dict[int, int]:
    """Prompts per level: ``share`` of ``n`` at level ``at``, the rest spread over easier levels."""
    below = [level for level in levels if level < at]
    if not below:
        return {at: n}
    front = max(1, round(n * share)) if n else 0
    rest = n - front
    counts = {level: rest // len(below) for level in below}
    for level in reversed(below[len(below) - rest % len(below) :]):  # the remainder to the hardest
        counts[level] += 1
    counts[at] = front
    return {level: c for level, c in sorted(counts.items()) if c}


def draw(pool: Sequence[Problem], counts: dict[int, int], used: set[str]) -> list[Problem]:
    """``counts`` problems per level from ``pool`` in order, unused ones first."""
    chosen: list[Problem] = []
    for level, n in counts.items():
        at_level = [p for p in pool if difficulty(p) == level]
        if not at_level:
            raise ConfigError(f"no training problem of difficulty {level}")
        fresh = [p for p in at_level if p.id not in used]
        order = fresh + [p for p in at_level if p.id in used]
        chosen.extend(order[i % len(order)] for i in range(n))
    return chosen


def used_ids(root: Path, k: int) -> set[str]:
    """Ids of the real prompts cycles 1..k-1 searched."""
    ids: set[str] = set()
    for j in range(1, k):
        path = root / f"cycle_{j}" / "prompts" / "prompts.jsonl"
        if path.exists():
            ids.update(row["id"] for row in _rows(path) if "source" not in (row.get("meta") or {}))
    return ids


def choose(
    pool: Sequence[Problem], n: int, *, root: Path, k: int, config: CurriculumConfig
) -> tuple[list[Problem], dict[str, Any]]:
    """Cycle ``k``'s ``n`` real prompts from ``pool`` and what decided them (for ``done.json``)."""
    levels = levels_of(pool)
    history = level_history(root, k)
    at = frontier(levels, history, config.advance)
    counts = plan(levels, at, n, config.frontier_share)
    chosen = draw(pool, counts, used_ids(root, k))
    latest = history[-1] if history else {}
    info = {
        "frontier": at,
        "per_level": {str(level): c for level, c in counts.items()},
        "previous_rates": {str(lv): [s.kept, s.searched] for lv, s in latest.items()},
    }
    return chosen, info
