"""Command lines of the GPU server launchers (SGLang, its router, vLLM).

These servers cannot run on the CPU machines, so the tests pin the exact argument lists built from
the documented flags, the extra environment, the health URL and the validation of bad specs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError, ServerStartError
from servers import sglang, vllm
from servers.sglang import (
    SGLangRouterSpec,
    SGLangSpec,
    sglang_critic,
    sglang_lora_host,
    sglang_policy,
)
from servers.vllm import VLLMSpec, vllm_critic, vllm_policy

PY = "/opt/py/bin/python"
SGL = [PY, "-m", "sglang.launch_server"]
TAIL = ["--enable-metrics", "--enable-cache-report"]


# --- SGLang ------------------------------------------------------------------------------------


def test_policy_command_with_defaults() -> None:
    spec = sglang_policy("Qwen/Qwen2.5-Math-1.5B-Instruct")
    assert spec.command(PY) == [
        *SGL,
        "--model-path",
        "Qwen/Qwen2.5-Math-1.5B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "30000",
        *TAIL,
    ]
    assert spec.env() == {}
    assert spec.base_url == "http://127.0.0.1:30000"
    assert spec.health_path == "/health"
    assert spec.enable_lora is False


def test_policy_command_with_all_options() -> None:
    spec = sglang_policy(
        Path("/models/policy"),
        adapters={"iter1": Path("/ckpt/iter1")},
        host="0.0.0.0",
        port=30001,
        tp_size=2,
        mem_fraction_static=0.8,
        max_loras_per_batch=4,
        schedule_policy="lpm",
        disable_radix_cache=True,
        served_model_name="policy",
        enable_metrics=False,
        enable_cache_report=False,
        extra_args=("--random-seed", "7"),
    )
    assert spec.command(PY) == [
        *SGL,
        "--model-path",
        "/models/policy",
        "--host",
        "0.0.0.0",
        "--port",
        "30001",
        "--tp-size",
        "2",
        "--mem-fraction-static",
        "0.8",
        "--served-model-name",
        "policy",
        "--enable-lora",
        "--lora-paths",
        "iter1=/ckpt/iter1",
        "--max-loras-per-batch",
        "4",
        "--schedule-policy",
        "lpm",
        "--disable-radix-cache",
        "--random-seed",
        "7",
    ]
    assert spec.enable_lora is True
    assert spec.lora_paths == (("iter1", "/ckpt/iter1"),)
    assert spec.base_url == "http://127.0.0.1:30001"  # a wildcard bind is reached through loopback
    assert spec.model_name == "policy"


def test_critic_is_served_as_embedding_model() -> None:
    spec = sglang_critic("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", port=30002)
    assert spec.command(PY) == [
        *SGL,
        "--model-path",
        "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
        "--host",
        "127.0.0.1",
        "--port",
        "30002",
        "--is-embedding",
        *TAIL,
    ]


def test_lora_host_serves_policy_and_critics_as_adapters() -> None:
    spec = sglang_lora_host(
        "/models/base",
        {"policy": "/ckpt/policy", "value": "/ckpt/value", "prm": "/ckpt/prm"},
        max_lora_rank=16,
        target_modules=["q_proj", "v_proj"],
    )
    assert spec.command(PY) == [
        *SGL,
        "--model-path",
        "/models/base",
        "--host",
        "127.0.0.1",
        "--port",
        "30000",
        "--enable-lora",
        "--lora-paths",
        "policy=/ckpt/policy",
        "value=/ckpt/value",
        "prm=/ckpt/prm",
        "--max-lora-rank",
        "16",
        "--lora-target-modules",
        "q_proj",
        "v_proj",
        *TAIL,
    ]


def test_lora_host_may_start_without_adapters() -> None:
    spec = sglang_lora_host("/models/base", {}, max_lora_rank=8, target_modules=("all",))
    assert spec.command(PY)[9:] == [
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--lora-target-modules",
        "all",
        *TAIL,
    ]


def test_default_interpreter_is_the_running_one() -> None:
    assert SGLangSpec(model_path="m").command()[:3] == [sys.executable, "-m", "sglang.launch_server"]


def test_ipv6_host_is_bracketed_in_base_url() -> None:
    assert SGLangSpec(model_path="m", host="::1").base_url == "http://[::1]:30000"
    assert VLLMSpec(model="m", host="::").base_url == "http://[::1]:8000"


def test_spec_is_frozen_and_hashable() -> None:
    spec = sglang_policy("m", adapters={"a": "/a"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.port = 1  # type: ignore[misc]
    assert hash(spec) == hash(sglang_policy("m", adapters={"a": "/a"}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_path": ""},
        {"model_path": "m", "port": 0},
        {"model_path": "m", "port": 70000},
        {"model_path": "m", "port": True},
        {"model_path": "m", "host": ""},
        {"model_path": "m", "host": "http://x"},
        {"model_path": "m", "tp_size": 0},
        {"model_path": "m", "tp_size": 1.5},
        {"model_path": "m", "mem_fraction_static": 0.0},
        {"model_path": "m", "mem_fraction_static": 1.2},
        {"model_path": "m", "schedule_policy": "longest-prefix"},
        {"model_path": "m", "served_model_name": ""},
        {"model_path": "m", "extra_args": "--foo bar"},
        {"model_path": "m", "lora_paths": (("a:b", "/p"),)},
        {"model_path": "m", "lora_paths": (("a=b", "/p"),)},
        {"model_path": "m", "lora_paths": (("", "/p"),)},
        {"model_path": "m", "lora_paths": (("a", ""),)},
        {"model_path": "m", "lora_paths": (("a", "/p"), ("a", "/q"))},
        {"model_path": "m", "lora_paths": ("a=/p",)},
        {"model_path": "m", "lora_paths": (("a", "/p"),), "max_loras_per_batch": 0},
        {"model_path": "m", "enable_lora": True},
        {"model_path": "m", "enable_lora": True, "max_lora_rank": 8},
        {"model_path": "m", "enable_lora": True, "lora_target_modules": ("q_proj",)},
        {"model_path": "m", "max_lora_rank": 8},
        {"model_path": "m", "lora_target_modules": ("q_proj",)},
    ],
)
def test_bad_sglang_spec_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SGLangSpec(**kwargs)


def test_lora_host_rejects_zero_rank() -> None:
    with pytest.raises(ConfigError):
        sglang_lora_host("m", {}, max_lora_rank=0, target_modules=["q_proj"])


# --- SGLang router -----------------------------------------------------------------------------


def test_router_command() -> None:
    spec = SGLangRouterSpec(
        worker_urls=("http://127.0.0.1:30001", "http://127.0.0.1:30002"),
        policy="manual",
        port=30000,
    )
    assert spec.command(PY) == [
        PY,
        "-m",
        "sglang_router.launch_router",
        "--worker-urls",
        "http://127.0.0.1:30001",
        "http://127.0.0.1:30002",
        "--policy",
        "manual",
        "--host",
        "127.0.0.1",
        "--port",
        "30000",
    ]
    assert spec.base_url + spec.health_path == "http://127.0.0.1:30000/health"
    assert spec.env() == {}


def test_router_default_policy_is_cache_aware_and_lists_become_tuples() -> None:
    spec = SGLangRouterSpec(worker_urls=["http://gpu1:30000"], port=8080)  # type: ignore[arg-type]
    assert spec.worker_urls == ("http://gpu1:30000",)
    assert spec.command(PY)[5:7] == ["--policy", "cache_aware"]


def test_router_metrics_port_is_set_with_the_routers_host() -> None:
    spec = SGLangRouterSpec(worker_urls=("http://gpu1:30000",), port=8080, prometheus_port=8081)
    assert spec.command(PY)[-4:] == ["--prometheus-host", "127.0.0.1", "--prometheus-port", "8081"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"worker_urls": ()},
        {"worker_urls": "http://a:1"},
        {"worker_urls": ("a:1",)},
        {"worker_urls": ("http://a:1", "http://a:1/")},
        {"worker_urls": ("http://127.0.0.1:30000",)},
        {"worker_urls": ("http://a:1",), "policy": "least_load"},
        {"worker_urls": ("http://a:1",), "port": -1},
        {"worker_urls": ("http://a:1",), "port": 2, "prometheus_port": 2},
        {"worker_urls": ("http://a:1",), "prometheus_port": 0},
    ],
)
def test_bad_router_spec_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SGLangRouterSpec(**kwargs)


# --- vLLM --------------------------------------------------------------------------------------


def test_vllm_default_command() -> None:
    spec = VLLMSpec(model="Qwen/Qwen2.5-1.5B-Instruct")
    assert spec.command() == [
        "vllm",
        "serve",
        "Qwen/Qwen2.5-1.5B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]
    assert spec.env() == {}
    assert spec.base_url + spec.health_path == "http://127.0.0.1:8000/health"


def test_vllm_runtime_lora_sets_env_and_lora_modules() -> None:
    spec = vllm_policy(
        "/models/base",
        adapters={"policy": "/ckpt/policy", "value": Path("/ckpt/value")},
        runtime_lora_updating=True,
        max_loras=4,
        max_lora_rank=32,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        served_model_name="base",
    )
    assert spec.command("/venv/bin/vllm") == [
        "/venv/bin/vllm",
        "serve",
        "/models/base",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.85",
        "--served-model-name",
        "base",
        "--enable-lora",
        "--lora-modules",
        "policy=/ckpt/policy",
        "value=/ckpt/value",
        "--max-loras",
        "4",
        "--max-lora-rank",
        "32",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]
    assert spec.env() == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_vllm_runtime_lora_alone_enables_lora() -> None:
    spec = VLLMSpec(model="m", runtime_lora_updating=True)
    assert spec.enable_lora is True
    assert "--enable-lora" in spec.command()
    assert "--lora-modules" not in spec.command()


def test_vllm_pooling_runner_for_critic() -> None:
    spec = vllm_critic("Skywork/Skywork-Reward-V2-Llama-3.1-8B", port=8001, enable_prefix_caching=False)
    assert spec.command() == [
        "vllm",
        "serve",
        "Skywork/Skywork-Reward-V2-Llama-3.1-8B",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--runner",
        "pooling",
        "--convert",
        "classify",
        "--no-enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]
    native = vllm_critic("Qwen/Qwen2.5-Math-RM-72B", convert=None, enable_prompt_tokens_details=False)
    assert native.command()[7:] == ["--runner", "pooling", "--enable-prefix-caching"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": ""},
        {"model": "m", "port": 65536},
        {"model": "m", "tensor_parallel_size": 0},
        {"model": "m", "gpu_memory_utilization": 0},
        {"model": "m", "gpu_memory_utilization": 1.5},
        {"model": "m", "runner": "draft"},
        {"model": "m", "convert": "score"},
        {"model": "m", "runner": "generate", "convert": "classify"},
        {"model": "m", "enable_lora": True, "max_lora_rank": 12},
        {"model": "m", "enable_lora": True, "max_loras": 0},
        {"model": "m", "max_loras": 2},
        {"model": "m", "max_lora_rank": 16},
        {"model": "m", "lora_modules": (("a=b", "/p"),)},
        {"model": "m", "lora_modules": (("a", "/p"), ("a", "/q"))},
        {"model": "m", "lora_modules": (("m", "/p"),)},
        {"model": "m", "served_model_name": "base", "lora_modules": (("base", "/p"),)},
        {"model": "m", "extra_args": "--enforce-eager"},
    ],
)
def test_bad_vllm_spec_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        VLLMSpec(**kwargs)


# --- shared properties ---------------------------------------------------------------------------

SPECS = [
    sglang_policy("m", adapters={"a": "/a"}, mem_fraction_static=0.5),
    sglang_critic("rm"),
    sglang_lora_host("m", {}, max_lora_rank=8, target_modules=["q_proj"]),
    SGLangRouterSpec(worker_urls=("http://a:1",), port=2),
    VLLMSpec(
        model="m",
        lora_modules={"a": "/a"},  # type: ignore[arg-type]  # a mapping is converted at runtime
        gpu_memory_utilization=0.9,
        runtime_lora_updating=True,
    ),
    vllm_critic("rm"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: type(spec).__name__)
def test_command_and_env_are_plain_strings(spec: Any) -> None:
    command = spec.command()
    assert isinstance(command, list)
    assert command and all(isinstance(arg, str) and arg for arg in command)
    env = spec.env()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


@pytest.mark.parametrize(
    ("module", "spec"),
    [(sglang, SPECS[0]), (sglang, SPECS[3]), (vllm, SPECS[4])],
    ids=["sglang", "router", "vllm"],
)
def test_launch_hands_the_spec_to_the_process_manager(
    module: Any, spec: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []

    class FakeManagedProcess:
        @classmethod
        def start(cls, command: list[str], **kwargs: Any) -> str:
            calls.append((command, kwargs))
            return "started"

    fake = types.ModuleType("servers.process")
    fake.ManagedProcess = FakeManagedProcess  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "servers.process", fake)

    log_file = tmp_path / "server.log"
    assert module.launch(spec, log_file=log_file, startup_timeout=5.0) == "started"
    assert calls == [
        (
            spec.command(),
            {
                "env": spec.env(),
                "health_url": spec.base_url + "/health",
                "log_file": log_file,
                "startup_timeout": 5.0,
            },
        )
    ]


@pytest.mark.parametrize("module", [sglang, vllm])
def test_all_is_complete(module: Any) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name


def test_launch_without_sglang_installed_is_a_server_start_error(tmp_path: Path) -> None:
    """With the real process manager: no SGLang here, so the child exits and the log is quoted."""
    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("SGLang is installed here; this test is for machines without it")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_file = tmp_path / "sglang.log"
    with pytest.raises(ServerStartError, match="sglang"):
        sglang.launch(SGLangSpec(model_path="m", port=port), log_file=log_file, startup_timeout=30.0)
    assert "sglang" in log_file.read_text()


def test_embedded_server_cache_options_reach_its_command_and_the_ram_cache_refuses_adapters() -> None:
    from agent.settings import EmbeddedSettings
    from servers.llamacpp import EmbeddedServerConfig

    config = EmbeddedServerConfig.from_settings(EmbeddedSettings(cache_reuse=256, ram_cache_mib=0))
    command = config.command(model=Path("m.gguf"), port=1)
    assert command[command.index("--cache-reuse") + 1] == "256"
    assert command[command.index("--ram-cache-mib") + 1] == "0"
    assert "--ram-cache-mib" not in EmbeddedServerConfig().command(model=Path("m.gguf"), port=1)
    assert "--swa-full" not in command
    swa = EmbeddedServerConfig.from_settings(EmbeddedSettings(swa_full=True))
    assert "--swa-full" in swa.command(model=Path("m.gguf"), port=1)
    EmbeddedServerConfig(lora=(Path("a.gguf"),), ram_cache_mib=0)  # off: allowed
    with pytest.raises(ConfigError, match="RAM prompt cache cannot be used with LoRA"):
        EmbeddedServerConfig(lora=(Path("a.gguf"),), ram_cache_mib=1024)
