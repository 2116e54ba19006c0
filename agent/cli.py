"""What the command-line entry points share: endpoint flags, logging setup, error reporting.

User errors (``AgentError``) end the program with a one-paragraph message and exit status 2, never
a traceback. Logging is configured here and only here (entry points), not by library modules.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog

from agent.errors import AgentError, ConfigError, single_error
from agent.search.config import PRESETS, SearchConfig, preset
from agent.settings import load_settings
from agent.solvers import CRITICS, METHODS, SolverConfig

__all__ = [
    "add_policy_args",
    "add_search_args",
    "add_solver_args",
    "configure_logging",
    "policy_overrides",
    "report_errors",
    "run_cli",
    "search_config",
    "solver_config",
]


def add_policy_args(parser: argparse.ArgumentParser, *, adapter: bool = True) -> None:
    group = parser.add_argument_group(
        "policy endpoint", "default: AGENT_POLICY__* settings; with no URL, the embedded CPU model"
    )
    if adapter:
        group.add_argument(
            "--policy-from",
            metavar="PATH",
            help="serve a fine-tuned policy: a run of python -m agent.improve (runs/NAME: its promoted "
            "cycle), a GGUF LoRA or a PEFT adapter folder (default: AGENT_POLICY_ADAPTER, else the base "
            "model)",
        )
    group.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:30000")
    group.add_argument("--backend", choices=("openai", "sglang", "llamacpp"), help="API dialect of --url")
    group.add_argument("--model", help="model name sent with OpenAI-style requests")
    group.add_argument("--prompt-format", choices=("chatml", "llama3", "gemma", "plain"))
    group.add_argument(
        "--prompt",
        help="prompt variant of the task (instruction and worked examples): house, mixed-8, mixed-4, "
        "plain-8, zero-shot (math: house); default: AGENT_PROMPT, else the task's measured default "
        "(mixed-8)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=None, help="default: warning"
    )


def add_solver_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the solvers (greedy, sc, mcts), shared by agent.solve and agent.evaluate."""
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="greedy",
        help="greedy, sc (self-consistency), rerank (ORM re-rank@N), mcts (default: %(default)s)",
    )
    parser.add_argument("--n", type=int, default=8, help="samples for sc and rerank (default 8)")
    parser.add_argument("--max-tokens", type=int, default=320, help="tokens per solution")
    parser.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature for sc and rerank"
    )
    add_search_args(parser)
    parser.add_argument(
        "--critics",
        choices=CRITICS,
        default="arithmetic",
        help="arithmetic, generative, mixed (no training); verifier (model-free features, weights fitted on "
        "the policy's solutions and shipped; AGENT_VERIFIER); trained (AGENT_CRITIC_ADAPTERS, else the "
        "critic shipped for the bundled model) or checked (trained, capped by the arithmetic re-check); none "
        "(default: %(default)s)",
    )


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Flags of the ηMCTS search (a preset and overrides), shared by the solvers and agent.improve."""
    group = parser.add_argument_group("search (mcts)")
    group.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small", help="search parameters")
    group.add_argument("--simulations", type=int, help="simulations per tree (overrides the preset)")
    group.add_argument("--rollouts", type=int, help="fast rollouts per new node (0: off)")
    group.add_argument("--workers", type=int, help="simulations of one tree in flight at once")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other search setting, e.g. --set c=1.5 --set merge=none (see agent.search.config)",
    )


def solver_config(args: argparse.Namespace) -> SolverConfig:
    """The solver configuration the flags describe; ConfigError for malformed --set values."""
    return SolverConfig(
        method=args.method,
        n=args.n,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        search=search_config(args),
        critics=args.critics,
    )


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The preset with ``--simulations``, ``--rollouts``, ``--workers`` and ``--set`` applied."""
    changes: dict[str, Any] = {}
    search = preset(args.preset)
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        key = key.strip()
        # a text field keeps its text ("merge=none" is the method none, not a missing value)
        text = isinstance(getattr(search, key, None), str)
        changes[key] = raw.strip() if text else _parse_value(raw.strip())
    for flag in ("simulations", "rollouts", "workers"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    if "simulations" in changes and changes["simulations"] > search.max_simulations:
        changes.setdefault("max_simulations", changes["simulations"])
    try:
        search = search.with_overrides(**changes)
    except TypeError as exc:
        raise ConfigError(f"invalid --set value: {exc}") from exc
    return search


def _parse_value(raw: str) -> Any:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(raw.lower(), raw)


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
    if getattr(args, "prompt", None) is not None:
        overrides["prompt"] = args.prompt
    if getattr(args, "policy_from", None) is not None:
        overrides["policy_adapter"] = args.policy_from
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
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # see agent/__init__.py

    def run() -> int:
        configure_logging(level or load_settings().log_level)
        try:
            return anyio.run(main)
        except BaseExceptionGroup as group:
            raise _leaf(group, OSError) from None

    return report_errors(run)


def report_errors(main: Callable[[], int]) -> int:
    """``main()``, with user errors printed as one ``error:`` line (plus hints) and exit status 2,
    Ctrl-C as status 130, and file-system errors (disk full, a directory where a file belongs,
    an unwritable path) named with their path; never a traceback for any of them."""
    try:
        return main()
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(note, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        # What was written before stays (writes are atomic); say which file and what to do.
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"error: {exc.strerror or exc}{where}; check that path, its permissions and the free disk "
            "space, then rerun the same command (finished work is kept)",
            file=sys.stderr,
        )
        return 2


def _leaf(group: BaseExceptionGroup, kind: type[BaseException]) -> BaseException:
    """The error to report from a task group: ours if there is one, else the first ``kind``."""
    error = single_error(group)
    if not isinstance(error, BaseExceptionGroup):
        return error
    match, _ = group.split(kind)
    while isinstance(match, BaseExceptionGroup):
        match = match.exceptions[0]
    return match if match is not None else group
