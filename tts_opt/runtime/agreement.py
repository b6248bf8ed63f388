"""Early exit on agreement (Early-Stopping Self-Consistency, Adaptive-Consistency): the sink's
inputs vote with the answers extracted from their outputs as they finish, and once `quorum` of
them agree the fuser has nothing left to decide.

Answers are compared in a canonical form, so that only what the task's scorer would also count
as the same answer agrees: numbers by value ("$1,234.50" = "1234.5"), option letters, boxed math
without whitespace, free text up to case, markdown and a final period. An output without an
answer does not vote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from tts_opt.engines.base import Sample
from tts_opt.graph.schema import AnswerExtractor, EarlyExit
from tts_opt.tasks.extract import (
    extract_choice,
    extract_number,
    final_line_answer,
    last_boxed,
    normalize_text,
    parse_number,
    regex_answer,
)


def answer_key(extractor: AnswerExtractor, text: str) -> str | None:
    """The answer in `text` in a form where equal means the same answer; None when it has none."""
    found: str | None
    match extractor.kind:
        case "numeric":
            number = extract_number(text)
            value = None if number is None else parse_number(number)
            return None if value is None else str(value)
        case "choice":
            # The option texts are the question's, unknown here: only a letter counts.
            return extract_choice(text, ("",) * extractor.options)
        case "math":
            found = last_boxed(text)
            key = None if found is None else "".join(found.split())
        case "exact":
            found = final_line_answer(text)
            key = None if found is None else normalize_text(found)
        case "regex":
            found = regex_answer(text, re.compile(extractor.pattern))
            key = None if found is None else normalize_text(found)
    return key or None


class Agreement(msgspec.Struct, frozen=True):
    """`nodes` (in the order they finished) gave `answer`; `sample` is the first one's output."""

    answer: str
    nodes: tuple[str, ...]
    sample: Sample


class Votes:
    """The extracted answers of the sink's inputs that have finished, in finishing order."""

    def __init__(self, rule: EarlyExit, inputs: Iterable[str]) -> None:
        self.rule = rule
        self.inputs = frozenset(inputs)
        self._votes: dict[str, tuple[str, Sample]] = {}

    def withdraw(self, nodes: Iterable[str]) -> None:
        """Forget the votes of `nodes` (their call is retried or failed)."""
        for node in nodes:
            self._votes.pop(node, None)

    def add(self, node: str, sample: Sample) -> Agreement | None:
        """Count input `node`'s finished `sample`; the agreement once a quorum holds."""
        if node not in self.inputs:
            return None
        self._votes.pop(node, None)
        key = answer_key(self.rule.answer, sample.text)
        if key is None:
            return None
        self._votes[node] = (key, sample)
        agreeing = [(n, s) for n, (k, s) in self._votes.items() if k == key]
        if len(agreeing) < self.rule.quorum:
            return None
        return Agreement(key, tuple(n for n, _ in agreeing), agreeing[0][1])
