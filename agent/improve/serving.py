"""Serving the policy for cycles: the embedded llama.cpp server or a remote SGLang / vLLM server,
each with the ``Swap`` that puts a cycle's adapters (policy and critics) into it.

    async with embedded_policy() as (policy, swap):
        manifest = await run_cycle(1, CycleConfig(), policy, swap)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.clients import Endpoint, LlamaCppBackend, RetryPolicy
from agent.improve.cycle import CRITIC_ROLES, Served, Swap
from agent.prompts import get_format
from agent.runtime import Policy, open_policy
from agent.settings import load_settings
from servers.llamacpp import EmbeddedServer

__all__ = ["embedded_policy", "embedded_swap", "remote_policy"]


@asynccontextmanager
async def embedded_policy(overrides: dict[str, object] | None = None) -> AsyncIterator[tuple[Policy, Swap]]:
    """The embedded server, a policy endpoint that rides out restarts, and a swap that restarts it.

    The prompt format is the served model's (``AGENT_EMBEDDED__MODEL``) unless the policy's is set
    (``AGENT_POLICY__PROMPT_FORMAT``, or ``prompt_format`` under ``overrides["policy"]``)."""
    from servers.llamacpp import EmbeddedServerConfig

    loaded = load_settings(**(overrides or {}))
    settings = loaded.embedded
    config = EmbeddedServerConfig.from_settings(settings)
    async with EmbeddedServer(config) as server:
        explicit = "prompt_format" in loaded.policy.model_fields_set
        fmt = get_format(loaded.policy.prompt_format if explicit else server.prompt_format)
        # A swap restarts the server: requests meanwhile are refused and retried, not lost.
        retry = RetryPolicy(attempts=10, initial_wait=0.5, max_wait=8.0)
        backend = LlamaCppBackend(server.url, max_n=settings.parallel)
        endpoint = Endpoint(backend, max_concurrency=settings.parallel, retry=retry)
        async with endpoint:
            policy = Policy(endpoint=endpoint, fmt=fmt, embedded=True)
            yield policy, embedded_swap(server, backend)


def embedded_swap(server: EmbeddedServer, backend: LlamaCppBackend) -> Swap:
    """Serve a policy adapter and critic adapters on the embedded server by restarting it on its port.

    A policy adapter alone is applied to every request; with critic adapters, all are loaded at
    scale 0 and each request names its own (``backend.lora`` for the policy's requests, the
    returned indices for the critics').
    """
    from servers.swap_llamacpp import LlamaCppSwapper

    current: Served | None = None if server.config.lora else Served()  # None: unknown adapters

    async def swap(served: Served) -> dict[str, str]:
        nonlocal current
        roles = [role for role in CRITIC_ROLES if role in served.critics]
        files = ([served.policy[1]] if served.policy else []) + [served.critics[r][1] for r in roles]
        offset = 1 if served.policy else 0
        refs = {role: str(offset + i) for i, role in enumerate(roles)}
        served = Served(policy=served.policy, critics={r: served.critics[r] for r in roles})  # on the server
        if served == current:
            return refs
        name = served.policy[0] if served.policy else "base"
        async with LlamaCppSwapper(server) as swapper:
            if roles:
                await swapper.serve(name=name, adapters=files, scale=0.0)
                backend.lora = ((0, 1.0),) if served.policy else ()
            else:
                await swapper.serve(name=name, adapters=files, scale=swapper.scale)
                backend.lora = ()
        current = served
        return refs

    return swap


@asynccontextmanager
async def remote_policy(overrides: dict[str, object]) -> AsyncIterator[tuple[Policy, Swap]]:
    """A configured SGLang or vLLM server; adapters are loaded at run time and selected per request."""
    from servers.swap import SGLangSwapper, VLLMSwapper

    # the cycles choose the policy's adapter themselves: AGENT_POLICY_ADAPTER does not apply here
    settings = load_settings(**overrides).model_copy(update={"policy_adapter": None})
    async with open_policy(settings) as policy:
        url, backend = policy.endpoint.url, settings.policy.backend
        swapper: SGLangSwapper | VLLMSwapper
        if backend == "sglang":
            swapper = SGLangSwapper([url])
        else:
            swapper = VLLMSwapper(url, base_model=settings.policy.model)
        loaded: set[str] = set()

        async def swap(served: Served) -> dict[str, str]:
            adapters = [served.policy] if served.policy else []
            adapters += [served.critics[role] for role in CRITIC_ROLES if role in served.critics]
            for name, path in adapters:
                if name not in loaded:
                    await swapper.swap(name=name, path=path)
                    loaded.add(name)
            target = served.policy[0] if served.policy else None
            inner = policy.endpoint.backend
            if hasattr(inner, "adapter"):
                inner.adapter = target  # SGLang: lora_path per request
            elif hasattr(inner, "model"):
                inner.model = target or settings.policy.model  # vLLM / OpenAI: the adapter's name
            return {role: served.critics[role][0] for role in CRITIC_ROLES if role in served.critics}

        async with swapper:
            yield policy, swap
