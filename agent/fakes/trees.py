"""Synthetic search trees of any size, in the saved-tree layout, for viewer tests and benchmarks."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["synthetic_tree"]


def synthetic_tree(nodes: int, *, seed: int = 0, gold: str = "12", branching: int = 4) -> dict[str, Any]:
    """A tree of ``nodes`` nodes (breadth-first, up to ``branching`` children each) in the layout
    ``agent.evaluate --save-trees`` writes: leaves are terminals with an answer (the gold about one
    time in three), and ``chosen`` is the first terminal whose answer is the gold."""
    if nodes < 1:
        raise ValueError(f"a tree has at least one node, got {nodes}")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(nodes):
        parent = None if i == 0 else (i - 1) // branching
        depth = 0 if parent is None else out[parent]["depth"] + 1
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        visits = rng.randint(1, 30)
        out.append(
            {
                "id": i,
                "parent": parent,
                "depth": depth,
                "option": "" if i == 0 else f"Step {depth}: {a} + {b} = {a + b}\n",
                "children": [],
                "visits": visits,
                "value_sum": round(visits * rng.random(), 3),
                "virtual_loss": 0,
                "pending": 0,
                "width": branching,
                "terminal": False,
                "answer": None,
                "value": round(rng.random(), 3),
                "scores": {"value": round(rng.random(), 3), "prm": round(rng.random(), 3)},
                "prior": round(rng.random(), 3),
                "merged": [f"Step {depth}: {b} + {a} = {a + b}\n"] if rng.random() < 0.05 else [],
                "tokens": rng.randint(5, 40),
            }
        )
        if parent is not None:
            out[parent]["children"].append(i)
    chosen = None
    for node in out:
        if not node["children"] and node["id"] != 0:
            node["terminal"] = True
            node["answer"] = gold if rng.random() < 1 / 3 else str(rng.randint(1, 40))
            node["option"] = f"The answer is {node['answer']}."
            node["scores"]["orm"] = round(rng.random(), 3)
            if chosen is None and node["answer"] == gold:
                chosen = node["id"]
    return {
        "id": f"synthetic-{nodes}",
        "question": "Ann has 5 apples and buys 7 more. How many apples does she have?",
        "gold": gold,
        "answer": gold if chosen is not None else None,
        "chosen": chosen,
        "simulations": nodes,
        "config": {},
        "nodes": out,
    }
