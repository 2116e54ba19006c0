"""``report.md`` for a run of self-improvement cycles: accuracy and tokens per solved problem by cycle.

Reads the cycles' manifests (nothing else), writes ``report.md`` and, when matplotlib is installed,
``accuracy.png`` and ``tokens.png`` next to it. Cycle 0 is the base policy (the first cycle's
"before" evaluation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def _manifests(root: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(root.glob("cycle_*/manifest.json"), key=lambda p: int(p.parent.name.split("_")[1])):
        found.append(json.loads(path.read_text()))
    return found


def write_report(root: Path) -> Path:
    manifests = _manifests(root)
    rows: list[tuple[str, dict[str, Any], str]] = []
    if manifests:
        rows.append(("0 (base)", manifests[0]["before"], ""))
    for m in manifests:
        rows.append(
            (str(m["cycle"]), m["after"], f"{m['kept']} kept; {'promoted' if m['promoted'] else 'kept old'}")
        )
    methods = sorted({method for _, evaluation, _ in rows for method in evaluation})
    header = "| cycle | " + " | ".join(f"{m} acc | {m} tokens/solved" for m in methods) + " | notes |"
    lines = [
        f"# Self-improvement report: {root.name}",
        "",
        "Accuracy on the held-out problems after each cycle, and prompt + completion tokens spent per",
        "solved problem. A cycle's adapter is promoted only if no method got worse beyond noise.",
        "",
        header,
        "|" + "---|" * (2 * len(methods) + 2),
    ]
    for name, evaluation, notes in rows:
        cells = []
        for method in methods:
            result = evaluation.get(method, {})
            acc = f"{result['accuracy']:.3f} ({result['correct']}/{result['problems']})" if result else "-"
            if result.get("interval"):
                acc += " [{:.2f}, {:.2f}]".format(*result["interval"])
            per_solved = result.get("tokens_per_solved") if result else None
            tokens = f"{per_solved:.0f}" if per_solved is not None else "-"
            cells += [acc, tokens]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {notes} |")
    lines += _by_steps_table(rows, methods) + _phases_table(manifests) + _levels_table(manifests)
    for m in manifests:
        lines += [
            "",
            f"Cycle {m['cycle']}: {m['why']}.",
            f"Search: {m['search']}.",
            f"Adapter: {m['adapter']['path']}",
        ]
        page = root / f"cycle_{m['cycle']}" / "search" / "trees.html"
        if page.exists():
            lines.append(f"Search trees: [{page.relative_to(root)}]({page.relative_to(root)})")
        if m.get("critics", {}).get("adapters"):
            lines.append(f"Critics ({m['critics']['note']}): {m['critics']['adapters']}")
    plots = _plots(root, rows, methods)
    lines += [""] + [f"![{name}]({name}.png)" for name in plots]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _by_steps_table(rows: list[tuple[str, dict[str, Any], str]], methods: list[str]) -> list[str]:
    """Right / total by the problems' number of solution steps, per cycle and method."""
    steps = sorted(
        {k for _, e, _ in rows for m in methods for k in e.get(m, {}).get("by_steps", {})}, key=int
    )
    if not steps:
        return []
    columns = [(m, k) for m in methods for k in steps]
    lines = [
        "",
        "By number of solution steps (right / problems):",
        "",
        "| cycle | " + " | ".join(f"{m} {k}-step" for m, k in columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, evaluation, _ in rows:
        cells = []
        for m, k in columns:
            cell = evaluation.get(m, {}).get("by_steps", {}).get(k)
            cells.append(f"{cell[0]}/{cell[1]}" if cell else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _phases_table(manifests: list[dict[str, Any]]) -> list[str]:
    """Minutes per phase, and what the search kept and why the rest was dropped."""
    lines = [
        "",
        "Minutes per phase, and the searched traces kept (the rest dropped, with the reasons):",
        "",
        "| cycle | prompts | search | fine-tune | evaluation | kept / searched | dropped because |",
        "|---|---|---|---|---|---|---|",
    ]

    def minutes(seconds: float | None) -> str:
        return f"{seconds / 60:.1f}" if seconds is not None else "-"

    for m in manifests:
        search = m.get("search") or {}
        trained = (m.get("adapter") or {}).get("result", {}).get("seconds")
        evals = [r.get("seconds") for r in (m.get("after") or {}).values() if r.get("seconds") is not None]
        reasons = {k: v for k, v in (search.get("reasons") or {}).items() if k != "kept"}
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(
            f"| {m['cycle']} | {minutes((m.get('prompts') or {}).get('seconds'))} | "
            f"{minutes(search.get('seconds'))} | {minutes(trained)} | "
            f"{minutes(sum(evals) if evals else None)} | {search.get('kept', '-')} / "
            f"{search.get('searched', '-')} | {dropped} |"
        )
    return lines


def _levels_table(manifests: list[dict[str, Any]]) -> list[str]:
    """The real training prompts each cycle searched and kept, by difficulty (and the curriculum's
    frontier, when one chose them)."""
    levels = sorted({int(lv) for m in manifests for lv in m.get("levels") or {}})
    if not levels:
        return []
    lines = [
        "",
        "Real training prompts kept / searched (trees with the gold among their terminals), by difficulty",
        "(steps; MATH: level), and the minimum terminals per tree of the levels --more-terminals raised:",
        "",
        "| cycle | curriculum frontier | " + " | ".join(str(lv) for lv in levels) + " |",
        "|---|---|" + "---|" * len(levels),
    ]
    for m in manifests:
        chosen = (m.get("prompts") or {}).get("curriculum") or {}
        raised = (m.get("search") or {}).get("min_terminals") or {}
        cells = []
        for lv in levels:
            kept, searched, *found = (m.get("levels") or {}).get(str(lv), (0, 0))
            cell = f"{kept} / {searched}" + (f" ({found[0]})" if found else "") if searched else "-"
            cells.append(cell + (f", min {raised[str(lv)]} terminals" if str(lv) in raised else ""))
        lines.append(f"| {m['cycle']} | {chosen.get('frontier', '-')} | " + " | ".join(cells) + " |")
    return lines


def _plots(root: Path, rows: list[tuple[str, dict[str, Any], str]], methods: list[str]) -> list[str]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    made = []
    for name, key, label in (
        ("accuracy", "accuracy", "accuracy"),
        ("tokens", "tokens_per_solved", "tokens per solved"),
    ):
        figure = Figure(figsize=(5, 3.2))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for method in methods:
            points = [
                (i, e[method][key])
                for i, (_, e, _) in enumerate(rows)
                if e.get(method, {}).get(key) is not None
            ]
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        axes.set_xlabel("cycle")
        axes.set_ylabel(label)
        if axes.lines:
            axes.legend()
        else:  # e.g. no method solved anything yet: no tokens-per-solved point to draw
            axes.text(0.5, 0.5, "nothing to plot yet", ha="center", va="center", transform=axes.transAxes)
        figure.tight_layout()
        figure.savefig(root / f"{name}.png", dpi=100)
        made.append(name)
    return made
