"""Hot swap (servers.swap) against recorded contracts of SGLang and vLLM (httpx.MockTransport).

The fakes keep the state the real servers keep (adapters loaded per worker, weight path and
version) and answer in their shapes: SGLang ``{"success", "error_message", "loaded_adapters"}`` and
HTTP 400 on failure; vLLM ``200 text/plain`` for LoRA loads and an OpenAI error body otherwise. Every
call is recorded, so tests can check what happened in which order. One test at the end swaps the
adapter of the real embedded llama.cpp server (``-m server``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from agent.clients import Endpoint, LlamaCppBackend, RetryPolicy, Sampling
from agent.errors import ConfigError, ServerStartError
from servers import swap
from servers.llamacpp import EmbeddedServer, EmbeddedServerConfig
from servers.swap import (
    SGLangSwapper,
    SwapError,
    VLLMSwapper,
    retry_window,
    router_workers,
)
from servers.swap_llamacpp import LlamaCppSwapper

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)
WORKERS = ["http://w1.test", "http://w2.test", "http://w3.test"]


def reply(status: int, body: Any) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers={"content-type": "text/plain"})
    return httpx.Response(status, json=body)


@dataclass
class FakeSGLang:
    """SGLang workers behind one MockTransport, told apart by host."""

    paths: set[str] = field(default_factory=lambda: {"/ckpt/v1", "/ckpt/v2", "/lora/a", "/lora/b"})
    missing: dict[str, set[str]] = field(default_factory=dict)  # host -> paths absent there
    adapters: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> name -> path
    weights: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (path, version)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (host, route, body)
    unavailable: Counter[tuple[str, str]] = field(default_factory=Counter)  # 503s still to send
    broken_probe: set[str] = field(default_factory=set)  # hosts whose /generate sends junk
    stale_version: set[str] = field(default_factory=set)  # hosts that report the old version

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host, route = request.url.host, request.url.path
        body = json.loads(request.content) if request.content else {}
        self.calls.append((host, route, body))
        if self.unavailable[(host, route)] > 0:
            self.unavailable[(host, route)] -= 1
            return reply(503, {"error": {"message": "Service Unavailable"}})
        adapters = self.adapters.setdefault(host, {})
        path, version = self.weights.setdefault(host, ("/ckpt/v0", "default"))
        if route == "/load_lora_adapter":
            assert set(body) == {"lora_name", "lora_path", "pinned"} and body["pinned"] is False
            problem = self._problem(host, body["lora_path"]) or (
                f"adapter {body['lora_name']!r} is already loaded" if body["lora_name"] in adapters else None
            )
            if problem:
                return reply(400, {"success": False, "error_message": problem, "loaded_adapters": adapters})
            adapters[body["lora_name"]] = body["lora_path"]
            return reply(200, {"success": True, "error_message": None, "loaded_adapters": adapters})
        if route == "/unload_lora_adapter":
            if adapters.pop(body["lora_name"], None) is None:
                return reply(
                    400, {"success": False, "error_message": "not loaded", "loaded_adapters": adapters}
                )
            return reply(200, {"success": True, "error_message": None, "loaded_adapters": adapters})
        if route == "/update_weights_from_disk":
            assert not body.get("abort_all_requests"), "in-flight requests must not be aborted"
            problem = self._problem(host, body["model_path"])
            if problem:
                return reply(400, {"success": False, "message": problem, "num_paused_requests": 0})
            self.weights[host] = (body["model_path"], body.get("weight_version", version))
            return reply(200, {"success": True, "message": "Succeeded to update model weights."})
        if route == "/model_info":
            shown = "stale" if host in self.stale_version else version
            return reply(200, {"model_path": path, "is_generation": True, "weight_version": shown})
        if route == "/generate":
            lora = body.get("lora_path")
            if lora is not None and lora not in adapters:
                return reply(400, {"error": {"message": f"LoRA adapter {lora} is not loaded"}})
            if host in self.broken_probe:
                return reply(200, {"detail": "no text"})
            served = "stale" if host in self.stale_version else version
            return reply(200, {"text": " 2", "meta_info": {"weight_version": served, "completion_tokens": 1}})
        return reply(404, {"detail": "Not Found"})

    def _problem(self, host: str, path: str) -> str | None:
        if path not in self.paths or path in self.missing.get(host, set()):
            return f"Failed to load {path}: no such file or directory"
        return None

    def routes(self, route: str) -> list[str]:
        return [host for host, r, _ in self.calls if r == route]


def sglang(fake: FakeSGLang, **kwargs: Any) -> SGLangSwapper:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return SGLangSwapper(WORKERS, client=client, retry=FAST, **kwargs)


async def test_lora_swap_loads_and_probes_every_worker() -> None:
    fake = FakeSGLang()
    report = await sglang(fake).swap(name="round1", path="/lora/a")
    assert report.verified and report.backend == "sglang" and report.weight_version is None
    assert report.workers == tuple(WORKERS)
    assert all(fake.adapters[h] == {"round1": "/lora/a"} for h in ("w1.test", "w2.test", "w3.test"))
    probes = [body for _, route, body in fake.calls if route == "/generate"]
    assert [p["lora_path"] for p in probes] == ["round1"] * 3
    assert all(p["sampling_params"]["max_new_tokens"] == 1 for p in probes)
    # one worker at a time: load, then probe, then the next worker
    assert [(h, r) for h, r, _ in fake.calls][:4] == [
        ("w1.test", "/load_lora_adapter"),
        ("w1.test", "/generate"),
        ("w2.test", "/load_lora_adapter"),
        ("w2.test", "/generate"),
    ]


async def test_a_failing_worker_names_the_swapped_ones_and_rolls_them_back() -> None:
    fake = FakeSGLang(missing={"w2.test": {"/lora/a"}})
    with pytest.raises(SwapError) as info:
        await sglang(fake, rollback=True).swap(name="round1", path="/lora/a")
    error = info.value
    assert (error.swapped, error.failed, error.rolled_back) == (
        ("http://w1.test",),
        ("http://w2.test",),
        ("http://w1.test",),
    )
    assert "http://w2.test" in str(error) and "no such file or directory" in str(error)
    assert fake.routes("/unload_lora_adapter") == ["w1.test"]
    assert fake.adapters["w1.test"] == {} and "w3.test" not in fake.adapters  # w3 never touched


async def test_without_rollback_the_swapped_workers_keep_the_new_adapter() -> None:
    fake = FakeSGLang(missing={"w3.test": {"/lora/a"}})
    with pytest.raises(SwapError) as info:
        await sglang(fake).swap(name="round1", path="/lora/a")
    assert info.value.swapped == ("http://w1.test", "http://w2.test") and info.value.rolled_back == ()
    assert fake.routes("/unload_lora_adapter") == []


async def test_rejected_load_is_not_retried_but_503_is() -> None:
    fake = FakeSGLang(missing={"w1.test": {"/lora/a"}})
    with pytest.raises(SwapError):
        await sglang(fake).swap(name="round1", path="/lora/a")
    assert fake.routes("/load_lora_adapter") == ["w1.test"]

    fake = FakeSGLang()
    fake.unavailable[("w2.test", "/load_lora_adapter")] = 2
    await sglang(fake).swap(name="round1", path="/lora/a")
    assert fake.routes("/load_lora_adapter") == ["w1.test", "w2.test", "w2.test", "w2.test", "w3.test"]


async def test_previous_adapter_is_unloaded_only_after_verification_and_clients_moved() -> None:
    fake = FakeSGLang(adapters={h: {"round1": "/lora/a"} for h in ("w1.test", "w2.test", "w3.test")})
    events: list[str] = []

    def on_verified(name: str) -> None:
        events.append(f"clients -> {name}")
        fake.calls.append(("-", "on_verified", {}))

    swapper = sglang(fake, initial="round1", unload_previous=True, on_verified=on_verified)
    await swapper.swap(name="round2", path="/lora/b")
    order = [r for _, r, _ in fake.calls]
    last_probe = max(i for i, r in enumerate(order) if r == "/generate")
    first_unload = order.index("/unload_lora_adapter")
    assert last_probe < order.index("on_verified") < first_unload
    assert [b["lora_name"] for _, r, b in fake.calls if r == "/unload_lora_adapter"] == ["round1"] * 3
    assert events == ["clients -> round2"] and await swapper.current() == "round2"
    assert all(a == {"round2": "/lora/b"} for a in fake.adapters.values())


async def test_probe_failure_means_not_verified_and_is_an_error() -> None:
    fake = FakeSGLang(broken_probe={"w2.test"})
    with pytest.raises(SwapError) as info:
        await sglang(fake, rollback=True, unload_previous=True).swap(name="round1", path="/lora/a")
    # w2 loaded the adapter, then failed its check: it counts as swapped and is rolled back
    assert info.value.swapped == ("http://w1.test", "http://w2.test") and info.value.failed == (
        "http://w2.test",
    )
    assert set(fake.routes("/unload_lora_adapter")) == {"w1.test", "w2.test"}
    assert "generate probe" in str(info.value)


async def test_the_same_adapter_name_twice_is_a_config_error() -> None:
    swapper = sglang(FakeSGLang(), initial="round1")
    with pytest.raises(ConfigError, match="already the current one"):
        await swapper.swap(name="round1", path="/lora/a")


async def test_weights_swap_sets_the_version_and_verifies_it_everywhere() -> None:
    fake = FakeSGLang()
    swapper = sglang(fake, mode="weights")
    report = await swapper.swap(name="iter-1", path="/ckpt/v1")
    assert report.weight_version == "iter-1" and report.verified
    assert all(w == ("/ckpt/v1", "iter-1") for w in fake.weights.values())
    updates = [b for _, r, b in fake.calls if r == "/update_weights_from_disk"]
    assert updates == [{"model_path": "/ckpt/v1", "weight_version": "iter-1"}] * 3
    assert await swapper.current() == "iter-1"


async def test_weights_rollback_restores_the_previous_path_and_version() -> None:
    fake = FakeSGLang(missing={"w3.test": {"/ckpt/v2"}})
    swapper = sglang(fake, mode="weights", rollback=True)
    await swapper.swap(name="iter-1", path="/ckpt/v1")
    with pytest.raises(SwapError) as info:
        await swapper.swap(name="iter-2", path="/ckpt/v2")
    assert info.value.rolled_back == ("http://w2.test", "http://w1.test")
    assert all(w == ("/ckpt/v1", "iter-1") for w in fake.weights.values())
    assert "Failed to load /ckpt/v2" in str(info.value)


async def test_weights_probe_on_the_old_version_is_not_verified() -> None:
    fake = FakeSGLang(stale_version={"w1.test"})
    with pytest.raises(SwapError, match="weight_version 'stale'"):
        await sglang(fake, mode="weights").swap(name="iter-1", path="/ckpt/v1")


async def test_router_workers_lists_http_workers() -> None:
    def router(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/workers"
        workers = [{"id": "a", "url": "http://w1.test/", "worker_type": "regular", "is_healthy": True}]
        return reply(200, {"workers": workers, "total": 1, "stats": {"regular_count": 1}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(router))
    assert await router_workers("http://router.test", client=client) == ("http://w1.test",)


@dataclass
class FakeVLLM:
    base: str = "Qwen/Qwen2.5-0.5B"
    paths: set[str] = field(default_factory=lambda: {"/lora/a", "/lora/b"})
    adapters: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unavailable: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route, body = request.url.path, json.loads(request.content) if request.content else {}
        self.calls.append((route, body))
        if self.unavailable:
            self.unavailable -= 1
            return reply(503, "Service Unavailable")
        if route == "/v1/load_lora_adapter":
            if body["lora_path"] not in self.paths:
                message = f"Loading lora {body['lora_name']} failed: No adapter found for {body['lora_path']}"
                return reply(400, {"error": {"message": message, "type": "BadRequestError", "code": 400}})
            self.adapters[body["lora_name"]] = body["lora_path"]
            return reply(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
        if route == "/v1/unload_lora_adapter":
            self.adapters.pop(body["lora_name"])
            return reply(200, f"Success: LoRA adapter '{body['lora_name']}' removed successfully.")
        if route == "/v1/models":
            models = [{"id": self.base, "object": "model", "root": self.base, "parent": None}]
            models += [
                {"id": n, "object": "model", "root": p, "parent": self.base} for n, p in self.adapters.items()
            ]
            return reply(200, {"object": "list", "data": models})
        if route == "/v1/completions":
            if body["model"] not in self.adapters and body["model"] != self.base:
                return reply(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
            return reply(200, {"object": "text_completion", "choices": [{"index": 0, "text": " 2"}]})
        return reply(404, {"detail": "Not Found"})


def vllm(fake: FakeVLLM, **kwargs: Any) -> VLLMSwapper:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return VLLMSwapper("http://vllm.test", base_model=fake.base, client=client, retry=FAST, **kwargs)


async def test_vllm_swap_verifies_then_unloads_the_previous_adapter() -> None:
    fake = FakeVLLM(adapters={"round1": "/lora/a"}, unavailable=1)
    swapper = vllm(fake, initial="round1", unload_previous=True)
    report = await swapper.swap(name="round2", path="/lora/b")
    assert report.verified and report.workers == ("http://vllm.test",)
    assert [r for r, _ in fake.calls] == [
        "/v1/load_lora_adapter",  # 503, retried
        "/v1/load_lora_adapter",
        "/v1/models",
        "/v1/completions",
        "/v1/unload_lora_adapter",
    ]
    assert fake.calls[3][1]["model"] == "round2" and fake.calls[3][1]["max_tokens"] == 1
    assert fake.adapters == {"round2": "/lora/b"} and await swapper.current() == "round2"


async def test_vllm_refusal_carries_the_server_message() -> None:
    fake = FakeVLLM()
    with pytest.raises(SwapError, match="No adapter found for /lora/missing") as info:
        await vllm(fake).swap(name="round1", path="/lora/missing")
    assert info.value.failed == ("http://vllm.test",) and info.value.swapped == ()


@dataclass
class StubServer:
    """Stands in for EmbeddedServer: start/stop/config/url/process, as the swapper uses them."""

    config: EmbeddedServerConfig
    url: str = "http://127.0.0.1:5555"
    process: object | None = "running"
    starts: list[EmbeddedServerConfig] = field(default_factory=list)

    def start(self) -> str:
        self.starts.append(self.config)
        if any(p.name == "broken.gguf" for p in self.config.lora):
            self.process = None
            raise ServerStartError("server exited with code 1 before becoming healthy")
        self.process = "running"
        return self.url

    def stop(self) -> None:
        self.process = None

    def restart(self, config: EmbeddedServerConfig) -> str:
        self.stop()
        self.config = replace(config, port=5555)
        return self.start()


def llama_fake(state: dict[str, Any]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/lora-adapters":
            config = state["server"].config
            return reply(
                200,
                [{"id": i, "path": str(p), "scale": config.lora_scale} for i, p in enumerate(config.lora)],
            )
        return reply(200, {"content": " 2", "stop_type": "limit"})

    return httpx.MockTransport(handler)


async def test_llamacpp_swap_restarts_on_the_same_port_and_applies_the_scale(tmp_path: Path) -> None:
    adapter, broken = tmp_path / "round1.gguf", tmp_path / "broken.gguf"
    adapter.write_bytes(b"GGUF")
    broken.write_bytes(b"GGUF")
    server = StubServer(EmbeddedServerConfig(port=0))
    state: dict[str, Any] = {"server": server}
    client = httpx.AsyncClient(transport=llama_fake(state))
    swapper = LlamaCppSwapper(server, client=client, retry=FAST)  # type: ignore[arg-type]
    report = await swapper.swap(name="round1", path=adapter)
    assert report.verified and report.workers == ("http://127.0.0.1:5555",)
    assert server.config == replace(EmbeddedServerConfig(), port=5555, lora=(adapter,), lora_scale=1.0)
    assert await swapper.current() == "round1"

    with pytest.raises(SwapError) as info:
        await swapper.swap(name="round2", path=broken)
    assert info.value.swapped == () and info.value.rolled_back == ("http://127.0.0.1:5555",)
    assert server.config.lora == (adapter,) and server.process == "running"
    assert [c.lora for c in server.starts] == [(adapter,), (broken,), (adapter,)]


async def test_llamacpp_serve_loads_several_adapters_applied_per_request(tmp_path: Path) -> None:
    policy, orm, value = (tmp_path / f"{n}.gguf" for n in ("policy", "orm", "value"))
    for file in (policy, orm, value):
        file.write_bytes(b"GGUF")
    server = StubServer(EmbeddedServerConfig(port=0))
    state: dict[str, Any] = {"server": server}
    client = httpx.AsyncClient(transport=llama_fake(state))
    swapper = LlamaCppSwapper(server, client=client, retry=FAST)  # type: ignore[arg-type]
    report = await swapper.serve(name="cycle_1", adapters=(policy, orm, value), scale=0.0)
    assert report.verified and server.config.lora == (policy, orm, value) and server.config.lora_scale == 0
    assert await swapper.current() is None  # loaded, applied by no request unless it asks
    await swapper.serve(name="base", adapters=(), scale=0.0)
    assert server.config.lora == ()
    # the server lists fewer adapters than were asked for: not verified, rolled back
    state["server"] = StubServer(EmbeddedServerConfig(port=0))
    short = LlamaCppSwapper(state["server"], client=client, retry=FAST)  # type: ignore[arg-type]
    await short.serve(name="one", adapters=(policy,), scale=1.0)
    real_restart = state["server"].restart

    def drop_last(config: EmbeddedServerConfig) -> str:
        url = real_restart(config)
        state["server"].config = replace(state["server"].config, lora=config.lora[:1])
        return url

    state["server"].restart = drop_last
    with pytest.raises(SwapError, match="lists 1 adapters"):
        await short.serve(name="two", adapters=(policy, orm), scale=0.0)
    await client.aclose()


async def test_llamacpp_swap_needs_a_started_server_and_an_adapter_file(tmp_path: Path) -> None:
    async with LlamaCppSwapper(EmbeddedServer()) as swapper:
        with pytest.raises(ConfigError, match="start the embedded server"):
            await swapper.swap(name="x", path=tmp_path / "x.gguf")


def test_retry_window_sums_the_back_offs() -> None:
    assert retry_window(RetryPolicy()) == 3.5
    assert retry_window(RetryPolicy(attempts=8)) == 35.5


def test_all_names_exist() -> None:
    assert all(hasattr(swap, name) for name in swap.__all__)


def _tiny_lora(tmp_path: Path) -> Path:
    """A GGUF LoRA for the bundled model: ``$TREELOOP_TEST_GGUF_LORA``, or one made here."""
    if given := os.environ.get("TREELOOP_TEST_GGUF_LORA"):
        return Path(given)
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    gguf_lora = pytest.importorskip("finetune.gguf_lora")
    from servers.models import ensure_bundled_model

    base = ensure_bundled_model()
    n_in, n_out = next(t.shape for t in gguf.GGUFReader(base).tensors if t.name == "blk.0.attn_q.weight")[:2]
    rng = np.random.default_rng(0)
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"
    peft = tmp_path / "peft"
    peft.mkdir()
    tensors = {
        key.format("A"): (rng.standard_normal((2, int(n_in))) * 0.01).astype(np.float32),
        key.format("B"): (rng.standard_normal((int(n_out), 2)) * 0.01).astype(np.float32),
    }
    safetensors_numpy.save_file(tensors, str(peft / "adapter_model.safetensors"))
    (peft / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    return gguf_lora.export_lora_gguf(peft, tmp_path / "tiny-lora.gguf", base_gguf=base)


@pytest.mark.server
async def test_llamacpp_swap_on_the_real_server_loses_no_request(tmp_path: Path) -> None:
    """Clients keep sending during the restart; with 8 attempts none fails, and the restart fits."""
    pytest.importorskip("xllamacpp")
    adapter = _tiny_lora(tmp_path)
    policy = RetryPolicy(attempts=8)
    config = EmbeddedServerConfig(parallel=2, ctx_per_slot=512, poll=0, log_file=tmp_path / "server.log")
    async with EmbeddedServer(config) as server, Endpoint(LlamaCppBackend(server.url), retry=policy) as ep:
        url, done, answers = server.url, anyio.Event(), []

        async def keep_asking() -> None:
            while not done.is_set():
                answers.append(await ep.complete("1 + 1 =", Sampling(max_tokens=2)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_asking)
            async with LlamaCppSwapper(server) as swapper:
                report = await swapper.swap(name="tiny", path=adapter)
            done.set()
        assert report.verified and server.url == url and len(answers) >= 1
        assert report.seconds < retry_window(policy), f"restart took {report.seconds:.1f} s"
        async with LlamaCppSwapper(server) as fresh:
            assert await fresh.current() == "tiny-lora"  # a new swapper knows the file only
