"""The pure ηMCTS core: configuration, the arena tree, options and final-answer selectors.

Standard library only: nothing here does I/O or awaits (a test enforces it). The async driver that
talks to models is ``agent.driver``.
"""

from __future__ import annotations

from agent.search.config import PRESETS, SearchConfig, preset
from agent.search.final import Choice, all_choices, choose
from agent.search.options import OptionRule, has_final_answer
from agent.search.tree import Node, Ticket, Tree

__all__ = [
    "PRESETS",
    "Choice",
    "Node",
    "OptionRule",
    "SearchConfig",
    "Ticket",
    "Tree",
    "all_choices",
    "choose",
    "has_final_answer",
    "preset",
]
