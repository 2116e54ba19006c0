"""The four ways to read a final answer off a finished tree.

1. ``greedy``: descend from the root by highest Q until a leaf;
2. ``best_leaf``: the leaf with the highest Q anywhere in the tree;
3. ``orm_rerank``: the terminal solution the ORM scores highest;
4. ``vote`` (default): ORM-weighted vote over the terminal answers (weight 1 without an ORM score).

A choice that ends on a non-terminal node has ``needs_completion`` set: the driver completes that
solution before reading its answer. With no terminal node at all, ``orm_rerank`` and ``vote`` fall
back to ``greedy``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from agent.search.config import FinalSelector
from agent.search.tree import Node, Tree

__all__ = ["Choice", "all_choices", "choose"]


@dataclass(frozen=True, slots=True)
class Choice:
    selector: FinalSelector
    node: int
    answer: str | None
    needs_completion: bool
    score: float


def _of(selector: FinalSelector, node: Node, score: float) -> Choice:
    return Choice(selector, node.id, node.answer, needs_completion=not node.terminal, score=score)


def greedy(tree: Tree) -> Choice:
    node = tree.root
    while node.children:
        node = max((tree.nodes[i] for i in node.children), key=lambda n: (n.q, n.visits))
    return _of("greedy", node, node.q)


def best_leaf(tree: Tree) -> Choice:
    leaves = [n for n in tree.nodes[1:] if not n.children]
    if not leaves:
        return _of("best_leaf", tree.root, 0.0)
    node = max(leaves, key=lambda n: (n.q, n.terminal, n.visits))
    return _of("best_leaf", node, node.q)


def _orm(node: Node) -> float:
    return node.scores.get("orm", node.value if node.value is not None else 0.0)


def orm_rerank(tree: Tree) -> Choice:
    answered = [n for n in tree.terminals() if n.answer is not None]
    if not answered:
        return greedy(tree)
    node = max(answered, key=lambda n: (_orm(n), n.q))
    return _of("orm_rerank", node, _orm(node))


def vote(tree: Tree) -> Choice:
    answered = [n for n in tree.terminals() if n.answer is not None]
    if not answered:
        return greedy(tree)
    totals: dict[str, float] = defaultdict(float)
    for n in answered:
        totals[n.answer or ""] += n.scores.get("orm", 1.0)
    winner = max(totals, key=lambda a: totals[a])
    node = max((n for n in answered if n.answer == winner), key=lambda n: (_orm(n), n.q))
    return _of("vote", node, totals[winner] / sum(totals.values()))


_SELECTORS = {"greedy": greedy, "best_leaf": best_leaf, "orm_rerank": orm_rerank, "vote": vote}


def choose(tree: Tree, selector: FinalSelector) -> Choice:
    return _SELECTORS[selector](tree)


def all_choices(tree: Tree) -> dict[str, Choice]:
    return {name: fn(tree) for name, fn in _SELECTORS.items()}
