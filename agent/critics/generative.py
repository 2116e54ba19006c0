"""A critic that asks a language model a yes/no question and reads the probability of "Yes".

One request per score: the prompt shows the problem and the numbered steps, then asks the role's
question (value: will this solution end correct? PRM: is the last step correct? ORM: is the final
answer correct?). The model generates ONE token at temperature 0 with its top-k log-probabilities,
and the score is ``P(yes) / (P(yes) + P(no))`` over that first token's alternatives.

Label tokens are matched after stripping whitespace and ignoring case, and every variant's
probability is summed (" Yes", "Yes" and "YES" are all yes). A label missing from the top-k is not
guessed silently: if one label is missing its probability is bounded by the smallest top-k
probability (it cannot be more likely than anything listed); if both are missing the score is 0.5.
Either way the score says ``missing=True`` and the critic counts it (``missing_count``).

The prompt is cache-friendly: a fixed instruction shared by every role, then the problem, then the
steps in order, and only then the role's question. Two states of the same problem share the prompt
up to the first step where they differ.

``temperature`` rescales the score, ``sigmoid(logit(p) / T)``: a trained critic's temperature is
fitted on held-out data (``agent.improve.calibration.fit_temperature``) and stored with its adapter,
so that its scores are probabilities. The untrained model's scores are used as they are (T = 1).

Left out on purpose: training (trained critics plug into the same ``Critic`` protocol), reasoning
before the verdict, and servers that return no log-probabilities (an error, not a 0.5: a critic
that always abstains would look like a working one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import get_args

from agent.clients import Endpoint, Sampling
from agent.critics.base import CriticRole, CriticScore
from agent.errors import ConfigError, EndpointProtocolError
from agent.improve.calibration import apply_temperature
from agent.prompts import PromptFormat

__all__ = ["INSTRUCTION", "QUESTIONS", "GenerativeCritic", "yes_probability"]

INSTRUCTION = (
    "You check solutions to math problems, written as numbered steps; a solution may be unfinished. "
    "Answer the question after it with one word: Yes or No."
)

QUESTIONS: dict[CriticRole, str] = {
    "value": "Will this solution reach the correct final answer?",
    "prm": "Is the last step correct?",
    "orm": "Is the final answer correct?",
}


class GenerativeCritic:
    """Scores a state by the probability the model answers "Yes" to the role's question.

    ``calls`` counts the scores returned and ``missing_count`` those among them whose label tokens
    were not (both) in the top-k; their ratio tells whether ``top_logprobs`` or the labels need
    changing for this model.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        fmt: PromptFormat,
        *,
        role: CriticRole,
        top_logprobs: int = 20,
        yes: Sequence[str] = ("Yes",),
        no: Sequence[str] = ("No",),
        temperature: float = 1.0,
    ) -> None:
        if role not in get_args(CriticRole):
            raise ConfigError(f"unknown critic role {role!r}; choose one of {', '.join(QUESTIONS)}")
        if not temperature > 0:
            raise ConfigError(f"a critic's temperature must be > 0, got {temperature}")
        if top_logprobs < 1:
            raise ConfigError(f"top_logprobs must be at least 1, got {top_logprobs}")
        self._yes = _labels(yes, "yes")
        self._no = _labels(no, "no")
        if self._yes & self._no:
            raise ConfigError(f"a label cannot mean both yes and no: {sorted(self._yes & self._no)}")
        self.endpoint = endpoint
        self.fmt = fmt
        self.role: CriticRole = role
        self.name = f"generative-{role}"
        self.temperature = temperature
        self.sampling = Sampling(max_tokens=1, temperature=0.0, logprobs=top_logprobs)
        self.calls = 0
        self.missing_count = 0

    def prompt(self, question: str, steps: Sequence[str]) -> str:
        """The prompt for this state: instruction, problem, numbered steps, then the role's question."""
        if not steps and self.role != "value":
            raise ValueError(f"the {self.role} critic needs at least one step to judge")
        lines = [f"Step {i}: {step.strip()}" for i, step in enumerate(steps, 1)] or ["(no steps yet)"]
        body = "\n".join(lines)
        text = (
            f"Problem:\n{question.strip()}\n\nSolution:\n{body}\n\n"
            f"{QUESTIONS[self.role]} Answer with Yes or No."
        )
        return self.fmt.render(instruction=INSTRUCTION, examples=(), question=text)

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        result = await self.endpoint.complete(self.prompt(question, steps), self.sampling)
        tokens = result.completions[0].logprobs if result.completions else ()
        if not tokens:
            raise EndpointProtocolError(
                f"{self.endpoint.url} returned no log-probabilities; the {self.name} critic needs them",
                url=self.endpoint.url,
            )
        first = tokens[0]
        top = first.top or ((first.token, first.logprob),)
        p, missing = yes_probability(top, yes=self._yes, no=self._no)
        if self.temperature != 1.0:
            p = apply_temperature(p, self.temperature)
        self.calls += 1
        self.missing_count += missing
        return CriticScore(p, usage=result.usage, missing=missing)


def yes_probability(
    top: Sequence[tuple[str, float]], *, yes: frozenset[str], no: frozenset[str]
) -> tuple[float, bool]:
    """``(P(yes) / (P(yes) + P(no)), missing)`` from one position's top-k ``(token, logprob)`` pairs.

    ``yes`` and ``no`` are casefolded labels; tokens are compared after stripping whitespace and
    casefolding, and the probabilities of all variants are summed. ``missing`` is True when a label
    is absent: one absent label is bounded by the smallest listed probability, two give 0.5.
    """
    probs = [(token.strip().casefold(), math.exp(lp)) for token, lp in top if not math.isnan(lp)]
    p_yes = sum(p for token, p in probs if token in yes)
    p_no = sum(p for token, p in probs if token in no)
    found_yes = any(token in yes for token, _ in probs)
    found_no = any(token in no for token, _ in probs)
    if found_yes and found_no:
        total = p_yes + p_no
        return (p_yes / total, False) if total > 0 else (0.5, True)
    if not (found_yes or found_no):
        return 0.5, True
    floor = min(p for _, p in probs)
    p_yes, p_no = (p_yes, floor) if found_yes else (floor, p_no)
    total = p_yes + p_no
    return (p_yes / total if total > 0 else 0.5), True


def _labels(labels: Sequence[str], what: str) -> frozenset[str]:
    if isinstance(labels, str):
        raise ConfigError(f"{what} labels must be a sequence of strings, not the string {labels!r}")
    cleaned = frozenset(label.strip().casefold() for label in labels)
    if not cleaned or "" in cleaned:
        raise ConfigError(f"{what} labels must be non-empty strings, got {list(labels)!r}")
    return cleaned
