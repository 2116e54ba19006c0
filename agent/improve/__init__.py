"""Self-improvement: cycles of imagine, search, select, fine-tune, swap, evaluate (``cycle``), and
the critics' data.

``python -m agent.improve`` (or ``agent.improve.cycle.run_cycle``) runs the cycles; ``imagine``
makes new prompts, ``select`` keeps one trajectory per searched prompt, ``report`` writes
``report.md``. ``critic_data`` turns graded solutions into ORM, value and PRM rows with
Monte-Carlo targets or exact step labels (pure functions, plus JSONL helpers; ``synth`` makes the
exactly labelled synthetic solutions); ``calibration`` measures a trained critic
against held-out rows (precision, recall, AUC, ECE, Brier, a reliability diagram). This module
re-exports the pure pieces, which talk to no model.
"""

from __future__ import annotations

from agent.improve.calibration import (
    PAPER_VALUE_FUNCTION,
    Bin,
    Calibration,
    apply_temperature,
    calibration_report,
    fit_temperature,
    format_table,
    reliability_plot,
)
from agent.improve.critic_data import (
    CriticRows,
    Row,
    Trajectory,
    balanced_rows,
    critic_rows,
    heldout_problems,
    labelled_rows,
    mix_rows,
    read_jsonl,
    split_critic_rows,
    split_rows,
    to_examples,
    write_jsonl,
)

__all__ = [
    "PAPER_VALUE_FUNCTION",
    "Bin",
    "Calibration",
    "CriticRows",
    "Row",
    "Trajectory",
    "apply_temperature",
    "balanced_rows",
    "calibration_report",
    "critic_rows",
    "fit_temperature",
    "format_table",
    "heldout_problems",
    "labelled_rows",
    "mix_rows",
    "read_jsonl",
    "reliability_plot",
    "split_critic_rows",
    "split_rows",
    "to_examples",
    "write_jsonl",
]
