"""Benchmark: the tree viewer in headless Chromium, for trees of growing size.

For each ``--nodes`` size, a synthetic tree (``agent.fakes.synthetic_tree``) is written as the page
``agent.trees`` makes and opened in Debian's Chromium through Playwright (``--chromium``, default the
``chromium`` on PATH). Columns: page size, time to first render (navigation start to the first drawn
node), time to expand every node, nodes drawn, and the page's JavaScript heap after expanding (CDP
``Performance.getMetrics``). Each size is opened ``--repeat`` times; the median is reported.
``--screenshot PATH`` also saves a picture of a small real-looking tree (the README's).

    PYTHONPATH=. python bench/viewer.py
    PYTHONPATH=. python bench/viewer.py --nodes 500 2000 8000 --tree runs/trees/arith-s0-00003.json \\
        --screenshot bench/viewer.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from _common import print_table

from agent.fakes import synthetic_tree
from agent.trees import grade_terminals, load_trees, render_html


def measure(browser: Any, page_path: Path, expected: int) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    client = page.context.new_cdp_session(page)
    client.send("Performance.enable")
    page.goto(page_path.as_uri())
    page.wait_for_selector("#tree li")
    first = page.evaluate("performance.now()")
    started = page.evaluate("performance.now()")
    page.click("#expand")
    page.wait_for_function(f"document.querySelectorAll('#tree li').length === {expected}")
    expanded = page.evaluate("performance.now()") - started
    metrics = {m["name"]: m["value"] for m in client.send("Performance.getMetrics")["metrics"]}
    drawn = page.locator("#tree li").count()
    page.close()
    return {
        "first_ms": first,
        "expand_ms": expanded,
        "drawn": drawn,
        "heap_mb": metrics["JSHeapUsedSize"] / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/viewer.py", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 500, 2000, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="the browser executable")
    parser.add_argument("--tree", type=Path, help="a saved tree for --screenshot (default: a synthetic one)")
    parser.add_argument("--screenshot", type=Path, help="save a picture of the viewer here")
    args = parser.parse_args(argv)
    if not args.chromium:
        print("error: no chromium found; apt install chromium or pass --chromium PATH", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    rows = []
    shot_trees = load_trees(args.tree) if args.tree else [synthetic_tree(30, seed=3)]
    anyio.run(grade_terminals, shot_trees)  # before Playwright's sync API takes this thread's loop
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for n in args.nodes:
            path = Path(tmp) / f"tree-{n}.html"
            path.write_text(render_html([synthetic_tree(n)]))
            runs = [measure(browser, path, n) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append(
                [
                    n,
                    f"{path.stat().st_size / 1024:.0f}",
                    f"{med['first_ms']:.0f}",
                    f"{med['expand_ms']:.0f}",
                    int(med["drawn"]),
                    f"{med['heap_mb']:.1f}",
                ]
            )
        if args.screenshot:
            path = Path(tmp) / "shot.html"
            path.write_text(render_html(shot_trees))
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(path.as_uri())
            page.wait_for_selector("#tree li")
            page.screenshot(path=str(args.screenshot))
            print(f"wrote {args.screenshot}")
        browser.close()
    print_table(
        "Tree viewer in headless Chromium (median of --repeat)",
        ["nodes", "page KiB", "first render ms", "expand all ms", "nodes drawn", "JS heap MiB"],
        rows,
        notes=["first render: navigation start to the first drawn node (the chosen path open)"],
    )
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
