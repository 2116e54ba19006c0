"""Fakes shipped with the package, so that everything above the clients runs without model servers.

- ``FakeServer`` (``agent.fakes.server``): a real HTTP server on a loopback port that speaks the
  OpenAI-compatible and llama.cpp completion dialects with a slots-and-latency cost model; point any
  ``Endpoint`` at ``server.url``. For client, concurrency and benchmark tests.
- ``FunctionBackend`` and ``FunctionCritic`` (``agent.fakes.backend``): in-process fakes of the
  ``Backend`` and ``Critic`` protocols driven by a Python function, for driver and search tests.
- ``synthetic_tree`` (``agent.fakes.trees``): a saved search tree of any size, for the viewer.
"""

from __future__ import annotations

from agent.fakes.backend import FunctionBackend, FunctionCritic
from agent.fakes.server import FakeServer, FakeServerStats, default_text
from agent.fakes.trees import synthetic_tree

__all__ = [
    "FakeServer",
    "FakeServerStats",
    "FunctionBackend",
    "FunctionCritic",
    "default_text",
    "synthetic_tree",
]
