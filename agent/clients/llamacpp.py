"""The llama.cpp server (also the embedded CPU server) through its native ``/completion`` route.

The native route tells us more than the OpenAI one: which stop string fired, how many prompt
tokens came from the slot's prefix cache, and it accepts a per-request LoRA selection. ``n``
completions of one prompt are requested together (``n_cmpl``) so the prompt is processed once; the
server caps ``n_cmpl`` at its slot count, so larger ``n`` is split into several requests.

Slot affinity (``pin_slots`` = the server's slot count): llama.cpp keeps one prompt cache per slot
and gives a request whichever slot is free, so concurrent searches keep landing on slots that hold
another search's prompt and re-evaluate their question and steps. With ``pin_slots``, the requests of
one search (one routing key, ``agent.clients.routing``) name a slot (``id_slot``), chosen the first
time a key is seen: the slot with the fewest of this client's requests in flight, in turn among
equals; the server holds a request until its slot is free. Only single completions are pinned
(``n_cmpl`` spreads over slots itself), and a search's requests under another adapter set (a policy
adapter, a critic adapter) are pinned to a slot of their own, since a slot drops its cache when the
adapter set changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from agent.clients.base import Completion, CompletionResult, Sampling, Usage
from agent.clients.routing import current_routing_key
from agent.clients.wire import http_client, normalize_logprobs, post_json, replace_backend
from agent.errors import ConfigError, EndpointGarbled, EndpointUnreachable, single_error

__all__ = ["LlamaCppBackend"]


class LlamaCppBackend:
    dialect = "llamacpp"  # which load signals it publishes (agent.clients.load)

    def __init__(
        self,
        url: str,
        *,
        max_n: int = 8,
        lora: tuple[tuple[int, float], ...] = (),
        client: httpx.AsyncClient | None = None,
        timeout: float = 300.0,
        connections: int = 64,
        pin_slots: int = 0,
    ) -> None:
        if pin_slots < 0:
            raise ConfigError(
                f"pin_slots must be the server's slot count, or 0 for no affinity; got {pin_slots}"
            )
        self.url = url.rstrip("/")
        self.max_n = max_n
        self.lora = lora  # (adapter id, scale) pairs applied to every request
        self.pin_slots = pin_slots
        # Shared by adapter twins: routing key -> slot, where the turn is, requests in flight per slot.
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._next_slot = [0]
        self._in_flight = [0] * pin_slots
        # Keep as many connections open as requests may be in flight.
        self._client = client or http_client(timeout=timeout, connections=connections)

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        if n <= self.max_n:
            return await self._complete_once(prompt, sampling, n=n)
        chunks = [min(self.max_n, n - start) for start in range(0, n, self.max_n)]
        results: list[CompletionResult] = [CompletionResult(())] * len(chunks)

        async def run(i: int, size: int) -> None:
            results[i] = await self._complete_once(prompt, sampling, n=size)

        try:
            async with anyio.create_task_group() as tg:
                for i, size in enumerate(chunks):
                    tg.start_soon(run, i, size)
        except BaseExceptionGroup as group:
            raise single_error(group) from None
        completions = tuple(c for r in results for c in r.completions)
        usage = sum((r.usage for r in results[1:]), results[0].usage)
        return CompletionResult(completions, usage)

    async def _complete_once(self, prompt: str, sampling: Sampling, *, n: int) -> CompletionResult:
        payload: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(sampling.stop),
            "cache_prompt": True,
            "n_probs": sampling.logprobs or 0,
        }
        if n > 1:
            payload["n_cmpl"] = n
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if self.lora:
            payload["lora"] = [{"id": i, "scale": s} for i, s in self.lora]
        if self.pin_slots and n == 1 and (key := current_routing_key()) is not None:
            # a slot drops its cache when the adapter set changes: each adapter set of a search
            # keeps a slot of its own
            payload["id_slot"] = self._slot_for(f"{key}\x00{self.lora}" if self.lora else key)
        url = f"{self.url}/completion"
        slot = payload.get("id_slot")
        if slot is not None:
            self._in_flight[slot] += 1
        try:
            data = await post_json(self._client, url, payload)
        finally:
            if slot is not None:
                self._in_flight[slot] -= 1
        items = data if isinstance(data, list) else [data]
        try:  # AttributeError: an item that is not an object
            completions = tuple(_parse_item(item) for item in items)
            usage = _usage(items)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise EndpointGarbled(f"{url} sent an unexpected completion: {exc!r}", url=url) from exc
        if len(completions) != n:
            raise EndpointGarbled(f"{url} returned {len(completions)} completions, asked {n}", url=url)
        return CompletionResult(completions, usage)

    def _slot_for(self, key: str) -> int:
        """The slot of ``key``; for a new key the least busy slot, in turn among equals (the 4096 most
        recent keys are kept)."""
        slot = self._slots.get(key)
        if slot is None:
            n, turn = self.pin_slots, self._next_slot[0]
            slot = min(range(n), key=lambda s: (self._in_flight[s], (s - turn) % n))
            self._next_slot[0] = (slot + 1) % n
            if len(self._slots) >= 4096:
                self._slots.popitem(last=False)
        self._slots[key] = slot
        self._slots.move_to_end(key)
        return slot

    def with_adapter(self, adapter: str) -> LlamaCppBackend:
        try:
            index = int(adapter)
        except ValueError:
            raise ConfigError(
                f"a llama.cpp adapter is its index in the server's --lora list, got {adapter!r}"
            ) from None
        return replace_backend(self, lora=((index, 1.0),))

    async def health(self) -> None:
        url = f"{self.url}/health"
        try:
            response = await self._client.get(url)
        except httpx.TransportError as exc:
            raise EndpointUnreachable(f"could not connect to {url}: {exc}", url=url) from exc
        if response.status_code != 200:
            raise EndpointUnreachable(f"{url} answered HTTP {response.status_code}", url=url)

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse_item(item: Mapping[str, Any]) -> Completion:
    stop_type = item["stop_type"]
    return Completion(
        text=str(item["content"]),
        finish_reason="length" if stop_type == "limit" else "stop",
        stop_matched=(item.get("stopping_word") or None) if stop_type == "word" else None,
        logprobs=normalize_logprobs(item.get("completion_probabilities")),
    )


def _usage(items: list[Mapping[str, Any]]) -> Usage:
    """One request's usage. With ``n_cmpl`` the server evaluates the prompt once, in a parent slot,
    and copies it to the other completions; every item then repeats the parent's prompt timings.
    So the prompt counts once per completion, and all but one evaluation of it counts as cached."""
    timings = items[0].get("timings") or {}
    evaluated = int(timings.get("prompt_n", 0))
    prompt = evaluated + int(timings.get("cache_n", 0))
    completion = sum(
        int(i.get("tokens_predicted", (i.get("timings") or {}).get("predicted_n", 0))) for i in items
    )
    return Usage(
        requests=1,
        prompt_tokens=prompt * len(items),
        cached_tokens=prompt * len(items) - evaluated,
        completion_tokens=completion,
    )
