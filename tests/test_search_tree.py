"""The pure search core: property tests over random select/expand/merge/revisit/release sequences."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.search.config import PRESETS, SearchConfig, preset
from agent.search.final import all_choices, choose
from agent.search.options import OptionRule, has_final_answer
from agent.search.tree import Ticket, Tree

SEARCH_DIR = Path(__file__).parents[1] / "agent" / "search"
IO_LIBRARIES = {
    "httpx",
    "openai",
    "anyio",
    "asyncio",
    "structlog",
    "requests",
    "aiohttp",
    "socket",
    "subprocess",
}


def test_search_core_imports_no_io_library() -> None:
    allowed_project = ("agent.search", "agent.errors")
    for path in SEARCH_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in IO_LIBRARIES, f"{path.name} imports {name}"
                if top == "agent":
                    assert name.startswith(allowed_project), f"{path.name} imports {name}"
                else:
                    assert top in sys.stdlib_module_names or top == "__future__", (
                        f"{path.name} imports {name}"
                    )


# One action per step of a random schedule: which in-flight ticket to finish, and how.
actions = st.lists(
    st.tuples(
        st.sampled_from(["select", "select", "expand", "expand", "terminal", "merge", "fail"]),
        st.integers(min_value=0, max_value=10_000),
        st.floats(min_value=0.0, max_value=1.0),
    ),
    min_size=1,
    max_size=120,
)


def _config(selection: str, batch: bool = False) -> SearchConfig:
    return SearchConfig(
        batch_siblings=batch,
        selection=selection,  # type: ignore[arg-type]
        c_min_root=2,
        c_max_root=5,
        c_min=1,
        c_max=3,
        alpha=3.0,
        max_depth=4,
        simulations=64,
        max_simulations=512,
    )


def _run(schedule: list[tuple[str, int, float]], selection: str, batch: bool = False) -> Tree:
    tree = Tree("q", _config(selection, batch))
    in_flight: list[Ticket] = []
    for action, pick, value in schedule:
        if action == "select" or not in_flight:
            ticket = tree.select()
            if ticket is not None:
                in_flight.append(ticket)
            continue
        ticket = in_flight.pop(pick % len(in_flight))
        if ticket.kind == "revisit":
            tree.revisit(ticket)
        elif action == "fail":
            tree.release(ticket, completed=False)
        elif action == "merge" and tree.nodes[ticket.node].children:
            siblings = tree.nodes[ticket.node].children
            target = siblings[pick % len(siblings)]  # a merge counts the sibling's own value again
            tree.merge(ticket, into=target, option="dup", value=tree.nodes[target].value or 0.0)
        else:
            for slot in range(ticket.slots):  # a batch ticket fills all its slots, then releases once
                tree.expand(
                    ticket,
                    option=f"step {len(tree.nodes)}",
                    value=value,
                    terminal=action == "terminal",
                    answer="1",
                    release=slot == ticket.slots - 1,
                )
    for ticket in in_flight:  # the search ends: every simulation finishes or is abandoned
        tree.release(ticket, completed=False)
    return tree


@settings(max_examples=150, deadline=None)
@given(actions, st.sampled_from(["uct", "puct"]), st.booleans())
def test_invariants_hold_for_any_schedule(
    schedule: list[tuple[str, int, float]], selection: str, batch: bool
) -> None:
    tree = _run(schedule, selection, batch)
    config = tree.config
    assert tree.in_flight == 0
    assert tree.terminal_count == len(tree.terminals())
    for node in tree.nodes:
        assert node.virtual_loss == 0 and node.pending == 0  # nothing left over
        # depth equals the trajectory length
        assert node.depth == len(tree.steps(node.id)) == len(tree.path(node.id)) - 1
        # widths stay in [c_min, c_max] unless the children already exceed them (never shrink below)
        assert node.width >= config.c_min_at(node.depth)
        assert node.width <= max(config.c_max_at(node.depth), len(node.children))
        assert len(node.children) + node.duplicates <= node.width  # a merged duplicate used a slot
        # a node's visits: its own expansion, merges into it, terminal revisits, and its children's
        if node.children:
            child_visits = sum(tree.nodes[i].visits for i in node.children)
            assert node.visits >= child_visits
        if node.id != 0:
            assert node.visits >= 1 + len(node.merged)
            assert 0.0 <= node.q <= 1.0
        for child in node.children:
            assert tree.nodes[child].parent == node.id
    # every completed simulation added exactly one visit at the root, or none (empty release)
    assert tree.root.visits <= tree.simulations


@settings(max_examples=60, deadline=None)
@given(actions, st.booleans())
def test_backup_sums_are_exact(schedule: list[tuple[str, int, float]], batch: bool) -> None:
    tree = _run(schedule, "uct", batch)
    for node in tree.nodes:
        if node.terminal:
            continue
        own = 0.0 if node.id == 0 else (node.value or 0.0) * (1 + len(node.merged))
        child_sums = sum(tree.nodes[i].value_sum for i in node.children)
        assert math.isclose(node.value_sum, own + child_sums, abs_tol=1e-9)


def test_tree_round_trips_through_json() -> None:
    tree = _run([("select", 0, 0.5), ("expand", 0, 0.7), ("select", 0, 0.0), ("terminal", 0, 0.9)], "uct")
    data = json.loads(json.dumps(tree.to_dict()))
    again = Tree.from_dict(data)
    assert again.to_dict() == tree.to_dict()


def test_concurrent_selections_spread_out_with_virtual_loss() -> None:
    tree = Tree("q", SearchConfig(c_min_root=3, c_max_root=3, c=0.0, virtual_loss=1.0))
    first = [tree.select() for _ in range(3)]
    for i, t in enumerate(first):
        assert t is not None
        tree.expand(t, option=f"o{i}", value=[0.9, 0.5, 0.4][i], terminal=False)
    # With c = 0, the best child by Q (0.9) is chosen first; virtual loss then pushes the next
    # concurrent simulation to another child instead of piling onto the same one.
    a, b = tree.select(), tree.select()
    assert a is not None and b is not None
    assert a.path[1] != b.path[1]


def test_select_returns_none_when_all_work_is_in_flight() -> None:
    tree = Tree("q", SearchConfig(c_min_root=1, c_max_root=1))
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "expand"
    assert tree.select() is None  # the only child slot is taken and no child exists yet
    tree.release(ticket, completed=False)
    assert tree.select() is not None


def test_release_twice_is_an_error() -> None:
    tree = Tree("q", SearchConfig())
    ticket = tree.select()
    assert ticket is not None
    tree.release(ticket)
    with pytest.raises(ValueError, match="twice"):
        tree.release(ticket)


def test_importance_widens_a_node_with_diverging_children() -> None:
    config = SearchConfig(c_min_root=2, c_max_root=6, alpha=4.0)
    tree = Tree("q", config)
    tree.root.value = 0.5
    t = tree.select()
    assert t is not None
    tree.expand(t, option="same", value=0.5, terminal=False)
    assert tree.root.width == 2  # I = 0: floor(0) + 1 = 1 < c_min = 2
    t = tree.select()
    assert t is not None and t.node == 0
    tree.expand(t, option="far", value=1.0, terminal=False)
    assert tree.root.width == 3  # I = 0.5: floor(4 * 0.5) + 1 = 3
    t = tree.select()
    assert t is not None and t.node == 0  # room for a third child at the root
    tree.expand(t, option="back", value=0.5, terminal=False)
    assert tree.root.width == 3  # widths never shrink


def test_width_is_capped_by_c_max() -> None:
    tree = Tree("q", SearchConfig(c_min_root=1, c_max_root=2, alpha=100.0))
    tree.root.value = 0.0
    t = tree.select()
    assert t is not None
    tree.expand(t, option="x", value=1.0, terminal=False)
    assert tree.root.width == 2


def test_final_selectors() -> None:
    tree = Tree("q", SearchConfig(c_min_root=3, c_max_root=3))
    tickets = [tree.select() for _ in range(3)]
    values = [(0.2, "5", 0.9), (0.9, "7", 0.1), (0.6, "5", 0.8)]
    for t, (value, answer, orm) in zip(tickets, values, strict=True):
        assert t is not None
        tree.expand(t, option=answer, value=value, terminal=True, answer=answer, scores={"orm": orm})
    choices = all_choices(tree)
    assert choices["greedy"].answer == "7" and choices["best_leaf"].answer == "7"
    assert choices["orm_rerank"].answer == "5" and choices["orm_rerank"].score == 0.9
    assert choices["vote"].answer == "5"  # 0.9 + 0.8 against 0.1
    assert not any(c.needs_completion for c in choices.values())


def test_final_selectors_without_terminals_fall_back_to_greedy() -> None:
    tree = Tree("q", SearchConfig())
    t = tree.select()
    assert t is not None
    tree.expand(t, option="half way", value=0.4, terminal=False)
    choice = choose(tree, "vote")
    assert choice.selector == "greedy" and choice.needs_completion and choice.answer is None


def test_options_join_with_exactly_one_separator() -> None:
    line, para = OptionRule("line"), OptionRule("paragraph")
    assert line.join(["a", "b"]) == "a\nb\n"
    assert para.join(["a", "b"]) == "a\n\nb\n\n"
    assert line.join(["a", line.clean(" b\n")]) == "a\nb\n"
    assert para.needs_more("We consider the cases.", stopped_at_separator=True)
    assert not para.needs_more("So $x = 2$.", stopped_at_separator=True)
    assert not para.needs_more("The answer is 4.", stopped_at_separator=True)
    assert not line.needs_more("no formula", stopped_at_separator=True)
    assert has_final_answer("#### 12") and has_final_answer(r"so \boxed{3}") and not has_final_answer("3 + 4")


def test_presets_and_validation() -> None:
    assert preset("gsm8k-large").c == 1.5 and preset("gsm8k-large").c_min_root == 40
    assert preset("math-small").c_min == 3 and preset("math-small").option == "paragraph"
    assert set(PRESETS) >= {"gsm8k-small", "gsm8k-large", "math-small", "math-large", "cpu-small"}
    with pytest.raises(ConfigError, match="c_min"):
        SearchConfig(c_min=5, c_max=2)
    with pytest.raises(ConfigError, match="unknown"):
        SearchConfig().with_overrides(nope=1)
    with pytest.raises(ConfigError, match="preset"):
        preset("huge")


def _terminal_chain(tree: Tree, answer: str) -> None:
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "expand"
    node = tree.nodes[ticket.node]
    terminal = node.depth + 1 >= 2
    tree.expand(ticket, option=f"{answer}@{node.depth}", value=0.5, terminal=terminal, answer=answer)


def test_a_simulation_reaching_a_terminal_widens_the_deepest_node_below_c_max() -> None:
    config = SearchConfig(c_min_root=1, c_max_root=2, c_min=1, c_max=3, max_depth=2)
    tree = Tree("q", config)
    _terminal_chain(tree, "a")  # root -> step
    _terminal_chain(tree, "a")  # step -> terminal
    step = tree.nodes[1]
    # every node is full (width 1): the next simulation widens the terminal's parent, not the root
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "expand" and ticket.node == step.id
    assert ticket.path == (0, step.id) and step.width == 2
    tree.expand(ticket, option="b", value=0.5, terminal=True, answer="b")
    ticket = tree.select()
    assert ticket is not None and ticket.node == step.id and step.width == 3
    tree.expand(ticket, option="c", value=0.5, terminal=True, answer="c")
    # the step is at its c_max: the root gets a second child slot next
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "expand" and ticket.node == 0 and tree.root.width == 2
    tree.release(ticket)


def test_skip_settled_widens_above_a_node_whose_terminals_agree() -> None:
    config = SearchConfig(c_min_root=1, c_max_root=2, c_min=1, c_max=3, max_depth=2, skip_settled=True)
    tree = Tree("q", config)
    _terminal_chain(tree, "a")  # root -> step
    _terminal_chain(tree, "a")  # step -> terminal "a": the step's one child settles it
    step = tree.nodes[1]
    ticket = tree.select()  # the root is widened instead of the settled step
    assert ticket is not None and ticket.kind == "expand" and ticket.node == 0
    assert tree.root.width == 2 and step.width == 1
    tree.expand(ticket, option="other", value=0.0, terminal=False)  # the root is now at its c_max
    for child in tree.root.children:
        tree.nodes[child].value_sum = -9.0 if child != step.id else 9.0  # select the settled branch
    ticket = tree.select()  # nothing but the settled step can widen: it does, as without the option
    assert ticket is not None and ticket.node == step.id and step.width == 2
    tree.expand(ticket, option="b", value=0.5, terminal=True, answer="b")
    assert not tree._settled(step)  # two answers: widened again like any other node
    assert tree._widen([0, step.id, step.children[0]]) == 1


def test_without_widening_a_full_tree_only_revisits_its_terminals() -> None:
    config = SearchConfig(c_min_root=1, c_max_root=2, c_min=1, c_max=3, max_depth=2, widen=False)
    tree = Tree("q", config)
    _terminal_chain(tree, "a")
    _terminal_chain(tree, "a")
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "revisit" and ticket.node == 2
    tree.revisit(ticket)


def test_a_tree_at_c_max_everywhere_revisits() -> None:
    config = SearchConfig(c_min_root=1, c_max_root=1, c_min=1, c_max=1, max_depth=2)
    tree = Tree("q", config)
    _terminal_chain(tree, "a")
    _terminal_chain(tree, "a")
    ticket = tree.select()
    assert ticket is not None and ticket.kind == "revisit"
    tree.revisit(ticket)


def test_a_merged_duplicate_uses_up_the_slot_it_was_sampled_for() -> None:
    tree = Tree("q", SearchConfig(c_min_root=2, c_max_root=2, widen=False))
    first = tree.select()
    assert first is not None
    tree.expand(first, option="x", value=0.5, terminal=True, answer="1")
    second = tree.select()
    assert second is not None and second.kind == "expand" and second.node == 0
    tree.merge(second, into=1, option="x.", value=0.5)
    assert tree.root.duplicates == 1
    third = tree.select()  # the root's two slots are used (one child, one duplicate)
    assert third is not None and third.kind == "revisit"
    tree.revisit(third)


def test_sibling_batching_reserves_every_free_slot_after_the_greedy_first_child() -> None:
    tree = Tree("q", SearchConfig(c_min_root=3, c_max_root=3, batch_siblings=True))
    first = tree.select()
    assert first is not None and first.slots == 1  # the greedy first child, alone
    tree.expand(first, option="a", value=0.5, terminal=True, answer="1")
    batch = tree.select()
    assert batch is not None and batch.kind == "expand" and batch.node == 0 and batch.slots == 2
    assert tree.in_flight == 2 and tree.root.pending == 2
    other = tree.select()  # the root's slots are all taken: the other simulation revisits "a"
    assert other is not None and other.kind == "revisit" and tree.in_flight == 3
    tree.revisit(other)
    tree.expand(batch, option="b", value=0.5, terminal=True, answer="2", release=False)
    tree.merge(batch, into=1, option="a.", value=0.5, release=False)
    tree.release(batch)
    assert tree.root.pending == 0 and tree.root.duplicates == 1 and len(tree.root.children) == 2
    assert tree.simulations == 4 and all(n.virtual_loss == 0 for n in tree.nodes)


def test_paragraph_options_are_not_batched() -> None:
    tree = Tree(
        "q", SearchConfig(c_min_root=3, batch_siblings=True, option="paragraph", first_child_greedy=False)
    )
    ticket = tree.select()
    assert ticket is not None and ticket.slots == 1
