"""Open the policy endpoint a run will use: the configured one, or the embedded CPU server.

``open_policy`` is what ``solve`` and ``evaluate`` (library calls and CLIs) share: with a policy URL
in the settings it connects there and checks health, saying which URL failed and how to start a
server; without one it starts the embedded llama.cpp server on the bundled model and stops it on
exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import structlog

from agent.clients import Endpoint, make_endpoint
from agent.errors import EndpointError, EndpointUnreachable
from agent.prompts import PromptFormat, get_format
from agent.settings import EndpointSettings, Settings

__all__ = ["Policy", "open_policy"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Policy:
    """The endpoint to generate with and the prompt format its model speaks."""

    endpoint: Endpoint
    fmt: PromptFormat
    embedded: bool
    rollout: Endpoint | None = None  # a separate (cheaper) endpoint for fast rollouts
    critic_adapters: dict[str, str] = field(default_factory=dict)  # role -> adapter on the policy server

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "url": self.endpoint.url,
            "prompt_format": self.fmt.name,
            "embedded": self.embedded,
        }
        if self.rollout is not None:
            described["rollout_url"] = self.rollout.url
        return described


@asynccontextmanager
async def open_policy(settings: Settings) -> AsyncIterator[Policy]:
    """Yield a healthy policy endpoint; start (and later stop) the embedded server if none is set."""
    async with AsyncExitStack() as stack:
        endpoint_settings = settings.policy
        embedded = not endpoint_settings.url
        if embedded:
            from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

            e = settings.embedded
            config = EmbeddedServerConfig.from_settings(e)
            log.info("embedded_server_starting", model=str(e.model_path or "bundled SmolLM2-135M-Instruct"))
            server = await stack.enter_async_context(EmbeddedServer(config))
            endpoint_settings = endpoint_settings.model_copy(
                update={"url": server.url, "backend": "llamacpp", "max_concurrency": e.parallel}
            )
            log.info("embedded_server_started", url=server.url)
        endpoint = await _healthy(stack, endpoint_settings, settings, variable="AGENT_POLICY__URL")
        rollout = None
        if settings.rollout.url:
            rollout = await _healthy(stack, settings.rollout, settings, variable="AGENT_ROLLOUT__URL")
        yield Policy(
            endpoint=endpoint,
            fmt=get_format(endpoint_settings.prompt_format),
            embedded=embedded,
            rollout=rollout,
            critic_adapters={str(role): ref for role, ref in settings.critic_adapters.items()},
        )


async def _healthy(
    stack: AsyncExitStack, endpoint_settings: EndpointSettings, settings: Settings, *, variable: str
) -> Endpoint:
    """An endpoint (closed with ``stack``) whose server answers its health check."""
    endpoint = await stack.enter_async_context(make_endpoint(endpoint_settings, retry=settings.retry))
    try:
        await endpoint.health()
    except EndpointError as exc:
        raise EndpointUnreachable(
            f"no healthy model server at {endpoint.url} ({exc}). Start one (for example "
            f"`python -m sglang.launch_server --model-path MODEL --port 30000`), fix {variable}, "
            "or unset it to use the embedded CPU model.",
            url=endpoint.url,
        ) from exc
    return endpoint
