"""Fakes shipped with the package, so that everything above the clients runs without model servers.

``FakeServer`` is a real HTTP server on a loopback port that speaks the OpenAI-compatible and
llama.cpp completion dialects with a simple slots-and-latency cost model; point any ``Endpoint`` at
``server.url``.
"""

from __future__ import annotations

from agent.fakes.server import FakeServer, FakeServerStats, default_text

__all__ = ["FakeServer", "FakeServerStats", "default_text"]
