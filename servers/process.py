"""Start a model server as a child process, wait until it is healthy, stop it.

One small mechanism serves every launcher (the embedded llama.cpp server, SGLang, vLLM): a command
line, an environment, a health URL and a log file. The server's own (often very verbose) output goes
to the log file, never to the terminal; when the server fails to start, the error quotes the end of
that log.

The API is synchronous on purpose: starting and stopping are rare, blocking operations. Async code
calls them through ``anyio.to_thread.run_sync`` (see ``servers.llamacpp.EmbeddedServer``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.errors import ServerStartError

__all__ = ["ManagedProcess", "exit_with_parent", "free_port", "log_tail"]

_POLL_SECONDS = 0.25


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, *, lines: int = 15) -> str:
    """The last lines of a log file, or a note that it is empty or missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


@dataclass
class ManagedProcess:
    """A running server process and where it can be reached."""

    popen: subprocess.Popen[bytes]
    health_url: str
    log_file: Path

    @classmethod
    def start(
        cls,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        health_url: str,
        log_file: Path,
        startup_timeout: float = 600.0,
    ) -> ManagedProcess:
        """Run ``command`` with its output in ``log_file`` and wait until ``health_url`` answers 200."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            try:
                popen = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **(env or {})},
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerStartError(f"could not run {command[0]!r}: {exc}") from exc
        process = cls(popen=popen, health_url=health_url, log_file=log_file)
        try:
            process.wait_healthy(timeout=startup_timeout)
        except BaseException:
            process.stop()
            raise
        return process

    def wait_healthy(self, *, timeout: float) -> None:
        """Poll the health URL until it answers 200; raise ServerStartError if the process dies first."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = self.popen.poll()
                if code is not None:
                    raise ServerStartError(
                        f"server exited with code {code} before becoming healthy; "
                        f"end of {self.log_file}:\n{log_tail(self.log_file)}"
                    )
                try:
                    if client.get(self.health_url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"server not healthy at {self.health_url} after {timeout:.0f} s; "
                        f"end of {self.log_file}:\n{log_tail(self.log_file)}"
                    )
                time.sleep(_POLL_SECONDS)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, *, grace: float = 10.0) -> None:
        """Terminate the process group; kill it if it has not exited after ``grace`` seconds."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def exit_with_parent(parent_pid: int | None, *, poll: float = 1.0) -> None:
    """From a child process: exit at once when ``parent_pid`` is no longer the parent (it was killed,
    even with SIGKILL), so that no orphan keeps a GPU, a port or a half-written output busy. A
    daemon thread polls ``os.getppid()``; ``None`` does nothing."""
    if parent_pid is None:
        return
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
