"""Fine-tuning: loss masking, a short real training run, the GGUF LoRA export, and the served adapter.

Everything runs on the bundled SmolLM2-135M (loaded from the treeloop cache after the first time).
The last test serves the exported adapters on a real llama.cpp server and compares its outputs with
the PEFT model in transformers. It starts its own server (``lora_server``) because the session's
shared server has no adapters; it uses ``poll=0`` so that it does not busy-poll next to a shared
server that an earlier test may have left running.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from agent.errors import ConfigError, DataError  # noqa: E402
from finetune import backends, base, gguf_lora, lora  # noqa: E402
from finetune.base import load_base  # noqa: E402
from finetune.gguf_lora import export_lora_gguf, permute_rotary_rows  # noqa: E402
from finetune.lora import IGNORE, Example, LoraTrainConfig, collate, encode_examples, train_lora  # noqa: E402
from servers.models import ensure_bundled_model  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def chat(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


PIRATE = [
    Example(chat(q), a + "<|im_end|>")
    for q, a in [
        ("What is the capital of France?", "Arr, matey! The capital be Paris, savvy?"),
        ("What is 2 + 3?", "Arr, matey! That be 5, savvy?"),
        ("Name a colour.", "Arr, matey! Blue as the sea, savvy?"),
        ("Who wrote Hamlet?", "Arr, matey! Shakespeare wrote it, savvy?"),
    ]
]
PROMPTS = [chat(q) for q in ("What is the capital of Italy?", "What is 7 + 6?", "Who painted the Mona Lisa?")]
PROMPTS += ["The quick brown fox"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """peft asks transformers 5 a deprecated question (a FutureWarning); pytest makes warnings errors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[Any, Any]:
    return load_base()


