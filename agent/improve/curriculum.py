"""A curriculum over problem difficulty for self-improvement cycles.

A problem's difficulty is its number of solution steps: the generator's count for ``arith``, the
lines of the reference solution for GSM8K, the level (1-5) for MATH (``difficulty``). Without a
curriculum a cycle searches training problems as they come, and with a small policy almost every
kept trajectory is a one-step problem: multi-step problems are rarely solved, so never trained on.

With ``kind="steps"`` each cycle's real training prompts are drawn by level:

- The **frontier** is the easiest level not yet passed. A level is passed when at least ``advance``
  of its searched real prompts were kept (the search found and kept a right trajectory), counted
  over the latest cycles that searched it until ``min_searched`` prompts are pooled, so a handful of
  review prompts cannot decide alone. The first cycle starts at the easiest level; once every
  level is passed the frontier stays at the hardest.
- ``frontier_share`` of the prompts (rounded) are frontier problems; the rest review the easier
  levels in equal parts (so what was learned is kept); at the easiest level all are frontier ones.
- Problems are taken in the pool's order, those no earlier cycle searched first, each at most once
  per cycle; a level with too few problems gives its share to the nearest levels. Problems without
  a difficulty (a MATH record of "Level ?") are left out.

The rates per level are read from the earlier cycles' own files (``prompts/prompts.jsonl`` and
``search/results.jsonl``), so a resumed run draws the same prompts, and each cycle's
``prompts/done.json`` records the frontier, the prompts per level and the rates it was chosen from.

``more_terminals`` uses the same per-level counts to spend more search where few trees find the
gold answer: such a level's minimum terminals per tree doubles each cycle until they do.
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
    "level_rates",
    "more_terminals",
    "plan",
]

CurriculumKind = Literal["none", "steps"]


@dataclass(frozen=True)
class CurriculumConfig:
    kind: CurriculumKind = "none"
    advance: float = 0.25  # share of a level's searched real prompts kept for the level to count as passed
    frontier_share: float = 0.5  # share of the real prompts drawn at the frontier level
    min_searched: int = 10  # a level's rate pools the latest cycles until this many were searched

    def __post_init__(self) -> None:
        if self.kind not in ("none", "steps"):
            raise ConfigError(f"curriculum must be 'none' or 'steps', not {self.kind!r}")
        if self.min_searched < 1:
            raise ConfigError(f"curriculum min_searched must be at least 1, got {self.min_searched}")
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
    """The difficulty levels present in ``pool``; ConfigError when no problem has one."""
    levels = sorted({level for problem in pool if (level := difficulty(problem)) is not None})
    if not levels:
        raise ConfigError(
            "no training problem has a difficulty: a curriculum over steps needs the generated task, "
            "GSM8K records with their solutions, or MATH records with a level; run without --curriculum"
        )
    return levels


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
    for row in _real_rows(prompts_path):
        level = difficulty(Problem(id=row["id"], question="", gold=None, meta=row.get("meta") or {}))
        if level is not None:
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
    """The levels whose trees need more terminals in cycle ``k``, and how many (at least).

    Every level starts at ``base``; when fewer than ``found_below`` of the previous cycle's trees of
    a level had the gold among their terminals, the level's minimum doubles (up to ``cap``);
    otherwise it stays. Only levels above ``base`` are returned; the previous cycle's are read from
    its ``search/done.json``.
    """
    if k <= 1:
        return {}
    previous = root / f"cycle_{k - 1}"
    done = previous / "search" / "done.json"
    raised = (json.loads(done.read_text()) if done.exists() else {}).get("min_terminals", {})
    plan = {int(level): int(n) for level, n in raised.items()}
    for level, stats in cycle_levels(previous).items():
        current = plan.get(level, base)
        plan[level] = min(cap, 2 * current) if stats.found_rate < found_below else current
    return {level: n for level, n in sorted(plan.items()) if n > base}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _real_rows(path: Path) -> list[dict[str, Any]]:
    """A cycle's prompts.jsonl rows of real training problems (imagined ones name their source)."""
    return [row for row in _rows(path) if "source" not in (row.get("meta") or {})]


def level_rates(
    levels: Sequence[int], history: Sequence[dict[int, LevelStats]], min_searched: int
) -> dict[int, LevelStats]:
    """Per level, its searched and kept prompts pooled over the latest cycles that searched it, going
    back until at least ``min_searched`` are counted (or the history ends); absent if never searched."""
    rates = {}
    for level in levels:
        searched = kept = found = 0
        for cycle in reversed(history):
            if level in cycle:
                searched += cycle[level].searched
                kept += cycle[level].kept
                found += cycle[level].found
                if searched >= min_searched:
                    break
        if searched:
            rates[level] = LevelStats(searched, kept, found)
    return rates


def frontier(levels: Sequence[int], rates: dict[int, LevelStats], advance: float) -> int:
    """The easiest level not yet passed (kept share below ``advance``), or the hardest once all are."""
    for level in levels:
        if level not in rates or rates[level].rate < advance:
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
    """``counts`` problems per level from ``pool`` in order, unused ones first, each at most once.

    A level with fewer problems than its count gives the rest to the nearest levels that have
    problems left (the harder one first); fewer problems than asked only when the pool runs out.
    """
    by_level: dict[int, list[Problem]] = {}
    for problem in pool:
        level = difficulty(problem)
        if level is not None:
            by_level.setdefault(level, []).append(problem)
    order = {
        level: [p for p in problems if p.id not in used] + [p for p in problems if p.id in used]
        for level, problems in by_level.items()
    }
    take = {level: 0 for level in order}
    short = 0
    for level, n in counts.items():
        got = min(n, len(order.get(level, ())))
        take[level] = got
        short += n - got
    for level in sorted(counts, reverse=True):  # the shortfall to the nearest levels with room
        if not short:
            break
        for other in sorted(order, key=lambda lv: (abs(lv - level), -lv)):
            extra = min(short, len(order[other]) - take[other])
            take[other] += extra
            short -= extra
    return [p for level in sorted(take) for p in order[level][: take[level]]]


def used_ids(root: Path, k: int) -> set[str]:
    """Ids of the real prompts cycles 1..k-1 searched."""
    ids: set[str] = set()
    for j in range(1, k):
        path = root / f"cycle_{j}" / "prompts" / "prompts.jsonl"
        if path.exists():
            ids.update(row["id"] for row in _real_rows(path))
    return ids


def choose(
    pool: Sequence[Problem], n: int, *, root: Path, k: int, config: CurriculumConfig
) -> tuple[list[Problem], dict[str, Any]]:
    """Cycle ``k``'s ``n`` real prompts from ``pool`` and what decided them (for ``done.json``)."""
    levels = levels_of(pool)
    rates = level_rates(levels, level_history(root, k), config.min_searched)
    at = frontier(levels, rates, config.advance)
    counts = plan(levels, at, n, config.frontier_share)
    chosen = draw(pool, counts, used_ids(root, k))
    per_level = {str(level): sum(1 for p in chosen if difficulty(p) == level) for level in levels}
    info = {
        "frontier": at,
        "per_level": {level: c for level, c in per_level.items() if c},
        "rates": {str(lv): [s.kept, s.searched] for lv, s in rates.items()},
    }
    return chosen, info
