"""Where problem rows come from: local JSONL files or the Hugging Face hub, one row parser each task.

A source is a file path or ``hf:owner/name[:config]``. Both kinds of source yield plain dict rows
with a location ("path: line 7", "hf:openai/gsm8k:main test: row 7") that the task's row parser
puts into its DataError messages, so a file and a hub dataset are validated by the same code.

Left out on purpose: caching beyond what ``datasets`` does, streaming and sampling (a caller slices
the list it gets back). Nothing touches the network unless a ``hf:`` source is asked for, and
``datasets`` is imported only then.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from agent.errors import ConfigError, DataError
from agent.tasks.base import Problem

__all__ = [
    "DEFAULT_SOURCES",
    "Row",
    "load_from_hub",
    "load_problems",
    "read_jsonl",
    "require_str",
    "rows_from_hub",
]

DEFAULT_SOURCES = {"gsm8k": "hf:openai/gsm8k:main", "math": "hf:HuggingFaceH4/MATH-500"}


class Row(NamedTuple):
    """One raw record: its 0-based position, where it came from (for messages) and its fields."""

    position: int
    where: str
    data: Mapping[str, Any]


def read_jsonl(path: str | Path) -> list[Row]:
    """The records of a JSONL file; blank lines are skipped, an empty file is a DataError."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    rows = [_parse_line(path, i, line) for i, line in enumerate(lines) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no records (the file is empty)")
    return rows


def load_from_hub(
    name: str, *, split: str, config: str | None = None, cache_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """The rows of a Hugging Face dataset split (``name`` may also be a local dataset folder)."""
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("loading from the Hugging Face hub needs: pip install datasets") from exc
    label = _hub_label(name, config)
    try:
        dataset = datasets.load_dataset(
            name, config, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except Exception as exc:
        raise DataError(f"{label}: cannot load split {split!r}: {exc}") from exc
    return [dict(row) for row in dataset]


def rows_from_hub(
    name: str, *, split: str, config: str | None = None, cache_dir: str | Path | None = None
) -> list[Row]:
    """``load_from_hub`` rows with their locations, ready for a task's row parser."""
    label = _hub_label(name, config)
    rows = load_from_hub(name, split=split, config=config, cache_dir=cache_dir)
    if not rows:
        raise DataError(f"{label}: split {split!r} has no rows")
    return [Row(i, f"{label} {split}: row {i + 1}", row) for i, row in enumerate(rows)]


def load_problems(
    task_name: str,
    source: str | None = None,
    *,
    split: str = "test",
    cache_dir: str | Path | None = None,
) -> list[Problem]:
    """The problems of ``task_name`` ("gsm8k" or "math") from a JSONL path or ``hf:owner/name[:config]``.

    Without a source, the task's public hub dataset is used (``DEFAULT_SOURCES``). ``split`` and
    ``cache_dir`` (the ``datasets`` cache) matter only for hub sources: a file is one split, and
    its problem ids use the file's stem where hub ids use the split name.
    """
    parse_rows = _row_parsers().get(task_name)
    if parse_rows is None:
        raise ConfigError(f"unknown task {task_name!r}; known: {sorted(DEFAULT_SOURCES)}")
    source = source or DEFAULT_SOURCES[task_name]
    if source.startswith("hf:"):
        name, _, config = source.removeprefix("hf:").partition(":")
        if not name:
            raise ConfigError(f"hub source {source!r} names no dataset; write hf:owner/name[:config]")
        rows = rows_from_hub(name, split=split, config=config or None, cache_dir=cache_dir)
        return parse_rows(rows, source=split)
    return parse_rows(read_jsonl(source), source=Path(source).stem)


def require_str(row: Row, field: str) -> str:
    """``row``'s non-empty string field, or a DataError naming the row and the field."""
    if field not in row.data or row.data[field] is None:
        raise DataError(f"{row.where}: missing field {field!r}")
    value = row.data[field]
    if not isinstance(value, str):
        raise DataError(f"{row.where}: field {field!r} is not a string")
    if not value.strip():
        raise DataError(f"{row.where}: field {field!r} is empty")
    return value


def _parse_line(path: Path, position: int, line: str) -> Row:
    where = f"{path}: line {position + 1}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{where}: not a JSON object")
    return Row(position, where, data)


def _hub_label(name: str, config: str | None) -> str:
    return f"hf:{name}:{config}" if config else f"hf:{name}"


def _row_parsers() -> dict[str, Callable[..., list[Problem]]]:
    """Task name → rows parser. Imported here because the task modules import ``read_jsonl``."""
    from agent.tasks.gsm8k import parse_gsm8k_rows
    from agent.tasks.math import parse_math_rows

    return {"gsm8k": parse_gsm8k_rows, "math": parse_math_rows}
