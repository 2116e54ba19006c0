"""The search tree: an arena of nodes with stable integer ids, and the MCTS arithmetic over it.

Pure and synchronous (stdlib only). Concurrency is the driver's business, and works because every
method here runs to completion without awaiting: the driver calls ``select`` (which marks the chosen
path with virtual loss and reserves an expansion slot), awaits the model, then calls ``expand`` /
``merge`` / ``revisit`` with the result and ``release`` in one synchronous step.

A node's statistics: ``visits`` and ``value_sum`` (backed-up values, so Q = value_sum / visits),
``value`` (its own critic value, in [0, 1]), ``width`` (how many children it may have). A node's
``option`` is one reasoning step without separators; its depth is the number of steps from the root.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agent.search.config import SearchConfig

__all__ = ["Node", "Ticket", "Tree"]


@dataclass
class Node:
    id: int
    parent: int | None
    depth: int
    option: str = ""
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    virtual_loss: int = 0
    pending: int = 0  # expansions of this node in flight
    width: int = 1
    duplicates: int = 0  # expansions of this node merged into an existing child (each uses a slot)
    terminal: bool = False
    answer: str | None = None
    value: float | None = None  # the node's own (mixed) critic value in [0, 1]
    scores: dict[str, float] = field(default_factory=dict)  # per critic, and rollout mean
    prior: float | None = None  # normalized option log-probability, for PUCT
    merged: list[str] = field(default_factory=list)  # near-duplicate options merged into this node
    tokens: int = 0  # completion tokens spent generating this option (and its rollouts)

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """One simulation in flight: what it will do, where, and the path carrying its virtual loss."""

    kind: Literal["expand", "revisit"]
    node: int  # the node to expand (add a child to), or the terminal node to revisit
    path: tuple[int, ...]  # root .. node
    slots: int = 1  # child slots reserved (more than one: sibling options generated together)


class Tree:
    def __init__(self, question: str, config: SearchConfig) -> None:
        self.question = question
        self.config = config
        root = Node(id=0, parent=None, depth=0)
        root.width = config.c_min_at(0)
        self.nodes: list[Node] = [root]
        self.simulations = 0  # completed simulations
        self.in_flight = 0  # simulations handed out and not yet released (a batch ticket's slots each)
        self.terminal_count = 0

    # --- reading -------------------------------------------------------------------------------

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root to ``node_id``."""
        path = []
        current: int | None = node_id
        while current is not None:
            path.append(current)
            current = self.nodes[current].parent
        return path[::-1]

    def steps(self, node_id: int) -> list[str]:
        """The reasoning steps (options) from the root to ``node_id``."""
        return [self.nodes[i].option for i in self.path(node_id)[1:]]

    def terminals(self) -> list[Node]:
        return [n for n in self.nodes if n.terminal]

    # --- selection -----------------------------------------------------------------------------

    def select(self) -> Ticket | None:
        """Walk down from the root; reserve an expansion where a node has room for another child.

        Returns None when every path is blocked by expansions already in flight: the caller should
        wait for one of them to finish. The returned ticket's path carries one virtual loss.
        """
        node = self.root
        path = [0]
        while True:
            if node.terminal:
                at = self._widen(path) if self.config.widen else None
                if at is None:
                    ticket = Ticket("revisit", node.id, tuple(path))
                else:
                    self.nodes[path[at]].pending += 1
                    ticket = Ticket("expand", path[at], tuple(path[: at + 1]))
                break
            if self._has_room(node):
                slots = self._batch(node)
                node.pending += slots
                ticket = Ticket("expand", node.id, tuple(path), slots)
                break
            child = self._best_child(node)
            if child is None:
                return None
            node = child
            path.append(node.id)
        for i in ticket.path:
            self.nodes[i].virtual_loss += 1
        self.in_flight += ticket.slots
        return ticket

    def _has_room(self, node: Node) -> bool:
        used = len(node.children) + node.duplicates + node.pending
        return used < node.width and node.depth < self.config.max_depth

    def _batch(self, node: Node) -> int:
        """Child slots one expansion of ``node`` reserves: all free ones with sibling batching, except
        for a greedy first child, which is generated alone."""
        if not self.config.batch_siblings or self.config.option != "line":
            return 1  # (a paragraph option may need several calls to finish: generated one by one)
        if self.config.first_child_greedy and not node.children and not node.pending and not node.duplicates:
            return 1
        return node.width - len(node.children) - node.duplicates - node.pending

    def _widen(self, path: list[int]) -> int | None:
        """Give the deepest non-terminal node on ``path`` below its c_max one more child slot (with
        ``skip_settled``, passing over nodes whose children are all terminals agreeing on one answer,
        unless no other node can widen).

        Returns that node's index in ``path``, or None when every node on it is at c_max.
        """
        fallback = None
        for at in range(len(path) - 2, -1, -1):
            node = self.nodes[path[at]]
            if node.depth >= self.config.max_depth or node.width >= self.config.c_max_at(node.depth):
                continue
            if self.config.skip_settled and self._settled(node):
                fallback = at if fallback is None else fallback
                continue
            node.width += 1  # used <= width always holds, so the new slot is free
            return at
        if fallback is not None:
            self.nodes[path[fallback]].width += 1
        return fallback

    def _settled(self, node: Node) -> bool:
        """Every child is a terminal and they all give one answer: another sibling would most likely
        repeat it (typically the answer line after a computation step)."""
        children = [self.nodes[i] for i in node.children]
        return (
            len(children) > 0 and all(c.terminal for c in children) and len({c.answer for c in children}) == 1
        )

    def _best_child(self, node: Node) -> Node | None:
        children = [self.nodes[i] for i in node.children if not self._blocked(self.nodes[i])]
        if not children:
            return None
        parent_visits = node.visits + node.virtual_loss
        vl = self.config.virtual_loss
        best, best_score = None, -math.inf
        for child in children:
            n = child.visits + vl * child.virtual_loss
            q = child.value_sum / n if n else 0.0
            score = q + self._exploration(child, parent_visits, n)
            if score > best_score:
                best, best_score = child, score
        return best

    def _blocked(self, node: Node) -> bool:
        """Nothing to do below this node until an expansion in flight there finishes."""
        return not node.terminal and not node.children and node.pending + node.duplicates >= node.width

    def _exploration(self, child: Node, parent_visits: float, n: float) -> float:
        c = self.config.c
        if self.config.selection == "puct":
            prior = (
                child.prior
                if child.prior is not None
                else 1.0 / max(1, len(self.nodes[child.parent or 0].children))
            )
            return c * prior * math.sqrt(max(parent_visits, 1)) / (1 + n)
        if n == 0:
            return math.inf
        return c * math.sqrt(math.log(max(parent_visits, 1)) / n)

    # --- applying results (each runs to completion: no awaits in between) -------------------------

    def expand(
        self,
        ticket: Ticket,
        *,
        option: str,
        value: float,
        terminal: bool,
        answer: str | None = None,
        scores: dict[str, float] | None = None,
        prior: float | None = None,
        tokens: int = 0,
        release: bool = True,
    ) -> Node:
        """Add the generated option as a new child of ``ticket.node``, back its value up, release.

        ``release=False`` for all but the last of several options of one ticket (sibling batching):
        the caller releases the ticket once, after adding them all.
        """
        parent = self.nodes[ticket.node]
        depth = parent.depth + 1
        child = Node(
            id=len(self.nodes),
            parent=parent.id,
            depth=depth,
            option=option,
            terminal=terminal or depth >= self.config.max_depth,
            answer=answer,
            value=value,
            scores=dict(scores or {}),
            prior=prior,
            tokens=tokens,
            width=self.config.c_min_at(depth),
        )
        self.nodes.append(child)
        parent.children.append(child.id)
        self.terminal_count += child.terminal
        self._backup([*ticket.path, child.id], value)
        self._update_width(parent)
        if release:
            self.release(ticket)
        return child

    def merge(
        self, ticket: Ticket, *, into: int, option: str, value: float, tokens: int = 0, release: bool = True
    ) -> Node:
        """Count a near-duplicate option as a visit of its existing sibling ``into`` instead of a node."""
        target = self.nodes[into]
        if target.parent != ticket.node:
            raise ValueError(f"node {into} is not a child of {ticket.node}")
        target.merged.append(option)
        target.tokens += tokens
        self.nodes[ticket.node].duplicates += 1
        self._backup([*ticket.path, into], value)
        if release:
            self.release(ticket)
        return target

    def revisit(self, ticket: Ticket) -> None:
        """A simulation that reached a terminal node backs up that node's value again."""
        node = self.nodes[ticket.node]
        self._backup(list(ticket.path), node.value if node.value is not None else 0.0)
        self.release(ticket)

    def release(self, ticket: Ticket, *, completed: bool = True) -> None:
        """Remove the ticket's virtual loss and expansion reservation (all its slots).

        ``completed=False`` abandons a simulation (its request failed): nothing is backed up.
        Calling it twice for one ticket is a bug and raises.
        """
        for i in ticket.path:
            node = self.nodes[i]
            if node.virtual_loss <= 0:
                raise ValueError(f"ticket for node {ticket.node} released twice")
            node.virtual_loss -= 1
        if ticket.kind == "expand":
            self.nodes[ticket.node].pending -= ticket.slots
        self.in_flight -= ticket.slots
        if completed:
            self.simulations += ticket.slots  # each option of a batch counts as a simulation

    def _backup(self, path: list[int], value: float) -> None:
        for i in path:
            node = self.nodes[i]
            node.visits += 1
            node.value_sum += value

    def _update_width(self, node: Node) -> None:
        """Importance-weighted width ``max(c_min, min(floor(alpha*I) + 1, c_max))``, never shrinking.

        ``I(s) = max_o |v(s, o) - v(s)|`` over the children's critic values; a node with no value
        of its own (the root, when no value critic ran) is measured against its children's mean.
        """
        values = [v for i in node.children if (v := self.nodes[i].value) is not None]
        if not values:
            return
        own = node.value if node.value is not None else sum(values) / len(values)
        importance = max(abs(v - own) for v in values)
        c = self.config
        width = max(c.c_min_at(node.depth), min(math.floor(c.alpha * importance) + 1, c.c_max_at(node.depth)))
        node.width = max(node.width, width, len(node.children))

    # --- export --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "config": self.config.as_dict(),
            "simulations": self.simulations,
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tree:
        tree = cls(data["question"], SearchConfig(**data["config"]))
        tree.nodes = [Node(**n) for n in data["nodes"]]
        tree.simulations = int(data["simulations"])
        tree.terminal_count = sum(n.terminal for n in tree.nodes)
        return tree
