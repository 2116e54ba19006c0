"""Prompt formats: how a task's instruction, worked examples and question become one prompt string.

Prompts are rendered client-side, as raw text for ``/completions``-style routes, so that a search can
append reasoning steps to the assistant turn and every child prompt starts with its parent's bytes
(the server's prefix cache depends on that). The layout is fixed: instruction, worked examples,
question, then the solution so far. Nothing that varies per request comes early.

Formats: ``chatml`` (SmolLM2, Qwen), ``llama3``, ``gemma`` (no system role: the instruction goes in the
first user turn) and ``plain`` (Question/Answer few-shot text for base models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.errors import ConfigError

__all__ = ["FORMATS", "PromptFormat", "get_format"]

Turns = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class PromptFormat:
    """Renders (instruction, examples, question) as the text that precedes the model's solution."""

    name: str
    stop: tuple[str, ...]
    _render: Callable[[str, Turns, str], str]

    def render(self, *, instruction: str, examples: Turns, question: str, partial: str = "") -> str:
        """The prompt; ``partial`` is the solution written so far (empty for a fresh start)."""
        return self._render(instruction, examples, question) + partial


def _chatml(instruction: str, examples: Turns, question: str) -> str:
    parts = [f"<|im_start|>system\n{instruction}<|im_end|>\n"]
    for q, a in examples:
        parts.append(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n")
    parts.append(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    return "".join(parts)


def _llama3(instruction: str, examples: Turns, question: str) -> str:
    def turn(role: str, text: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"

    parts = ["<|begin_of_text|>", turn("system", instruction)]
    for q, a in examples:
        parts += [turn("user", q), turn("assistant", a)]
    parts += [turn("user", question), "<|start_header_id|>assistant<|end_header_id|>\n\n"]
    return "".join(parts)


def _gemma(instruction: str, examples: Turns, question: str) -> str:
    def turn(role: str, text: str) -> str:
        return f"<start_of_turn>{role}\n{text}<end_of_turn>\n"

    questions = [q for q, _ in examples] + [question]
    questions[0] = f"{instruction}\n\n{questions[0]}"
    parts = ["<bos>"]
    for q, (_, a) in zip(questions, examples, strict=False):
        parts += [turn("user", q), turn("model", a)]
    parts += [turn("user", questions[-1]), "<start_of_turn>model\n"]
    return "".join(parts)


def _plain(instruction: str, examples: Turns, question: str) -> str:
    parts = [f"{instruction}\n\n"]
    for q, a in examples:
        parts.append(f"Question: {q}\nAnswer:\n{a}\n\n")
    parts.append(f"Question: {question}\nAnswer:\n")
    return "".join(parts)


FORMATS: dict[str, PromptFormat] = {
    "chatml": PromptFormat("chatml", ("<|im_end|>", "<|im_start|>"), _chatml),
    "llama3": PromptFormat("llama3", ("<|eot_id|>", "<|start_header_id|>"), _llama3),
    "gemma": PromptFormat("gemma", ("<end_of_turn>", "<start_of_turn>"), _gemma),
    "plain": PromptFormat("plain", ("\n\nQuestion:", "\nQuestion:"), _plain),
}


def get_format(name: str) -> PromptFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown prompt format {name!r}; choose one of {', '.join(FORMATS)}") from None
