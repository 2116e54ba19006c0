"""Self-improvement data: critic training rows from sampled solutions, and critic calibration.

``critic_data`` turns graded sampled solutions into ORM, value and PRM rows with Monte-Carlo
targets (pure functions, plus JSONL helpers); ``calibration`` measures a trained critic against
held-out rows (precision, recall, AUC, ECE, Brier, a reliability diagram). Sampling, grading and
training live elsewhere; nothing here talks to a model.
"""

from __future__ import annotations

from agent.improve.calibration import (
    PAPER_VALUE_FUNCTION,
    Bin,
    Calibration,
    calibration_report,
    format_table,
    reliability_plot,
)
from agent.improve.critic_data import (
    CriticRows,
    Row,
    Trajectory,
    critic_rows,
    heldout_problems,
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
    "calibration_report",
    "critic_rows",
    "format_table",
    "heldout_problems",
    "read_jsonl",
    "reliability_plot",
    "split_critic_rows",
    "split_rows",
    "to_examples",
    "write_jsonl",
]
