"""Shared fixtures: the asyncio backend, a block on non-loopback network, one embedded server.

The embedded llama.cpp server is started once per test session and only when a test asks for it;
a test that needs adapters gets the same single server restarted with them (two servers on a small
machine starve each other).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        try:
            allowed = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = False
        if not allowed:
            raise ConnectionRefusedError(f"tests may not reach the network ({host}); use a local server")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests talk to fakes or to the local server, never to the outside world."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


class OneServer:
    """At most one embedded server per test session; asking for another configuration restarts it."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.server: EmbeddedServer | None = None

    def config(self, *, lora: tuple[Path, ...] = (), model: Path | None = None) -> EmbeddedServerConfig:
        return EmbeddedServerConfig(
            model_path=model,
            parallel=8,
            threads=os.cpu_count() or 2,
            ctx_per_slot=2048,
            lora=lora,
            log_file=self.log_dir / "llama-server.log",
        )

    def get(self, *, lora: tuple[Path, ...] = (), model: Path | None = None) -> EmbeddedServer:
        wanted = self.config(lora=lora, model=model)
        if self.server is None or replace(self.server.config, port=0) != wanted:
            self.stop()
            self.server = EmbeddedServer(wanted)
            self.server.start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="session")
def embedded_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneServer]:
    servers = OneServer(tmp_path_factory.mktemp("server"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def embedded_server(embedded_servers: OneServer) -> EmbeddedServer:
    """The shared embedded server with the bundled model and no adapters (restarted if needed)."""
    return embedded_servers.get()


@pytest.fixture
def embedded_url(embedded_server: EmbeddedServer) -> str:
    """Base URL of the shared embedded server."""
    return embedded_server.url
