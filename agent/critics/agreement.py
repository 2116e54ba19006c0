"""Self-consistency as an outcome score: how many of the tree's finished solutions agree with this one.

THIS IS NOT A VERIFIER. It never looks at whether an answer is right, only at how common it is
among the terminal answers of the same search tree. A popular wrong answer scores high; a lone
right answer scores low. It fills the ORM slot when no trained or generative ORM is available, and
its name says so in every log line and result file: "self-consistency (not a verifier)".

The score of a terminal with answer ``a``, given the answers of the *other* terminals, counts the
trajectory itself as one vote: ``(1 + #others equal to a) / (1 + #others)``. Answers are compared
after ``normalize_number``. A trajectory without an extractable answer agrees with nobody and
scores 0; with no other terminals yet there is no evidence of agreement and the score is 0.5 with
``missing=True``.

Left out on purpose: weighting answers by their critics' scores (that is weighted voting, a search
policy choice) and any notion of the correct answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent.critics.base import CriticRole, CriticScore
from agent.tasks.answers import normalize_number

__all__ = ["SelfConsistencyScorer"]

P_ALONE = 0.5
"""Score when there are no other terminal answers to agree with (``missing=True``)."""


class SelfConsistencyScorer:
    """Scores a finished trajectory by the share of the tree's terminal answers equal to its answer.

    Measures agreement, not correctness. ``others`` returns the extracted final answers (None for a
    terminal without one) of the tree's terminals *other than the one being scored*: score a new
    terminal before adding it to the tree. ``extract`` finds the final answer in a solution's text,
    e.g. ``agent.tasks.answers.extract_answer``.
    """

    name = "self-consistency (not a verifier)"
    role: CriticRole = "orm"

    def __init__(
        self,
        others: Callable[[], Sequence[str | None]],
        *,
        extract: Callable[[str], str | None],
    ) -> None:
        self.others = others
        self.extract = extract

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        return self.score_with(self.others(), self.extract("\n".join(steps)))

    def score_with(self, others: Sequence[str | None], answer: str | None) -> CriticScore:
        """The agreement of ``answer`` with ``others`` (the other terminals' answers)."""
        if answer is None:
            return CriticScore(0.0)
        if not others:
            return CriticScore(P_ALONE, missing=True)
        key = normalize_number(answer)
        agreeing = sum(1 for other in others if other is not None and normalize_number(other) == key)
        return CriticScore((1 + agreeing) / (1 + len(others)))
