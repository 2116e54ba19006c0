"""Open the policy endpoint a run will use: the configured one, or the embedded CPU server.

``open_policy`` is what ``solve`` and ``evaluate`` (library calls and CLIs) share: with a policy URL
in the settings it connects there and checks health, saying which URL failed and how to start a
server; without one it starts the embedded llama.cpp server on its model (``AGENT_EMBEDDED__MODEL``:
the bundled SmolLM2 unless set) and stops it on exit.

Trained critics: ``open_policy(settings, critics="trained")`` (or ``"checked"``) with no
``AGENT_CRITIC_ADAPTERS`` serves the critic shipped with the package (``agent.critics.shipped``) as
one more adapter of the embedded bundled model, for all three roles, with its fitted temperatures.
Configured adapters keep their own temperatures: ``AGENT_CRITIC_TEMPERATURES``, else the
``calibration.json`` stored beside an embedded adapter (``python -m finetune.critics`` writes it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from agent.clients import Endpoint, make_endpoint
from agent.errors import ConfigError, EndpointError, EndpointUnreachable
from agent.promoted import PromotedPolicy, resolve_policy_adapter
from agent.prompts import PromptFormat, get_format
from agent.settings import EmbeddedSettings, EndpointSettings, Settings

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
    critic_temperatures: dict[str, float] = field(default_factory=dict)  # role -> calibration temperature
    verifier: Path | None = None  # the feature verifier's weights (default: the shipped ones)
    adapter: PromotedPolicy | None = None  # the policy's own adapter, applied to its requests

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "url": self.endpoint.url,
            "prompt_format": self.fmt.name,
            "embedded": self.embedded,
        }
        if self.rollout is not None:
            described["rollout_url"] = self.rollout.url
        if self.adapter is not None:
            described["adapter"] = self.adapter.describe()
        return described


@asynccontextmanager
async def open_policy(settings: Settings, *, critics: str | None = None) -> AsyncIterator[Policy]:
    """Yield a healthy policy endpoint; start (and later stop) the embedded server if none is set.

    ``critics`` is the critic set the run will use; "trained" or "checked" without configured
    adapters serves the shipped critic (see the module docstring).
    """
    async with AsyncExitStack() as stack:
        endpoint_settings = settings.policy
        embedded = not endpoint_settings.url
        adapters = {str(role): ref for role, ref in settings.critic_adapters.items()}
        temperatures = {str(role): t for role, t in settings.critic_temperatures.items()}
        promoted = resolve_policy_adapter(settings.policy_adapter) if settings.policy_adapter else None
        policy_ref = promoted.name if promoted else None
        if embedded:
            from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig

            e = settings.embedded
            if promoted is not None:
                e, policy_ref = _with_policy_adapter(e, promoted)
            if critics in ("trained", "checked") and not adapters:
                e, adapters, shipped = _with_shipped_critic(e)
                temperatures = shipped | temperatures
            elif adapters and not temperatures:
                temperatures = _stored_temperatures(e.lora, adapters)
            config = EmbeddedServerConfig.from_settings(e)
            log.info("embedded_server_starting", model=str(e.model_path or e.model))
            server = await stack.enter_async_context(EmbeddedServer(config))
            # With slot affinity a request may wait at the server for its search's slot, so more are
            # kept in flight than there are slots (bench/throughput.py --pin-slots --in-flight).
            pinned: dict[str, object] = (
                {"slots": e.parallel, "max_concurrency": 4 * e.parallel} if e.slot_affinity else {}
            )
            if pinned and endpoint_settings.server_queue is None:
                pinned["server_queue"] = 3 * e.parallel  # adaptive: as many as the fixed limit lets wait
            if "prompt_format" not in settings.policy.model_fields_set:
                pinned["prompt_format"] = server.prompt_format  # the served model's, unless one was chosen
            endpoint_settings = endpoint_settings.model_copy(
                update={"url": server.url, "backend": "llamacpp", "max_concurrency": e.parallel, **pinned}
            )
            log.info("embedded_server_started", url=server.url)
        endpoint = await _healthy(stack, endpoint_settings, settings, variable="AGENT_POLICY__URL")
        if policy_ref is not None:
            endpoint = endpoint.with_adapter(policy_ref)
            log.info("policy_adapter", adapter=policy_ref, source=str(promoted.source if promoted else ""))
        rollout = None
        if settings.rollout.url:
            rollout = await _healthy(stack, settings.rollout, settings, variable="AGENT_ROLLOUT__URL")
        yield Policy(
            endpoint=endpoint,
            fmt=get_format(endpoint_settings.prompt_format),
            embedded=embedded,
            rollout=rollout,
            critic_adapters=adapters,
            critic_temperatures=temperatures,
            verifier=settings.verifier,
            adapter=promoted,
        )


def _with_policy_adapter(e: EmbeddedSettings, promoted: PromotedPolicy) -> tuple[EmbeddedSettings, str]:
    """The embedded settings with the policy's GGUF LoRA added, and its index for the requests."""
    if promoted.gguf is None:
        raise ConfigError(
            f"the policy adapter {promoted.source} has no GGUF LoRA for the embedded llama.cpp server "
            "(it was fine-tuned from a Hugging Face base); serve it on SGLang or vLLM, or merge it into a "
            "model with python -m finetune.export"
        )
    from servers.models import served_file

    served = served_file(e.model_path, e.model).name
    if promoted.base and promoted.base.endswith(".gguf") and Path(promoted.base).name != served:
        raise ConfigError(
            f"the policy adapter {promoted.source} was fine-tuned from {Path(promoted.base).name}, but the "
            f"embedded server would serve {served}: an adapter only fits its own base. Set "
            "AGENT_EMBEDDED__MODEL (or AGENT_EMBEDDED__MODEL_PATH) to that model"
        )
    return e.model_copy(update={"lora": (*e.lora, promoted.gguf)}), str(len(e.lora))


def _with_shipped_critic(e: EmbeddedSettings) -> tuple[EmbeddedSettings, dict[str, str], dict[str, float]]:
    """The embedded settings with the shipped critic added as the last adapter, the roles' adapter
    refs, and its temperatures; ConfigError when the model is not the bundled one."""
    from agent.critics.shipped import shipped_critic
    from servers.models import BUNDLED, get_model

    if e.model_path is not None or get_model(e.model) is not BUNDLED:
        raise ConfigError(
            f"the shipped critics are adapters of the bundled model, not of {e.model_path or e.model}; "
            "train critics for it (python -m finetune.critics --base ...) and set AGENT_CRITIC_ADAPTERS"
        )
    shipped = shipped_critic()
    ref = str(len(e.lora))
    e = e.model_copy(update={"lora": (*e.lora, shipped.adapter)})
    return e, {role: ref for role in ("value", "prm", "orm")}, dict(shipped.temperatures)


def _stored_temperatures(lora: tuple[Path, ...], adapters: dict[str, str]) -> dict[str, float]:
    """Each role's temperature from the calibration stored beside its embedded adapter, if any."""
    from agent.critics.shipped import critic_temperatures

    found = {}
    for role, ref in adapters.items():
        if ref.isdigit() and int(ref) < len(lora):
            stored = critic_temperatures(lora[int(ref)])
            if role in stored:
                found[role] = stored[role]
    return found


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
    if endpoint_settings.adaptive:
        governor = await stack.enter_async_context(endpoint.governed(queue=endpoint_settings.server_queue))
        log.info(
            "adaptive_concurrency",
            url=endpoint.url,
            limit=endpoint.limiter.total_tokens,
            ceiling=governor.ceiling,
        )
    return endpoint
