"""The tree viewer (agent.trees): loading saved trees, grading terminals, the self-contained page, the
command line, and the page in a real headless browser (Debian's Chromium driven by Playwright through
``executable_path``; skipped, with the reason, where no Chromium is installed)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import DataError, InputError
from agent.fakes import synthetic_tree
from agent.trees import grade_terminals, load_trees, main, render_html


def save(directory: Path, tree: dict[str, Any], name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name or tree['id']}.json"
    path.write_text(json.dumps(tree))
    return path


def test_load_trees_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_trees(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.json trees"):
        load_trees(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not a JSON tree"):
        load_trees(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"nodes": []}')
    with pytest.raises(DataError, match="non-empty 'nodes'"):
        load_trees(tmp_path / "other.json")


def test_a_directory_loads_sorted_and_terminals_are_graded(tmp_path: Path) -> None:
    import anyio

    save(tmp_path, synthetic_tree(30, seed=1), "b")
    no_gold = synthetic_tree(10, seed=2) | {"gold": None}
    save(tmp_path, no_gold, "a")
    trees = load_trees(tmp_path)
    assert [t["id"] for t in trees] == ["synthetic-10", "synthetic-30"]
    anyio.run(grade_terminals, trees)
    assert all("correct" not in n for n in trees[0]["nodes"])  # no gold: nothing marked
    terminals = [n for n in trees[1]["nodes"] if n["terminal"]]
    assert terminals and all(n["correct"] == (n["answer"] == "12") for n in terminals)


def test_the_page_is_self_contained_and_escapes_text() -> None:
    tree = synthetic_tree(5)
    tree["nodes"][1]["option"] = "</script><script>window.pwned = 1</script>"
    page = render_html([tree], title="<t>")
    assert "<title>&lt;t&gt;</title>" in page
    assert len(re.findall(r"<script", page)) == 3  # config, data, code: the option stays data
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)  # no CDN, works offline
    assert "<link" not in page
    data = page.split('<script id="data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)[0]["nodes"][1]["option"].startswith("</script>")


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = save(tmp_path / "trees", synthetic_tree(20))
    assert main(["view", str(path)]) == 0
    assert path.with_suffix(".html").exists() and "wrote" in capsys.readouterr().out
    assert main(["view", str(tmp_path / "trees"), "--out", str(tmp_path / "all.html")]) == 0
    assert (tmp_path / "all.html").read_text().count("synthetic-20") >= 1
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def write_page(argv: list[str]) -> None:
    """``agent.trees view`` on its own thread (Playwright's sync API holds this thread's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(main, argv).result() == 0


def _chromium() -> str | None:
    return os.environ.get("TREELOOP_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (apt install chromium, or set TREELOOP_CHROMIUM)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_a_saved_tree_in_the_browser(browser: Any, tmp_path: Path) -> None:
    tree = synthetic_tree(40, seed=3)
    path = save(tmp_path, tree)
    write_page(["view", str(path)])
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.with_suffix(".html").as_uri())
    page.wait_for_selector("#tree li")
    assert "40 nodes" in page.inner_text("#meta") and "gold 12" in page.inner_text("#meta")

    # The chosen path is open and highlighted: root, ..., the chosen terminal.
    chosen = tree["chosen"]
    depth = tree["nodes"][chosen]["depth"]
    assert page.locator(".n.chosen").count() == depth + 1
    assert page.locator(f'li[data-node="{chosen}"] .ans.ok').count() == 1

    # Expand one collapsed node: its children appear.
    shown = page.locator("#tree li").count()
    closed = page.locator('.tg[data-id]:text("▸")').first
    node_id = int(closed.get_attribute("data-id"))
    closed.click()
    kids = tree["nodes"][node_id]["children"]
    assert page.locator("#tree li").count() == shown + len(kids)
    assert page.locator(f'li[data-node="{kids[0]}"]').count() == 1

    # Expand everything: every node, with right and wrong terminal answers marked.
    page.click("#expand")
    assert page.locator("#tree li").count() == 40
    right = sum(1 for n in tree["nodes"] if n["terminal"] and n["answer"] == "12")
    wrong = sum(1 for n in tree["nodes"] if n["terminal"] and n["answer"] != "12")
    assert page.locator(".ans.ok").count() == right and page.locator(".ans.bad").count() == wrong

    # Search highlights the matches; zoom scales the tree.
    page.click("#collapse")
    page.fill("#find", "The answer is 12.")
    assert page.locator(".n.hit").count() == right
    page.click("#zin")
    assert "scale(1.25)" in (page.get_attribute("#tree", "style") or "")
    shot = page.screenshot()
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
    assert errors == []


def test_two_thousand_nodes_and_a_tree_picker(browser: Any, tmp_path: Path) -> None:
    big, small = synthetic_tree(2000, seed=4), synthetic_tree(12, seed=5)
    save(tmp_path / "trees", big)
    save(tmp_path / "trees", small)
    write_page(["view", str(tmp_path / "trees")])
    page = browser.new_page()
    page.goto((tmp_path / "trees" / "trees.html").as_uri())
    page.wait_for_selector("#tree li")
    assert page.locator("#pick option").count() == 2
    page.select_option("#pick", "1")  # sorted by file name: synthetic-12, synthetic-2000
    page.click("#expand")
    assert page.locator("#tree li").count() == 2000
    assert "2000 of 2000 nodes shown" in page.inner_text("#count")
