"""Scenario templates for the generated arithmetic word problems (``agent.tasks.arith``).

Each scenario is a small function ``(g, k)`` that writes one grade-school word problem needing
exactly ``k`` arithmetic steps (1 to 3) into a ``Draft``: the story sentences, the question, the
reference solution lines (each with one ``a op b = c``) and the integer answer. ``Draft`` owns the
random source, the vocabulary (names, number words) and the checks every step must pass (whole,
non-negative, moderate results); a scenario that draws numbers that do not fit raises ``Reject``
and the caller draws again.

The machinery lives in ``builder``; the scenarios themselves in one module per theme. Importing
this package registers them all in ``SCENARIOS``.

Deliberately left out: fractions, decimals, percentages, units that need conversion tables and
multi-sentence reasoning traps. The numbers are kept small enough for a 135M model to add in its
head; the point is the language around them, which should read like GSM8K.
"""

from __future__ import annotations

from agent.tasks.arith_scenarios.builder import MAX_VALUE, NAMES, SCENARIOS, Draft, Expr, Person, Reject

# The theme modules register their scenarios on import, and seeded draws index into SCENARIOS in
# registration order: this import order fixes the generated problems, so keep it (no sorting).
# isort: off
from agent.tasks.arith_scenarios import money  # noqa: F401
from agent.tasks.arith_scenarios import food  # noqa: F401
from agent.tasks.arith_scenarios import school  # noqa: F401
from agent.tasks.arith_scenarios import nature  # noqa: F401
from agent.tasks.arith_scenarios import travel  # noqa: F401
from agent.tasks.arith_scenarios import home  # noqa: F401
# isort: on

__all__ = ["MAX_VALUE", "NAMES", "SCENARIOS", "Draft", "Expr", "Person", "Reject"]
