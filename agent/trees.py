"""Look at search trees: one self-contained HTML file per saved tree or directory of trees.

    python -m agent.trees view runs/trees/arith-s0-00003.json          # writes arith-s0-00003.html
    python -m agent.trees view runs/trees --out trees.html             # every tree of a directory

Trees are the JSON files ``agent.evaluate --save-trees DIR`` writes (the ``Tree.to_dict`` layout
plus ``id``, ``gold``, ``answer`` and ``chosen``, the node the final selector picked). The page has
no outside dependency (inline CSS and JavaScript, no CDN: it works offline and can be mailed): the
tree as an outline with connectors, each node with its option text, visits, Q, the critics' scores
(value, PRM, ORM, rollouts), its prior and merged near-duplicate siblings; terminal answers marked
right or wrong when the gold is known (graded here with the project's grader); the chosen path
highlighted. Nodes collapse and expand (children are drawn only when opened, so trees of thousands
of nodes stay fast), a search box finds text and opens the way to every match, and the zoom buttons
(or Ctrl + wheel) scale the view. ``agent.serve`` serves the same page live at ``/trees/<id>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import anyio

from agent.errors import DataError, InputError
from agent.tasks.grading import Grader

__all__ = ["grade_terminals", "load_trees", "main", "render_html", "view", "write_tree_page"]


def load_trees(path: Path) -> list[dict[str, Any]]:
    """The trees in a JSON file, or in every ``*.json`` of a directory (sorted by name)."""
    if not path.exists():
        raise InputError(f"{path} does not exist; give a tree JSON file or a directory of them")
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path} holds no .json trees; save some with agent.evaluate --save-trees DIR")
    trees = []
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{file} is not a JSON tree ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
            raise DataError(f"{file} is not a search tree: it needs a non-empty 'nodes' list")
        data.setdefault("id", file.stem)
        trees.append(data)
    return trees


async def grade_terminals(trees: Sequence[dict[str, Any]]) -> None:
    """Add ``correct`` (True/False) to each terminal node with an answer, where the tree's gold is known."""
    async with Grader() as grader:
        for tree in trees:
            gold = tree.get("gold")
            if gold is None:
                continue
            for node in tree["nodes"]:
                if node.get("terminal") and node.get("answer") is not None:
                    node["correct"] = await grader.grade(node["answer"], str(gold))


def render_html(
    trees: Sequence[dict[str, Any]], *, title: str = "treeloop trees", live: str | None = None
) -> str:
    """The viewer page for ``trees``; with ``live`` (a URL of one tree's JSON), it refreshes from it."""
    page = resources.files("agent").joinpath("viewer.html").read_text(encoding="utf-8")
    data = _script_json(list(trees))
    config = _script_json({"live": live})
    return page.replace("__TITLE__", escape(title)).replace("__CONFIG__", config).replace("__DATA__", data)


def _script_json(value: Any) -> str:
    """JSON that is inert inside a <script> element: no '<', '>' or '&' appears literally."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def write_tree_page(path: Path, target: Path) -> Path:
    """Grade and render the trees at ``path`` (a file or a directory) into ``target``, atomically."""
    trees = await anyio.to_thread.run_sync(load_trees, path)
    await grade_terminals(trees)
    page = render_html(trees, title=f"treeloop: {path.name}")

    def write() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(page)
        tmp.replace(target)

    await anyio.to_thread.run_sync(write)
    return target


def view(path: Path, out: Path | None) -> Path:
    """``python -m agent.trees view``: the page for ``path``, written to ``out`` or beside it."""
    target = out or (path / "trees.html" if path.is_dir() else path.with_suffix(".html"))
    return anyio.run(write_tree_page, path, target)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent.trees", description="Look at saved search trees.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("view", help="write one self-contained HTML page for a tree or a directory of trees")
    v.add_argument("path", type=Path, help="a tree JSON (agent.evaluate --save-trees) or a directory of them")
    v.add_argument("--out", type=Path, help="the HTML file (default: PATH.html, or DIR/trees.html)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        target = view(args.path, args.out)
    except (InputError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
