"""Baseline solvers with an in-process fake policy: greedy, self-consistency, ORM re-rank."""

from __future__ import annotations

import pytest

from agent.clients import Endpoint, RetryPolicy, Sampling
from agent.errors import ConfigError, InputError
from agent.fakes.backend import FunctionBackend
from agent.prompts import get_format
from agent.solvers import SolverConfig, solve_problem, vote
from agent.tasks import Problem, get_task

pytestmark = pytest.mark.anyio

PROBLEM = Problem(id="p", question="Ann has 3 bags with 4 apples each. How many apples?", gold="12")
SAMPLES = [
    "3 * 4 = 11 apples.\nThe answer is 11.",  # wrong arithmetic
    "3 * 4 = 11 apples.\nThe answer is 11.",
    "3 * 4 = 11 apples.\nThe answer is 11.",
    "3 * 4 = 12 apples.\nThe answer is 12.",  # the only right one
    "I am not sure.",
]


def policy() -> Endpoint:
    def write(prompt: str, sampling: Sampling, index: int) -> str:
        return SAMPLES[0] if sampling.temperature == 0 else SAMPLES[index % len(SAMPLES)]

    return Endpoint(FunctionBackend(write), retry=RetryPolicy(attempts=1))


async def solve(config: SolverConfig, problem: Problem = PROBLEM):
    return await solve_problem(
        problem, policy=policy(), task=get_task("gsm8k"), fmt=get_format("chatml"), config=config
    )


async def test_greedy_takes_the_single_completion() -> None:
    solution = await solve(SolverConfig(method="greedy"))
    assert solution.answer == "11" and len(solution.samples) == 1 and solution.usage.requests == 1


async def test_self_consistency_takes_the_majority() -> None:
    solution = await solve(SolverConfig(method="sc", n=5))
    assert solution.answer == "11" and solution.votes == {"11": 3, "12": 1}
    assert solution.text.endswith("The answer is 11.")


async def test_rerank_picks_what_the_orm_prefers_and_reports_all_selectors() -> None:
    solution = await solve(SolverConfig(method="rerank", n=5, critics="arithmetic"))
    assert solution.answer == "12"  # the arithmetic ORM scores the right sample 0.9, the others 0.1
    # ORM-weighted vote: "11" has 3 x 0.1, "12" has 0.9; the plain majority says "11".
    assert solution.answers == {"rerank": "12", "orm_vote": "12", "majority": "11"}
    assert solution.text.endswith("The answer is 12.")


async def test_rerank_needs_an_orm() -> None:
    with pytest.raises(ConfigError, match="ORM"):
        await solve(SolverConfig(method="rerank", n=3, critics="none"))


async def test_empty_question_is_an_input_error() -> None:
    with pytest.raises(InputError, match="empty"):
        await solve(SolverConfig(), Problem(id="e", question="  "))


def test_vote_ignores_missing_answers_and_normalizes_numbers() -> None:
    assert vote([None, "1,000", "1000.0", "7"]) == ("1000", {"1000": 2, "7": 1})
    assert vote([None, None]) == (None, {})


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        SolverConfig(method="beam")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SolverConfig(n=0)


def test_trained_critics_are_adapters_of_the_policy_server() -> None:
    from agent.critics.generative import GenerativeCritic
    from agent.solvers import build_critics

    critics = build_critics(
        "trained", policy=policy(), fmt=get_format("chatml"), adapters={"orm": "0", "prm": "2"}
    )
    assert set(critics) == {"orm", "prm"}
    assert all(isinstance(c, GenerativeCritic) for c in critics.values())
    assert critics["prm"].endpoint.backend.adapter == "2"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="AGENT_CRITIC_ADAPTERS"):
        build_critics("trained", policy=policy(), fmt=get_format("chatml"))
