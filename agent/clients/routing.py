"""A routing key per search, sent as a header so that a router keeps one search on one worker.

``sglang-router`` with ``--policy manual`` pins every request that carries the same
``x-smg-routing-key`` header to the same worker (chosen by ``--assignment-mode`` the first time it sees
the key). All the requests of one search share long prompt prefixes (the question, the steps so far), so
pinning them keeps that worker's prefix cache warm; different searches spread over the workers.

The key lives in a context variable: ``solve_problem`` sets it for the duration of one problem, and
every request made inside (policy expansions, critic scores, rollouts, in whatever child task) carries
it. Servers that do not route ignore the header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["ROUTING_HEADER", "current_routing_key", "routed"]

ROUTING_HEADER = "x-smg-routing-key"

_key: ContextVar[str | None] = ContextVar("treeloop_routing_key", default=None)


def current_routing_key() -> str | None:
    """The routing key of the search this code runs in, if any."""
    return _key.get()


@contextlib.contextmanager
def routed(key: str) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) carry ``key`` as the routing header."""
    if not key or any(c in key for c in "\r\n"):
        raise ValueError(f"a routing key must be a non-empty single-line string, got {key!r}")
    token = _key.set(key)
    try:
        yield
    finally:
        _key.reset(token)
