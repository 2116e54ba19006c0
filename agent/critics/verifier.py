"""A critic that reads a solution's structure, not its words: model-free features, learned weights.

The policy's mistakes on grade-school problems are mostly visible without understanding the story:
a computation that is wrong (``24 / 8 = 2``), an operand that appears nowhere in the question or in
an earlier result (a number made up), a number of the question never used, a result computed and
then dropped, a final answer that is not what the last computation gave, an answer copied from the
question. ``features`` measures each of these on a (partial) solution; ``FeatureVerifier`` scores
a state with a logistic model over them, one weight vector per role (value, PRM, ORM), fitted on
the policy's own graded solutions (``python -m finetune.verifier``) and shipped with the package
(``agent/critics/shipped/verifier.json``). A logistic model fitted by maximum likelihood is
calibrated on its training distribution, so its scores are probabilities.

What the roles see:

- ORM and value: the whole state. The ORM's features include the final answer's; a prefix that
  has not stated an answer simply has those at 0.
- PRM: the last step, judged in the context of the steps before it (an operand is grounded by
  the question or any earlier result).

It costs no model requests, so it also suits the search's hot path on a CPU. What it cannot see:
the choice of operation (``+`` where the story needs ``-``) when every number is grounded and
every computation right; that is what a learned critic that reads the story is for (``checked``
and ``trained`` critics).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import get_args

from agent.critics.arithmetic import check_claims, parse_numeral
from agent.critics.base import CriticRole, CriticScore
from agent.errors import ConfigError
from agent.tasks.answers import extract_answer, parse_number

__all__ = [
    "FEATURES",
    "FeatureVerifier",
    "VerifierWeights",
    "features",
    "load_weights",
    "numbers_in",
]

FEATURES: tuple[str, ...] = (
    "claims",  # arithmetic claims stated (capped at 4, / 4)
    "no_claim",  # 1 when nothing is computed
    "wrong_claim",  # 1 when a stated computation is wrong
    "ungrounded",  # operands that are neither in the question nor an earlier result (capped at 3, / 3)
    "unused",  # share of the question's numbers never used in a computation
    "dropped",  # share of intermediate results never used again (the last result is the answer)
    "answered",  # 1 when a final answer is stated
    "answer_follows",  # 1 when the final answer is the result of the last computation
    "answer_elsewhere",  # 1 when the final answer is stated but is not any computed result
    "answer_from_question",  # 1 when the final answer is one of the question's numbers
    "answer_not_whole",  # 1 when the final answer is negative or not a whole number
    "repeated",  # 1 when a step repeats an earlier one word for word
    "steps",  # number of steps (capped at 6, / 6)
    "cue_mul_missing",  # the question asks for a product ("each", "per", "twice") and none is computed
    "cue_div_missing",  # ... for a quotient ("equally", "groups of", "half") and none is computed
    "cue_sub_missing",  # ... for a difference ("left", "more than", "change") and none is computed
    "uncued_ops",  # share of the operations used that nothing in the question asks for
)

# Phrases of grade-school questions that ask for an operation (English; checked in lower case).
_CUES: dict[str, re.Pattern[str]] = {
    "*": re.compile(r"\b(?:each|per|every|times as|twice|double|triple|dozens?|a week|a day|an hour)\b"),
    "/": re.compile(r"\b(?:equally|evenly|split|shares?|divided?|groups? of|boxes of|bags of|half|per)\b"),
    "-": re.compile(
        r"\b(?:left|remain\w*|more than|fewer|less than|change|gives? away|gave away|sold|sells|spent|spends|"
        r"ate|eats|lost|loses|pop\w*|broke|older than|younger than|difference|how much more|how many more|"
        r"empty|keeps?)\b"
    ),
    "+": re.compile(r"\b(?:total|together|in all|altogether|combined|and|both|more|plus|sum)\b"),
}
_OPERATION = {"*": "*", "x": "*", "X": "*", "×": "*", "·": "*", "⋅": "*", "/": "/", "÷": "/", "+": "+"}
_OPERATION |= {"-": "-", "−": "-", "–": "-"}
_OP_IN_CLAIM = re.compile(r"(?<=[\d\s$])([-+*/xX×÷·⋅−–])(?=[\s$\d.])")
# Up to four words between a number and the operator or "=" that follows it ("5 cakes * 4 cups = 20").
_UNIT_WORDS = re.compile(r"(\d)[ \t]+(?:[A-Za-z][A-Za-z'-]*[ \t]+){1,4}(?=(?:[*×/+]|-(?!\w)|x[ \t]|=))")

# Numbers a solution may use without the question stating them: unit conversions and "twice", "half".
_CONSTANTS = frozenset(Fraction(n) for n in (1, 2, 3, 4, 7, 10, 12, 24, 52, 60, 100, 365, 1000))
_WORD_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "dozen": 12, "twice": 2, "double": 2, "half": 2, "triple": 3, "thrice": 3,
    "quarter": 4,
}  # fmt: skip
_NUMERAL_RE = re.compile(r"(?<![\w.])\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<pct>%)?")
_WORD_RE = re.compile(r"[A-Za-z]+")


def numbers_in(text: str) -> list[Fraction]:
    """The numbers written in ``text`` as numerals, in order ("$1,250" → 1250, "20%" → 20)."""
    return [parse_numeral(m.group(0).rstrip("%")) for m in _NUMERAL_RE.finditer(text)]


def _question_numbers(question: str) -> set[Fraction]:
    found = set(numbers_in(question))
    found |= {value / 100 for value in list(found) if f"{value}%" in question.replace(" ", "")}
    words = (word.lower() for word in _WORD_RE.findall(question))
    found |= {Fraction(_WORD_NUMBERS[word]) for word in words if word in _WORD_NUMBERS}
    return found


def features(question: str, steps: Sequence[str], *, last_step_only: bool = False) -> dict[str, float]:
    """The structural features of the state (question, steps), each in [0, 1].

    With ``last_step_only`` the claims, operands and answer are those of the last step (the PRM's
    view); earlier steps still ground its operands, and ``unused``/``dropped`` stay whole-state.
    """
    given = _question_numbers(question)
    known = set(given) | _CONSTANTS
    used: set[Fraction] = set()
    results: list[Fraction] = []
    claims = wrong = ungrounded = 0
    operations: set[str] = set()
    seen_lines: set[str] = set()
    repeated = False
    answer: Fraction | None = None
    answered = False
    last = len(steps) - 1
    for i, step in enumerate(steps):
        judged = not last_step_only or i == last
        line = " ".join(step.split()).lower()
        repeated = repeated or (judged and line in seen_lines)
        seen_lines.add(line)
        for claim in check_claims(_UNIT_WORDS.sub(r"\1 ", step)):
            operands = numbers_in(claim.text)[:-1]
            if judged:
                operations.update(_OPERATION[op] for op in _OP_IN_CLAIM.findall(claim.text.split("=")[0]))
                claims += 1
                wrong += not claim.ok
                ungrounded += sum(1 for x in operands if x not in known and -x not in known)
            used.update(abs(x) for x in operands)
            known.add(claim.stated)
            results.append(claim.stated)
        stated = extract_answer(step) if "answer" in step.lower() else None
        if stated is not None and judged:
            answered = True
            answer = parse_number(stated)
    computed = set(results)
    dropped = [r for r in results[:-1] if r not in used]
    whole_question = set(numbers_in(question))  # the numerals, not the number words
    unused = [x for x in whole_question if x not in used and x not in computed]
    f = {
        "claims": min(claims, 4) / 4,
        "no_claim": float(claims == 0),
        "wrong_claim": float(wrong > 0),
        "ungrounded": min(ungrounded, 3) / 3,
        "unused": len(unused) / max(1, len(whole_question)),
        "dropped": len(dropped) / max(1, len(results) - 1) if len(results) > 1 else 0.0,
        "answered": float(answered),
        "answer_follows": float(answer is not None and bool(results) and answer == results[-1]),
        "answer_elsewhere": float(answered and (answer is None or answer not in computed)),
        "answer_from_question": float(answer is not None and answer in whole_question),
        "answer_not_whole": float(answer is not None and (answer < 0 or answer.denominator != 1)),
        "repeated": float(repeated),
        "steps": min(len(steps), 6) / 6,
    }
    asked = {op for op, cue in _CUES.items() if cue.search(question.lower())}
    for op, name in (("*", "cue_mul_missing"), ("/", "cue_div_missing"), ("-", "cue_sub_missing")):
        f[name] = float(op in asked and op not in operations and not last_step_only)
    f["uncued_ops"] = len(operations - asked) / len(operations) if operations else 0.0
    return f


@dataclass(frozen=True, slots=True)
class VerifierWeights:
    """A logistic model per role: ``p = sigmoid(bias + sum_f weight_f * feature_f)``."""

    bias: Mapping[CriticRole, float]
    weights: Mapping[CriticRole, Mapping[str, float]]
    source: str = ""

    def __post_init__(self) -> None:
        for role, table in self.weights.items():
            if role not in get_args(CriticRole):
                raise ConfigError(f"verifier weights name an unknown role {role!r}; roles: value, prm, orm")
            unknown = set(table) - set(FEATURES)
            if unknown:
                raise ConfigError(
                    f"verifier weights for {role} name unknown features {sorted(unknown)} ({self.source}); "
                    f"known: {', '.join(FEATURES)}"
                )
            if role not in self.bias:
                raise ConfigError(f"verifier weights for {role} have no bias ({self.source})")
            if not all(math.isfinite(w) for w in (*table.values(), self.bias[role])):
                raise ConfigError(f"verifier weights for {role} must be finite numbers ({self.source})")

    @property
    def roles(self) -> tuple[CriticRole, ...]:
        return tuple(role for role in get_args(CriticRole) if role in self.weights)

    def to_json(self) -> dict[str, object]:
        return {
            "features": list(FEATURES),
            "roles": {r: {"bias": self.bias[r], "weights": dict(self.weights[r])} for r in self.roles},
        }


def load_weights(path: str | Path) -> VerifierWeights:
    """Weights written by ``python -m finetune.verifier`` (``verifier.json``); a clear error otherwise.

    Read once per file version (path, modification time and size): the solvers build their critics
    for every problem, and the file does not change between them.
    """
    path = Path(path)
    try:
        stat = path.stat()
        return _load(path, stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no verifier weights at {path}: write them with python -m finetune.verifier --out DIR"
        ) from exc


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> VerifierWeights:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        roles = data["roles"]
        return VerifierWeights(
            bias={role: float(spec["bias"]) for role, spec in roles.items()},
            weights={role: {k: float(v) for k, v in spec["weights"].items()} for role, spec in roles.items()},
            source=str(path),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not a verifier weights file ({exc}): expected "
            '{"roles": {"orm": {"bias": B, "weights": {FEATURE: W, ...}}, ...}}'
        ) from exc


class FeatureVerifier:
    """Scores a state by the logistic model of its role over ``features``; no model requests."""

    def __init__(self, weights: VerifierWeights, role: CriticRole) -> None:
        if role not in weights.roles:
            raise ConfigError(f"the verifier weights ({weights.source}) have no {role} model")
        self.role: CriticRole = role
        self.name = f"verifier-{role}"
        self._bias = weights.bias[role]
        self._weights = dict(weights.weights[role])

    def probability(self, question: str, steps: Sequence[str]) -> float:
        f = features(question, steps, last_step_only=self.role == "prm")
        z = self._bias + sum(w * f[name] for name, w in self._weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    async def score(self, question: str, steps: Sequence[str]) -> CriticScore:
        return CriticScore(self.probability(question, steps))
