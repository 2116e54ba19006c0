"""Tasks: GSM8K, MATH and the built-in generated arithmetic word problems, behind one registry."""

from __future__ import annotations

from agent.errors import ConfigError
from agent.tasks.base import Problem, Task

__all__ = ["TASKS", "Problem", "Task", "get_task", "load_task_problems"]

TASKS = ("arith", "gsm8k", "math")


def get_task(name: str, *, prompt: str | None = None) -> Task:
    """The task ``name`` with the prompt variant ``prompt`` (default: the task's measured default)."""
    if name == "gsm8k":
        from agent.tasks.gsm8k import Gsm8kTask

        return Gsm8kTask(prompt)
    if name == "math":
        from agent.tasks.math import MathTask

        return MathTask(prompt)
    if name == "arith":
        from agent.tasks.arith import ArithTask

        return ArithTask(prompt=prompt)
    raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")


def load_task_problems(
    name: str,
    *,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
) -> list[Problem]:
    """Problems of a task: generated (``arith``), or read from a JSONL path or ``hf:owner/name``.

    GSM8K and MATH need ``data``; a network-less machine passes a local file.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    if name == "arith":
        if data is not None:
            raise ConfigError("the arith task is generated; it takes --seed and --limit, not --data")
        from agent.tasks.arith import ArithTask

        return ArithTask().load(limit or 100, seed=seed, split=split)
    get_task(name)  # validates the name
    if data is None:
        raise ConfigError(
            f"task {name!r} needs --data: a JSONL file in the official format, or hf:owner/name for the hub"
        )
    from agent.tasks.hub import load_problems

    problems = load_problems(name, data, split=split)
    return problems[:limit] if limit is not None else problems
