"""In-process fakes of a model backend and of a critic, for tests and engine benchmarks.

``FunctionBackend`` implements the ``Backend`` protocol by calling a Python function
``fn(prompt, sampling, index) -> str`` for each of the ``n`` completions, so a test decides exactly
what the "model" writes. It can also wait (``latency``) and fail on chosen calls (``fail``), which is
how driver tests exercise deadlines and failing endpoints. ``FunctionCritic`` does the same for the
``Critic`` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import anyio

from agent.clients.base import Completion, CompletionResult, Sampling, TokenLogprob, Usage
from agent.critics.base import CriticRole, CriticScore
from agent.errors import EndpointError

__all__ = ["FunctionBackend", "FunctionCritic"]

TextFn = Callable[[str, Sampling, int], str]


@dataclass
class FunctionBackend:
    fn: TextFn
    latency: float = 0.0
    fail: Callable[[int], EndpointError | None] = lambda call: None  # error to raise on call #k
    url: str = "fake://backend"
    calls: int = 0
    prompts: list[str] = field(default_factory=list)

    async def complete(self, prompt: str, sampling: Sampling, *, n: int = 1) -> CompletionResult:
        self.calls += 1
        self.prompts.append(prompt)
        call = self.calls
        if self.latency:
            await anyio.sleep(self.latency)
        error = self.fail(call)
        if error is not None:
            raise error
        texts = [self.fn(prompt, sampling, i) for i in range(n)]
        completions = tuple(_with_logprobs(_cut(text, sampling), sampling, i) for i, text in enumerate(texts))
        prompt_tokens = len(prompt) // 4
        usage = Usage(
            requests=1,
            prompt_tokens=prompt_tokens * n,
            completion_tokens=sum(max(1, len(c.text) // 4) for c in completions),
        )
        return CompletionResult(completions, usage)

    adapter: str | None = None  # set by with_adapter: the fn can read it from the backend

    def with_adapter(self, adapter: str) -> FunctionBackend:
        return replace(self, adapter=adapter)

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _cut(text: str, sampling: Sampling) -> Completion:
    """Apply stop strings and the token cap (4 characters a token) as a server would."""
    first = min(((text.find(s), s) for s in sampling.stop if s in text), default=None)
    if first is not None:
        return Completion(text[: first[0]], "stop", stop_matched=first[1])
    if len(text) > sampling.max_tokens * 4:
        return Completion(text[: sampling.max_tokens * 4], "length")
    return Completion(text, "stop")


def _with_logprobs(completion: Completion, sampling: Sampling, index: int) -> Completion:
    """Four-character "tokens" whose log-probability falls with the sample index (greedy is likeliest)."""
    if sampling.logprobs is None:
        return completion
    text = completion.text
    tokens = tuple(TokenLogprob(text[i : i + 4], -0.05 * (index + 1)) for i in range(0, len(text), 4))
    return replace(completion, logprobs=tokens)


@dataclass
class FunctionCritic:
    fn: Callable[[str, Sequence[str]], float]
    role: CriticRole = "value"
    name: str = "function-critic"
    calls: int = 0

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        return CriticScore(self.fn(question, steps))
