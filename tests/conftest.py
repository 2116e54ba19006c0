"""Shared fixtures: the asyncio backend, a block on non-loopback network, one embedded server.

The embedded llama.cpp server is started once per test session (two servers on a small machine
starve each other) and only when a test asks for it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

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


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The shared embedded server (bundled SmolLM2), started on first use.

    A test that restarts it with an adapter must restart it with ``BASE_CONFIG`` when done.
    """
    config = EmbeddedServerConfig(
        parallel=8,
        threads=os.cpu_count() or 2,
        ctx_per_slot=2048,
        log_file=tmp_path_factory.mktemp("server") / "llama-server.log",
    )
    server = EmbeddedServer(config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedded_url(embedded_server: EmbeddedServer) -> str:
    """Base URL of the shared embedded server."""
    return embedded_server.url
