"""Prompt variants (agent.tasks.variants): correct worked examples, named and hashed in every run,
chosen by --prompt / AGENT_PROMPT, never mixed on resume.

The run-level tests use the in-process ``FunctionBackend``: the "model" writes the right answer only
when the prompt holds one of the short worked examples, so which variant was used is visible in
the results, not only in run.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.cli import policy_overrides
from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.errors import ConfigError
from agent.evaluate import build_parser, evaluate
from agent.fakes.backend import FunctionBackend
from agent.prompts import get_format
from agent.runtime import Policy
from agent.settings import load_settings
from agent.tasks import Problem, get_task, load_task_problems
from agent.tasks.answers import extract_answer
from agent.tasks.variants import DEFAULT_PROMPTS, get_prompt, prompt_names

WORD_TASKS = ("gsm8k", "arith")
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def test_registry_names_and_defaults() -> None:
    for task in WORD_TASKS:
        assert set(prompt_names(task)) >= {"house", "mixed-8", "mixed-4", "plain-8", "zero-shot"}
        assert DEFAULT_PROMPTS[task] in prompt_names(task)
    assert prompt_names("math") == ("house",)
    assert get_task("gsm8k").prompt == get_prompt("gsm8k")  # no name: the task's default
    with pytest.raises(ConfigError, match="choose one of house, mixed-8"):
        get_task("gsm8k", prompt="fancy")
    with pytest.raises(ConfigError, match="unknown task"):
        prompt_names("poetry")


@pytest.mark.parametrize("task", [*WORD_TASKS, "math"])
def test_every_variant_renders_a_cache_friendly_prefix(task: str) -> None:
    fmt = get_format("chatml")
    for name in prompt_names(task):
        t = get_task(task, prompt=name)
        assert t.prompt.name == name and t.instruction == t.prompt.instruction
        assert tuple(t.few_shot()) == t.prompt.examples
        a = fmt.render(instruction=t.instruction, examples=t.few_shot(), question="QUESTION ONE")
        b = fmt.render(instruction=t.instruction, examples=t.few_shot(), question="QUESTION TWO")
        shared = a[: a.index("QUESTION ONE")]
        assert b.startswith(shared)  # everything before the question is the same for every problem
        for question, _ in t.few_shot():
            assert question in shared


def test_hash_names_the_text() -> None:
    hashes = {get_prompt(t, n).hash for t in WORD_TASKS for n in prompt_names(t)}
    # gsm8k and arith share every variant but house (each task has its own worked examples)
    assert len(hashes) == len(prompt_names("gsm8k")) + 1
    assert get_prompt("gsm8k", "mixed-8").hash == get_prompt("arith", "mixed-8").hash
    assert get_prompt("gsm8k", "mixed-8").identity() == {
        "name": "mixed-8",
        "hash": get_prompt("gsm8k", "mixed-8").hash,
    }
    assert re.fullmatch(r"[0-9a-f]{12}", get_prompt("math").hash)


@pytest.mark.parametrize("task", WORD_TASKS)
def test_worked_examples_are_right_and_in_the_house_style(task: str) -> None:
    for name in prompt_names(task):
        for question, solution in get_prompt(task, name).examples:
            lines = solution.split("\n")
            assert re.fullmatch(r"The answer is \d+\.", lines[-1]), (name, solution)
            for line in lines[:-1]:
                a, op, b, c = STEP.search(line).groups()  # type: ignore[union-attr]
                assert OPS[op](int(a), int(b)) == int(c), line
                if name != "house":  # (house: checked with the task; arith's may spell numbers out)
                    # operands come from the question or from an earlier step
                    earlier = " ".join([question, *lines[: lines.index(line)]])
                    assert a in earlier and b in earlier, line
            assert extract_answer(solution) == STEP.findall(solution)[-1][3]


def test_short_examples_cover_the_question_forms() -> None:
    examples = get_prompt("gsm8k", "mixed-8").examples
    steps = sorted(len(s.split("\n")) - 1 for _, s in examples)
    assert steps.count(1) >= 4 and 2 in steps and 3 in steps
    text = " ".join(q for q, _ in examples).lower()
    for form in ("how many", "left", "each", "times as many", "change", "more", "per", "in all", "$"):
        assert form in text, form


def test_examples_never_appear_as_generated_problems() -> None:
    questions = {q for t in WORD_TASKS for n in prompt_names(t) for q, _ in get_prompt(t, n).examples}
    for split in ("train", "test"):
        generated = load_task_problems("arith", split=split, limit=300)
        assert not questions & {p.question for p in generated}


def test_prompt_from_settings_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_PROMPT", "mixed-4")
    assert load_settings().prompt == "mixed-4"
    args = build_parser().parse_args(["--prompt", "plain-8"])
    assert load_settings(**policy_overrides(args)).prompt == "plain-8"  # the flag wins over the env
    assert load_settings(**policy_overrides(build_parser().parse_args([]))).prompt == "mixed-4"


def knows_short_examples(prompt: str, sampling: Sampling, index: int) -> str:
    """Right only when the prompt shows the short worked examples (a stand-in for a prompt effect)."""
    question = prompt.rsplit("<|im_start|>user\n", 1)[1]
    a, b = (int(x) for x in re.findall(r"\d+", question)[:2])
    answer = a + b if "Lena has 14" in prompt else a
    return f"{a} + {b} = {answer}\nThe answer is {answer}."


def fake_policy(backend: FunctionBackend) -> Policy:
    endpoint = Endpoint(backend, max_concurrency=4, retry=RetryPolicy(attempts=1))
    return Policy(endpoint=endpoint, fmt=get_format("chatml"), embedded=False)


PROBLEMS = [
    Problem(f"p{i}", f"Ann has {i + 2} pears and picks {i + 5} more. How many pears?", str(2 * i + 7))
    for i in range(3)
]


@pytest.mark.anyio
async def test_runs_record_the_prompt_and_never_resume_under_another(tmp_path: Path) -> None:
    backend = FunctionBackend(knows_short_examples)
    policy = fake_policy(backend)
    out = tmp_path / "run"
    house = await evaluate(PROBLEMS[:2], task=get_task("gsm8k", prompt="house"), policy=policy, out=out)
    assert house.correct == 0
    recorded = json.loads((out / "run.json").read_text())["prompt"]
    assert recorded == get_prompt("gsm8k", "house").identity()
    assert json.loads((out / "summary.json").read_text())["settings"]["prompt"] == recorded

    calls = backend.calls
    with pytest.raises(ConfigError, match="prompt="):
        await evaluate(PROBLEMS, task=get_task("gsm8k", prompt="mixed-8"), policy=policy, out=out)
    assert backend.calls == calls  # refused before any request

    resumed = await evaluate(PROBLEMS, task=get_task("gsm8k", prompt="house"), policy=policy, out=out)
    assert resumed.problems == 3 and backend.calls == calls + 1  # only the missing problem

    short = await evaluate(
        PROBLEMS, task=get_task("gsm8k", prompt="mixed-8"), policy=policy, out=tmp_path / "b"
    )
    assert short.correct == 3
