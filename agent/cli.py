"""What the command-line entry points share: endpoint flags, logging setup, error reporting.

User errors (``AgentError``) end the program with a one-paragraph message and exit status 2, never
a traceback. Logging is configured here and only here (entry points), not by library modules.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from agent.errors import AgentError, single_error
from agent.settings import load_settings

__all__ = ["add_policy_args", "configure_logging", "policy_overrides", "run_cli"]


def add_policy_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "policy endpoint", "default: AGENT_POLICY__* settings; with no URL, the embedded CPU model"
    )
    group.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:30000")
    group.add_argument("--backend", choices=("openai", "sglang", "llamacpp"), help="API dialect of --url")
    group.add_argument("--model", help="model name sent with OpenAI-style requests")
    group.add_argument("--prompt-format", choices=("chatml", "llama3", "gemma", "plain"))
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=None, help="default: warning"
    )


def policy_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides from the flags that were given (the rest come from env and .env)."""
    policy = {
        key: value
        for key, value in {
            "url": args.url,
            "backend": args.backend,
            "model": args.model,
            "prompt_format": args.prompt_format,
        }.items()
        if value is not None
    }
    overrides: dict[str, Any] = {"policy": policy} if policy else {}
    if args.log_level:
        overrides["log_level"] = args.log_level
    return overrides


class _StderrLogger:
    """Writes each event to the current ``sys.stderr`` (looked up per call, so it survives redirection)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure_logging(level: str = "warning") -> None:
    numeric = getattr(logging, level.upper())
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )


def run_cli(main: Callable[[], Awaitable[int]], *, level: str | None) -> int:
    """Run an async entry point; turn user errors into a message and exit status 2."""
    try:
        configure_logging(level or load_settings().log_level)
        try:
            return anyio.run(main)
        except BaseExceptionGroup as group:
            raise single_error(group) from None
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
