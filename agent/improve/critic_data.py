"""Critic training data from sampled solutions: ORM, value and PRM rows with Monte-Carlo targets.

Input: for each training problem, J sampled full solutions (``Trajectory``), already graded.
Output (``critic_rows``, a pure function): three lists of ``Row``.

- ORM: one row per trajectory with at least one step; target 1.0 if it ended correct, else 0.0.
- value: one row per distinct step prefix per problem, the empty prefix (the root state) included;
  target = the Monte-Carlo success rate through that prefix = correct / count over the problem's
  trajectories that pass through it (``count`` is how many do); label = target >= 0.5.
- PRM (Math-Shepherd): one row per distinct non-empty prefix, judged as "is its last step good?";
  same target, label = target >= ``prm_threshold``. The two standard choices:
  *hard estimation* (HE, the default ``1e-9``): a step is good if ANY rollout through it reaches
  the right answer; *soft estimation* (SE): the label is the mean itself, so train on ``target``
  (regression or soft labels), or binarize at 0.5.

Prefix identity: two prefixes are the same when their steps, each stripped and with whitespace runs
collapsed to one space, are equal. A row keeps the (stripped) texts of the first trajectory that
reached it, so the output is deterministic given the input order.

Rows with exact labels (``labelled_rows``): when each solution's first wrong step is known
(``agent.improve.synth``: reference solutions and controlled corruptions of the generated task, and
the policy's own samples labelled step by step against the reference), the ORM target is the final
grade, the PRM labels every step up to the first wrong one (right before it, wrong at it; nothing
after it: the first error is what a PRM must find), and the value of a prefix is 0 once it holds a
wrong step; an error-free prefix gets the Monte-Carlo success rate of the group's solutions through
it (the policy's samples) or 1.0 (``optimistic=True``, synthetic solutions: the reference shows it can
still end right). ``mix_rows`` combines the policy's rows with a share of synthetic rows per role.

Then: ``split_rows`` / ``split_critic_rows`` hold out whole problems (a problem never lands on both
sides), ``to_examples`` turns rows into (prompt, completion) pairs for a generative critic, and
``write_jsonl`` / ``read_jsonl`` store rows (atomic write).

Left out on purpose: grading (done before), sampling (no clients here), weighting rows by
``count`` (the field is there for the trainer), and per-step rollouts: the MC estimate of a prefix
uses only the J samples that happen to share it, so a prefix seen once has a 0/1 target. Empty
trajectories count as failed rollouts from the root but give no ORM or PRM row (nothing to judge).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args

from agent.critics.base import CriticRole
from agent.errors import ConfigError, DataError

__all__ = [
    "CriticRows",
    "Row",
    "Trajectory",
    "balanced_rows",
    "critic_rows",
    "heldout_problems",
    "labelled_rows",
    "mix_rows",
    "read_jsonl",
    "split_critic_rows",
    "split_rows",
    "to_examples",
    "write_jsonl",
]

PromptFn = Callable[[str, Sequence[str]], str]


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One sampled full solution of one problem, graded: ``correct`` is its final answer's grade."""

    problem_id: str
    question: str
    gold: str | None
    steps: tuple[str, ...]
    answer: str | None
    correct: bool

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Trajectory:
        """A trajectory from one JSON line; other fields (log-probabilities, ...) are left out.
        KeyError or TypeError when a field is missing or of the wrong kind."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known} | {"steps": tuple(record["steps"])})


@dataclass(frozen=True, slots=True)
class Row:
    """One training row for a critic: the state (question, steps), its target in [0, 1] and label.

    ``count`` is how many trajectories support the target (1 for ORM rows); ``role`` says which
    critic the row is for, so rows of one role cannot be fed to another role's prompt by mistake.
    """

    problem_id: str
    question: str
    steps: tuple[str, ...]
    target: float
    label: bool
    count: int
    role: CriticRole

    def __post_init__(self) -> None:
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"a row's target is a probability in [0, 1], got {self.target}")
        if self.count < 1:
            raise ValueError(f"a row's count must be at least 1, got {self.count}")
        if self.role not in get_args(CriticRole):
            raise ValueError(f"unknown critic role {self.role!r}")


@dataclass(frozen=True, slots=True)
class CriticRows:
    orm: list[Row]
    value: list[Row]
    prm: list[Row]


def critic_rows(trajectories: Iterable[Trajectory], *, prm_threshold: float = 1e-9) -> CriticRows:
    """ORM, value and PRM rows from graded trajectories (see the module docstring).

    Problems appear in the order of their first trajectory; within a problem, prefixes appear in
    the order first reached (trajectory by trajectory, shortest first). ``prm_threshold`` must be in
    (0, 1]: 1e-9 is hard estimation (any success), 1.0 requires every rollout through to succeed.
    """
    if not 0.0 < prm_threshold <= 1.0:
        raise ConfigError(f"prm_threshold must be in (0, 1], got {prm_threshold}")
    by_problem: dict[str, list[Trajectory]] = {}
    for trajectory in trajectories:
        group = by_problem.setdefault(trajectory.problem_id, [])
        if group and group[0].question != trajectory.question:
            raise ValueError(f"problem {trajectory.problem_id!r} has trajectories with different questions")
        group.append(trajectory)
    out = CriticRows(orm=[], value=[], prm=[])
    for problem_id, group in by_problem.items():
        question = group[0].question
        for t in group:
            if t.steps:
                target = 1.0 if t.correct else 0.0
                out.orm.append(Row(problem_id, question, _clean(t.steps), target, t.correct, 1, "orm"))
        for steps, count, correct in _prefix_stats(group):
            target = correct / count
            out.value.append(Row(problem_id, question, steps, target, target >= 0.5, count, "value"))
            if steps:
                label = target >= prm_threshold
                out.prm.append(Row(problem_id, question, steps, target, label, count, "prm"))
    return out


def labelled_rows(solutions: Iterable[Any], *, optimistic: bool) -> CriticRows:
    """ORM, value and PRM rows from solutions with a known first wrong step (see the module docstring).

    ``solutions`` are ``agent.improve.synth.LabelledSolution`` records (``problem_id``, ``question``,
    ``steps``, ``first_wrong``, ``correct``). Identical solutions of a problem give one ORM row with
    their count; a prefix gives one value row and one PRM row per problem.
    """
    by_problem: dict[str, list[Any]] = {}
    for solution in solutions:
        by_problem.setdefault(solution.problem_id, []).append(solution)
    out = CriticRows(orm=[], value=[], prm=[])
    for problem_id, group in by_problem.items():
        question = group[0].question
        orm: dict[tuple[str, ...], list] = {}
        prefixes: dict[tuple[str, ...], list] = {}  # key -> [steps, count, correct, wrong, prm label]
        for s in group:
            steps = _clean(s.steps)
            if not steps:
                continue
            key = tuple(" ".join(step.split()) for step in steps)
            entry = orm.setdefault(key, [steps, 0, s.correct])
            entry[1] += 1
            for depth in range(1, len(steps) + 1):
                wrong = s.first_wrong is not None and depth > s.first_wrong
                p = prefixes.setdefault(key[:depth], [steps[:depth], 0, 0, wrong, not wrong])
                p[1] += 1
                p[2] += s.correct
                if s.first_wrong is not None and depth > s.first_wrong + 1:
                    p[4] = None  # after the first error: no PRM row
        for steps, count, correct in orm.values():
            out.orm.append(Row(problem_id, question, steps, float(correct), bool(correct), count, "orm"))
        for steps, count, correct, wrong, prm in prefixes.values():
            target = 0.0 if wrong else (1.0 if optimistic else correct / count)
            out.value.append(Row(problem_id, question, steps, target, target >= 0.5, count, "value"))
            if prm is not None:
                out.prm.append(Row(problem_id, question, steps, float(prm), bool(prm), count, "prm"))
    return out


def mix_rows(
    policy: CriticRows, synthetic: CriticRows, *, synthetic_share: float, seed: int | str
) -> CriticRows:
    """Per role, all of the policy's rows plus a seeded sample of synthetic rows making up
    ``synthetic_share`` of the result (as many as there are, if fewer). With no policy rows for a
    role, its synthetic rows are used as they are. ``synthetic_share`` below 0.5 keeps the policy's
    own mistakes the larger part of what a critic sees."""
    if not 0.0 <= synthetic_share < 1.0:
        raise ConfigError(f"synthetic_share must be in [0, 1), got {synthetic_share}")
    mixed = {}
    for role in ("orm", "value", "prm"):
        own, extra = getattr(policy, role), getattr(synthetic, role)
        if not own:
            mixed[role] = list(extra)
            continue
        want = min(len(extra), round(synthetic_share / (1.0 - synthetic_share) * len(own)))
        chosen = sorted(random.Random(f"mix\0{seed}\0{role}").sample(range(len(extra)), want))
        mixed[role] = list(own) + [extra[i] for i in chosen]
    return CriticRows(orm=mixed["orm"], value=mixed["value"], prm=mixed["prm"])


def _prefix_stats(group: Sequence[Trajectory]) -> list[tuple[tuple[str, ...], int, int]]:
    """(steps, trajectories through, correct among them) per distinct prefix, root first."""
    stats: dict[tuple[str, ...], list] = {}  # key -> [steps as first seen, count, correct]
    for t in group:
        steps = _clean(t.steps)
        key = tuple(" ".join(step.split()) for step in steps)
        for depth in range(len(steps) + 1):
            entry = stats.setdefault(key[:depth], [steps[:depth], 0, 0])
            entry[1] += 1
            entry[2] += t.correct
    return [(steps, count, correct) for steps, count, correct in stats.values()]


def _clean(steps: Sequence[str]) -> tuple[str, ...]:
    return tuple(step.strip() for step in steps)


def heldout_problems(problem_ids: Iterable[str], *, holdout: float, seed: int | str) -> frozenset[str]:
    """The problem ids to hold out: ``round(holdout * n)`` of the n distinct ids, at least 1 and at
    most n - 1 when ``holdout > 0`` and n >= 2 (none when n < 2).

    Ids are ranked by a seeded SHA-256 of the id, not by a shuffle of the list, so the choice does
    not depend on input order and an id's rank does not change when other ids come or go.
    """
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    ids = sorted(set(problem_ids))
    if holdout == 0.0 or len(ids) < 2:
        return frozenset()
    k = min(max(1, round(holdout * len(ids))), len(ids) - 1)
    ranked = sorted(ids, key=lambda pid: hashlib.sha256(f"{seed}\0{pid}".encode()).hexdigest())
    return frozenset(ranked[:k])


def split_rows(rows: Sequence[Row], *, holdout: float, seed: int | str) -> tuple[list[Row], list[Row]]:
    """(train, heldout) by problem id: every row of a problem goes to the same side; order kept."""
    held = heldout_problems((row.problem_id for row in rows), holdout=holdout, seed=seed)
    return _partition(rows, held)


def split_critic_rows(rows: CriticRows, *, holdout: float, seed: int | str) -> tuple[CriticRows, CriticRows]:
    """Split all three roles with ONE set of held-out problems (from the union of their ids), so a
    critic trained on several roles never sees a held-out problem under another role."""
    ids = {row.problem_id for part in (rows.orm, rows.value, rows.prm) for row in part}
    held = heldout_problems(ids, holdout=holdout, seed=seed)
    orm, value, prm = (_partition(part, held) for part in (rows.orm, rows.value, rows.prm))
    return (
        CriticRows(orm=orm[0], value=value[0], prm=prm[0]),
        CriticRows(orm=orm[1], value=value[1], prm=prm[1]),
    )


def _partition(rows: Sequence[Row], held: frozenset[str]) -> tuple[list[Row], list[Row]]:
    return [r for r in rows if r.problem_id not in held], [r for r in rows if r.problem_id in held]


def to_examples(
    rows: Sequence[Row],
    *,
    role: CriticRole,
    prompt_fn: PromptFn,
    balance: bool = False,
    seed: int | str = 0,
    yes: str = " Yes",
    no: str = " No",
) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for a generative critic: ``yes`` for label True, ``no`` for False.

    ``prompt_fn(question, steps)`` is the critic's own prompt, e.g. ``GenerativeCritic(...).prompt``,
    so training and scoring see the same text. Every row must be of ``role``. ``balance`` keeps all
    rows of the minority class and a seeded sample of the same size from the majority class (small
    models trained on skewed labels learn to answer the majority); it needs both classes present.
    Row order is kept.
    """
    if role not in get_args(CriticRole):
        raise ConfigError(f"unknown critic role {role!r}")
    wrong = {row.role for row in rows} - {role}
    if wrong:
        raise ValueError(f"rows for {sorted(wrong)} given to the {role} critic's examples")
    chosen = _balanced(rows, seed=seed) if balance else list(rows)
    return [(prompt_fn(row.question, row.steps), yes if row.label else no) for row in chosen]