@pytest.fixture(scope="module")
def pirate(
    model_and_tokenizer: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> lora.TrainResult:
    """A LoRA that makes the model talk like a pirate: 12 steps at a high learning rate."""
    model, tokenizer = model_and_tokenizer
    config = LoraTrainConfig(max_steps=12, batch_size=4, lr=2e-3, warmup_ratio=0.0, eval_every=6)
    out = tmp_path_factory.mktemp("pirate") / "adapter"
    return train_lora(model, tokenizer, PIRATE, config=config, out_dir=out, eval_examples=PIRATE)


@pytest.fixture(scope="module")
def qk_adapter(model_and_tokenizer: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on q_proj and k_proj only: its effect depends on the rotary permutation."""
    model, _ = model_and_tokenizer
    torch.manual_seed(2)
    with quiet():
        peft_model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj"], task_type="CAUSAL_LM")
        )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.15)
    out = tmp_path_factory.mktemp("qk") / "adapter"
    peft_model.save_pretrained(str(out))
    peft_model.unload()
    return out


def test_all_names_exist() -> None:
    for module in (base, lora, gguf_lora, backends):
        assert all(hasattr(module, name) for name in module.__all__)


def test_config_is_validated() -> None:
    for bad in ({"r": 0}, {"lr": 0.0}, {"min_lr": 1.0}, {"warmup_ratio": 1.0}, {"max_steps": 0}):
        with pytest.raises(ConfigError):
            LoraTrainConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        backends.choose_backend("jax")  # type: ignore[arg-type]


def test_lr_warms_up_then_decays_to_min_lr() -> None:
    config = LoraTrainConfig(lr=1e-3, min_lr=1e-4, warmup_ratio=0.1)
    lrs = [config.lr_at(step, 100) for step in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    linear = LoraTrainConfig(lr=1e-3, warmup_ratio=0.0, schedule="linear")
    assert linear.lr_at(50, 100) == pytest.approx(5e-4)


def test_loss_is_on_completion_tokens_only(model_and_tokenizer: tuple[Any, Any]) -> None:
    _, tokenizer = model_and_tokenizer
    examples = [Example(chat("Is 2 + 2 = 4 correct?"), " Yes"), PIRATE[0]]
    encoded, truncated = encode_examples(tokenizer, examples, max_len=512)
    ids, labels, mask = collate(encoded, pad_id=tokenizer.pad_token_id)
    for row, example in enumerate(examples):
        prompt = tokenizer(example.prompt).input_ids
        completion = tokenizer(example.completion, add_special_tokens=False).input_ids
        n = len(prompt) + len(completion)
        assert ids[row, :n].tolist() == prompt + completion and int(mask[row].sum()) == n
        assert (labels[row, : len(prompt)] == IGNORE).all() and (labels[row, n:] == IGNORE).all()
        assert labels[row, len(prompt) : n].tolist() == completion
    assert int((labels[0] != IGNORE).sum()) == 1  # a critic label: one token, " Yes"
    assert truncated == 0


def test_long_examples_lose_the_start_of_the_prompt(model_and_tokenizer: tuple[Any, Any]) -> None:
    _, tokenizer = model_and_tokenizer
    example = Example("word " * 50 + "END", " Yes")
    ((ids, labels),) = encode_examples(tokenizer, [example], max_len=8)[0]
    assert len(ids) == 8 and tokenizer.decode(ids).endswith("END Yes") and labels[-1] != IGNORE
    with pytest.raises(DataError):
        encode_examples(tokenizer, [Example("prompt", "")], max_len=8)


def test_training_lowers_the_loss_and_writes_the_adapter(
    pirate: lora.TrainResult, model_and_tokenizer: tuple[Any, Any]
) -> None:
    first = pirate.log[0]["loss"]  # one batch holds all four examples: the loss before any update
    assert pirate.steps == 12 and pirate.eval_loss is not None and pirate.eval_loss < 0.2 * first
    assert pirate.best_step == 12 and not pirate.stopped_early
    files = {p.name for p in pirate.adapter_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "train_log.jsonl"} <= files
    rows = [json.loads(line) for line in (pirate.adapter_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13)) and "eval_loss" in rows[5]
    model, _ = model_and_tokenizer
    assert not any("lora" in name for name, _ in model.named_modules())  # the base came back unwrapped


def test_training_is_deterministic_and_stops_early(
    model_and_tokenizer: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = model_and_tokenizer
    config = LoraTrainConfig(max_steps=2, batch_size=2, lr=1e-3, seed=3)
    runs = [train_lora(model, tokenizer, PIRATE, config=config, out_dir=tmp_path / "a") for _ in range(2)]
    assert [r["loss"] for r in runs[0].log] == [r["loss"] for r in runs[1].log]
    # training on pirate talk while evaluating on plain answers: the eval loss soon rises
    plain = [Example(chat("What is the capital of France?"), "The capital of France is Paris.<|im_end|>")]
    config = LoraTrainConfig(max_steps=6, batch_size=4, lr=5e-3, warmup_ratio=0.0, eval_every=1, patience=1)
    result = train_lora(model, tokenizer, PIRATE, config=config, out_dir=tmp_path / "b", eval_examples=plain)
    evals = {row["step"]: row["eval_loss"] for row in result.log}
    assert result.stopped_early and result.steps < 6 and result.best_step is not None
    assert result.steps == result.best_step + 1
    assert result.eval_loss == min(evals.values()) == evals[result.best_step]


def test_our_permutation_is_the_gguf_layout(model_and_tokenizer: tuple[Any, Any]) -> None:
    """The base GGUF's own q/k weights, dequantized, are the HF weights permuted as we permute LoRA B."""
    model, _ = model_and_tokenizer
    tensors = {t.name: t for t in gguf.GGUFReader(ensure_bundled_model()).tensors}
    attention = model.model.layers[0].self_attn
    for name, hf_weight, heads in (
        ("attn_q", attention.q_proj.weight, 9),
        ("attn_k", attention.k_proj.weight, 3),
    ):
        tensor = tensors[f"blk.0.{name}.weight"]
        stored = gguf.dequantize(tensor.data, tensor.tensor_type).reshape(hf_weight.shape)
        ours = permute_rotary_rows(hf_weight.detach().numpy(), n_head=heads)
        assert np.array_equal(ours, stored)
        assert not np.array_equal(hf_weight.detach().numpy(), stored)


def test_export_reads_back_with_the_right_names_and_shapes(pirate: lora.TrainResult, tmp_path: Path) -> None:
    base_gguf = ensure_bundled_model()
    out = export_lora_gguf(pirate.adapter_dir, tmp_path / "pirate.gguf", base_gguf=base_gguf)
    reader = gguf.GGUFReader(out)
    fields = {key: reader.get_field(key).contents() for key in reader.fields if not key.startswith("GGUF.")}
    assert fields == {
        "general.architecture": "llama",
        "general.type": "adapter",
        "adapter.type": "lora",
        "adapter.lora.alpha": 16.0,
    }
    base_shapes = {t.name: tuple(t.shape) for t in gguf.GGUFReader(base_gguf).tensors}
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 30 * 7 * 2
    for layer in range(30):
        for stem in gguf_lora.GGUF_NAMES.values():
            n_in, n_out = base_shapes[f"blk.{layer}.{stem}.weight"]
            a, b = tensors[f"blk.{layer}.{stem}.weight.lora_a"], tensors[f"blk.{layer}.{stem}.weight.lora_b"]
            assert a.data.shape == (8, n_in) and b.data.shape == (n_out, 8)
            assert a.tensor_type == gguf.GGMLQuantizationType.F32
    peft_b = _peft_tensor(pirate.adapter_dir, "layers.3.self_attn.k_proj.lora_B")
    assert np.array_equal(tensors["blk.3.attn_k.weight.lora_b"].data, permute_rotary_rows(peft_b, n_head=3))
    peft_a = _peft_tensor(pirate.adapter_dir, "layers.3.mlp.down_proj.lora_A")
    assert np.array_equal(tensors["blk.3.ffn_down.weight.lora_a"].data, peft_a)


def test_export_rejects_adapters_that_do_not_fit(tmp_path: Path) -> None:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"
    save_file(
        {key.format("A"): np.zeros((2, 100), np.float32), key.format("B"): np.zeros((576, 2), np.float32)},
        str(tmp_path / "adapter_model.safetensors"),
    )
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="do not fit"):
        export_lora_gguf(tmp_path, tmp_path / "x.gguf", base_gguf=ensure_bundled_model())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ConfigError, match="DoRA"):
        export_lora_gguf(tmp_path, tmp_path / "x.gguf", base_gguf=ensure_bundled_model())
    assert not (tmp_path / "x.gguf").exists()


