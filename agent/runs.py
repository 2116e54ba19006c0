"""A run directory: ``run.json`` (what was asked), ``results.jsonl`` (one line per problem),
``summary.json`` (written last).

Writes are atomic where it matters: ``run.json`` and ``summary.json`` are written to a temporary
file and renamed; each result is one line appended and flushed to disk, so a run killed at any
point loses at most the line being written. Reopening the directory truncates a torn last line,
reports which problems are finished, and refuses to mix results from a different configuration.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, DataError

__all__ = ["RunDir", "write_json_atomic", "write_lines_atomic"]

# Keys of run.json that must match for results to be comparable on resume.
_IDENTITY_KEYS = ("task", "prompt", "data", "method", "n", "solver")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_lines_atomic(path: Path, lines: list[str]) -> None:
    """Write ``lines`` (one per line, e.g. JSONL) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.writelines(f"{line}\n" for line in lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir:
    """Results of one evaluation, resumable across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results_path = path / "results.jsonl"
        self.summary_path = path / "summary.json"
        self.config_path = path / "run.json"
        self._lock = threading.Lock()

    def open(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Create or reopen the run; return the results already recorded (blocking I/O)."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file; --out takes a directory (new, or an earlier run's)")
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            self._check_same_run(config)
        else:
            write_json_atomic(self.config_path, dict(config))
        return self._read_results()

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one result line and flush it to disk (blocking; call from a worker thread)."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        try:
            with self._lock, self.results_path.open("a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # disk full, file too large: name the file (a torn line is cut on resume)
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.results_path)) from exc

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json_atomic(self.summary_path, dict(summary))

    def _check_same_run(self, config: Mapping[str, Any]) -> None:
        try:
            previous = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{self.config_path} is not valid JSON ({exc}); remove it or use another --out"
            ) from exc
        for key in _IDENTITY_KEYS:
            if previous.get(key) != config.get(key):
                raise ConfigError(
                    f"{self.path} holds a run with {key}={previous.get(key)!r}, not {config.get(key)!r}; "
                    "use a different --out to start a new run"
                )

    def _read_results(self) -> list[dict[str, Any]]:
        if not self.results_path.exists():
            return []
        raw = self.results_path.read_bytes()
        records, good_end = [], 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn last line: the process died while writing it
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{self.results_path} line {len(records) + 1} is not valid JSON; "
                    "fix or delete that line to resume"
                ) from exc
            good_end += len(line)
        if good_end < len(raw):
            with self.results_path.open("r+b") as f:
                f.truncate(good_end)
        return records