def balanced_rows(rows: Sequence[Row], *, seed: int | str) -> list[Row]:
    """All rows of the minority label and a seeded sample of the majority of the same size (order
    kept); ValueError when one label is absent."""
    return _balanced(rows, seed=seed)


def _balanced(rows: Sequence[Row], *, seed: int | str) -> list[Row]:
    positive = [i for i, row in enumerate(rows) if row.label]
    negative = [i for i, row in enumerate(rows) if not row.label]
    if not positive or not negative:
        which = "positive" if not positive else "negative"
        raise ValueError(f"cannot balance {len(rows)} rows: there is no {which} row")
    minority, majority = sorted((positive, negative), key=len)
    keep = set(minority) | set(random.Random(f"balance\0{seed}").sample(majority, len(minority)))
    return [rows[i] for i in sorted(keep)]


def write_jsonl(rows: Iterable[Row], path: Path) -> None:
    """Write rows as JSON lines through a temporary file and a rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            record = {
                "role": row.role,
                "problem_id": row.problem_id,
                "question": row.question,
                "steps": list(row.steps),
                "target": row.target,
                "label": row.label,
                "count": row.count,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[Row]:
    """Rows written by ``write_jsonl``; DataError names the file and line of a malformed row."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                steps = r["steps"]
                if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                    raise TypeError("steps must be a list of strings")
                if not isinstance(r["label"], bool):
                    raise TypeError("label must be true or false")
                rows.append(
                    Row(
                        problem_id=str(r["problem_id"]),
                        question=str(r["question"]),
                        steps=tuple(steps),
                        target=float(r["target"]),
                        label=r["label"],
                        count=int(r["count"]),
                        role=r["role"],
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{number}: not a critic row ({exc})") from exc
    return rows