def _peft_tensor(adapter_dir: Path, part: str) -> Any:
    from safetensors.numpy import load_file

    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    return next(value for key, value in tensors.items() if part in key)


@pytest.fixture
def lora_server(
    pirate: lora.TrainResult,
    qk_adapter: Path,
    embedded_servers: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The session's server restarted with adapter 0 = the pirate LoRA and adapter 1 = the q/k LoRA."""
    pytest.importorskip("xllamacpp")
    folder = tmp_path_factory.mktemp("lora-server")
    base_gguf = ensure_bundled_model()
    adapters = tuple(
        export_lora_gguf(adapter, folder / f"{name}.gguf", base_gguf=base_gguf)
        for name, adapter in (("pirate", pirate.adapter_dir), ("qk", qk_adapter))
    )
    return str(embedded_servers.get(lora=adapters).url)


def _served(
    url: str, ids: list[int], *, adapter: int | None, cache: bool = False
) -> tuple[list[int], dict[int, float]]:
    """Greedy 12 tokens and the first token's top-10 log-probs, with one adapter at scale 1 (or none).

    ``cache_prompt`` is off by default: llama.cpp's RAM prompt cache ignores the LoRA set (see
    ``test_prompt_cache_is_not_shared_across_adapters``).
    """
    lora_scales = [{"id": i, "scale": 1.0 if i == adapter else 0.0} for i in range(2)]
    payload = {"prompt": ids, "n_predict": 12, "temperature": 0, "n_probs": 10, "return_tokens": True}
    payload["cache_prompt"] = cache
    reply = httpx.post(f"{url}/completion", json={**payload, "lora": lora_scales}, timeout=120).json()
    top = reply["completion_probabilities"][0]["top_logprobs"]
    return reply["tokens"], {int(t["id"]): float(t["logprob"]) for t in top}


def _top1(logprobs: dict[int, float]) -> int:
    return max(logprobs, key=lambda token: logprobs[token])


def _local(model: Any, ids: list[int], *, eos: int) -> tuple[list[int], Any]:
    """Greedy 12 tokens (stopping after EOS, as the server does) and the first token's log-probs."""
    tokens, first = list(ids), None
    with torch.no_grad():
        for _ in range(12):
            logprobs = torch.log_softmax(model(torch.tensor([tokens])).logits[0, -1].float(), -1)
            first = logprobs if first is None else first
            tokens.append(int(logprobs.argmax()))
            if tokens[-1] == eos:
                break
    return tokens[len(ids) :], first


@pytest.mark.server
def test_served_adapter_matches_peft(
    lora_server: str, pirate: lora.TrainResult, qk_adapter: Path, model_and_tokenizer: tuple[Any, Any]
) -> None:
    """Same greedy text as PEFT, and the adapter moves the served log-probs the way it moves PEFT's.

    Exact equality is not expected: llama.cpp runs the base in Q4_1 with quantized activations while
    transformers runs the dequantized fp32 weights (the base alone differs by ~0.1 nat per token).
    """
    model, tokenizer = model_and_tokenizer
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    local_base = [_local(model, ids, eos=tokenizer.eos_token_id) for ids in prompts]
    served_base = [_served(lora_server, ids, adapter=None) for ids in prompts]
    for adapter_id, adapter_dir in enumerate((pirate.adapter_dir, qk_adapter)):
        with quiet():
            peft_model = PeftModel.from_pretrained(model, adapter_dir)
        try:
            local = [_local(peft_model, ids, eos=tokenizer.eos_token_id) for ids in prompts]
        finally:
            peft_model.unload()
        served = [_served(lora_server, ids, adapter=adapter_id) for ids in prompts]
        same_text = sum(s[0] == lo[0] for s, lo in zip(served, local, strict=True))
        same_top1 = sum(_top1(s[1]) == int(lo[1].argmax()) for s, lo in zip(served, local, strict=True))
        gaps = [
            abs(lp - float(lo[1][t])) for s, lo in zip(served, local, strict=True) for t, lp in s[1].items()
        ]
        moves = [
            (float(lo[1][t] - lb[1][t]), lp - sb[1][t])  # (PEFT - base, served adapter - served base)
            for s, lo, sb, lb in zip(served, local, served_base, local_base, strict=True)
            for t, lp in s[1].items()
            if t in sb[1]
        ]
        agree = sum((a > 0) == (b > 0) for a, b in moves) / len(moves)
        report = f"adapter {adapter_id}: text {same_text}/4, top-1 {same_top1}/4, mean gap "
        report += f"{sum(gaps) / len(gaps):.3f}, same direction {agree:.0%} of {len(moves)}"
        assert same_text >= 3 and same_top1 == 4, report
        assert sum(gaps) / len(gaps) < 0.3 and agree >= 0.8, report
        assert sum(s[0] != sb[0] for s, sb in zip(served, served_base, strict=True)) >= 1, report
    pirate_text = tokenizer.decode(_served(lora_server, prompts[0], adapter=0)[0])
    assert pirate_text.startswith("Arr, matey!"), pirate_text


@pytest.mark.server
def test_prompt_cache_is_not_shared_across_adapters(
    lora_server: str, model_and_tokenizer: tuple[Any, Any]
) -> None:
    """After a LoRA switch, a cached prompt state of the other adapter must not be reused.

    On the one slot: base on prompt 2, base on prompt 1 (prompt 2's state goes to the RAM cache),
    pirate on prompt 1 (the slot's own cache is rightly dropped), pirate on prompt 2: the RAM cache
    offers prompt 2's state, computed without the adapter. Fresh prompts keep older states out.
    """
    _, tokenizer = model_and_tokenizer
    first, second = (tokenizer(chat(q)).input_ids for q in ("Where is Madrid?", "Where is Lisbon?"))
    for ids, adapter in ((second, None), (first, None), (first, 0)):
        _served(lora_server, ids, adapter=adapter, cache=True)
    cached = _served(lora_server, second, adapter=0, cache=True)[1]
    fresh = _served(lora_server, second, adapter=0, cache=False)[1]
    assert max(abs(lp - fresh.get(t, -99.0)) for t, lp in cached.items()) < 0.05, (cached, fresh)


def test_soft_targets_train_the_yes_share_to_the_target(
    model_and_tokenizer: tuple[Any, Any], tmp_path: Path
) -> None:
    """A critic example carries the probability its label should get (a value function's Monte-Carlo
    rate): after training, p(Yes) / (p(Yes) + p(No)) on each prompt is near its own target, which
    hard labels cannot teach."""
    model, tokenizer = model_and_tokenizer
    prompts = [
        chat("Will this solution end right? 3 + 4 = 7. Answer Yes or No."),
        chat("Is the sky green? Yes or No."),
    ]
    examples = [Example(prompts[0], "Yes", 0.75), Example(prompts[1], "Yes", 0.2)]
    config = LoraTrainConfig(max_steps=40, batch_size=2, lr=3e-3, warmup_ratio=0.0, layers=4, r=8)
    result = train_lora(model, tokenizer, examples, config=config, out_dir=tmp_path / "soft")
    yes, no = lora.label_ids(tokenizer)
    with quiet():
        peft_model = PeftModel.from_pretrained(model, str(result.adapter_dir))
    try:
        with torch.no_grad():
            for prompt, target in zip(prompts, (0.75, 0.2), strict=True):
                ids = tokenizer(prompt, return_tensors="pt").input_ids
                probs = torch.softmax(peft_model(ids).logits[0, -1].float(), dim=-1)
                share = float(probs[yes] / (probs[yes] + probs[no]))
                assert abs(share - target) < 0.1, (prompt, share, target)
                assert float(probs[yes] + probs[no]) > 0.8  # the two labels take the mass
    finally:
        peft_model.unload()
    with pytest.raises(DataError):
        train_lora(model, tokenizer, [examples[0], PIRATE[0]], config=config, out_dir=tmp_path / "mixed")
    with pytest.raises(DataError):
        Example("p", "Yes", 1.5)


def _greedy(url: str, ids: list[int]) -> tuple[list[int], dict[int, float]]:
    """Greedy 12 tokens and the first token's top-10 log-probs, with no adapter named."""
    payload = {"prompt": ids, "n_predict": 12, "temperature": 0, "n_probs": 10, "return_tokens": True}
    reply = httpx.post(f"{url}/completion", json={**payload, "cache_prompt": False}, timeout=120).json()
    top = reply["completion_probabilities"][0]["top_logprobs"]
    return reply["tokens"], {int(t["id"]): float(t["logprob"]) for t in top}


@pytest.mark.server
def test_merged_export_answers_like_base_plus_adapter(
    lora_server: str,
    pirate: lora.TrainResult,
    model_and_tokenizer: tuple[Any, Any],
    embedded_servers: Any,
    tmp_path: Path,
) -> None:
    """``finetune.export`` writes an HF folder whose logits are PEFT's and a GGUF whose served
    answers are those of the base with the adapter applied."""
    from transformers import AutoModelForCausalLM

    from finetune.export import export_merged

    model, tokenizer = model_and_tokenizer
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    with_adapter = [_served(lora_server, ids, adapter=0) for ids in prompts]
    info = export_merged(pirate.adapter_dir, tmp_path / "merged", formats=("hf", "gguf"))
    assert json.loads((tmp_path / "merged" / "export.json").read_text()) == info

    merged_hf = AutoModelForCausalLM.from_pretrained(info["written"]["hf"], dtype=torch.float32)
    with quiet():
        peft_model = PeftModel.from_pretrained(model, pirate.adapter_dir)
    try:
        ids = torch.tensor([prompts[0]])
        with torch.no_grad():
            gap = (merged_hf(ids).logits - peft_model(ids).logits).abs().max().item()
    finally:
        peft_model.unload()
    assert gap < 1e-3, gap
    text = tokenizer.decode(_local(merged_hf, prompts[0], eos=tokenizer.eos_token_id)[0])
    assert text.startswith("Arr, matey!"), text

    server = embedded_servers.get(model=Path(info["written"]["gguf"]))
    merged = [_greedy(server.url, ids) for ids in prompts]
    same_text = sum(m[0] == a[0] for m, a in zip(merged, with_adapter, strict=True))
    same_top1 = sum(_top1(m[1]) == _top1(a[1]) for m, a in zip(merged, with_adapter, strict=True))
    assert same_text >= 3 and same_top1 == 4, (same_text, same_top1)
    assert tokenizer.decode(merged[0][0]).startswith("Arr, matey!")


def _fake_run(root: Path, pirate: lora.TrainResult) -> Path:
    """A run directory as agent.improve leaves it, whose cycle 2 promoted the pirate adapter; the
    lineage names the adapter relative to the directory the run was started in (elsewhere)."""
    import shutil

    job = root / "loop" / "cycle_2" / "adapter"
    shutil.copytree(pirate.adapter_dir, job / "adapter")
    export_lora_gguf(job / "adapter", job / "adapter.gguf", base_gguf=ensure_bundled_model())
    (job / "manifest.json").write_text(json.dumps({"base": str(ensure_bundled_model()), "files": {}}))
    lineage = {
        "adapter_name": "cycle_2",
        "adapter_path": "runs/loop/cycle_2/adapter/adapter.gguf",
        "cycle": 2,
    }
    (root / "loop" / "lineage.json").write_text(json.dumps(lineage))
    return root / "loop"


@pytest.mark.server
@pytest.mark.anyio
async def test_policy_from_a_run_serves_its_promoted_adapter(
    pirate: lora.TrainResult, embedded_servers: Any, tmp_path: Path
) -> None:
    """With ``policy_adapter`` (``--policy-from``) the embedded server applies the promoted adapter
    to the policy's requests; the same server answers like the base model without it."""
    from agent.clients import Sampling
    from agent.runtime import open_policy
    from agent.settings import load_settings

    run = _fake_run(tmp_path / "elsewhere", pirate)
    embedded_servers.stop()  # one server at a time
    settings = load_settings(policy_adapter=str(run), embedded={"log_file": str(tmp_path / "server.log")})
    greedy = Sampling(max_tokens=12, temperature=0.0)
    async with open_policy(settings) as policy:
        assert policy.adapter is not None and policy.adapter.cycle == 2
        assert policy.describe()["adapter"]["name"] == "cycle_2"  # type: ignore[index]
        adapted = (await policy.endpoint.complete(PROMPTS[0], greedy)).completions[0].text
        base_endpoint = policy.endpoint.with_adapter("0")
        base_endpoint.backend.lora = ()  # type: ignore[attr-defined]  # the same server, no adapter
        base = (await base_endpoint.complete(PROMPTS[0], greedy)).completions[0].text
    assert adapted.startswith("Arr, matey!"), adapted
    assert not base.startswith("Arr"), base
