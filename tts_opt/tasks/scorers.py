"""Scorers: decide whether a model's output answers a question correctly.

Every scorer has the same async interface (code runs in a sandbox process, so scoring may wait);
the answer scorers share one shape: extract the final answer, then compare it with the reference
in the task's own notion of equality (mathematical equivalence, numeric value, option letter,
normalized text).
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import ClassVar, Protocol

from tts_opt.tasks.code import run_tests
from tts_opt.tasks.extract import (
    extract_choice,
    extract_code,
    extract_number,
    final_line_answer,
    last_boxed,
    normalize_text,
    parse_number,
    regex_answer,
)
from tts_opt.tasks.sandbox import DEFAULT_LIMITS, SandboxLimits
from tts_opt.tasks.schema import Question, Score

NO_ANSWER = "no answer found"


class Scorer(Protocol):
    kind: ClassVar[str]

    def extract(self, output: str, question: Question) -> str | None:
        """The final answer in `output`, as the scorer reads it (None: none found)."""
        ...

    async def score(self, output: str, question: Question) -> Score: ...


class AnswerScorer(ABC):
    """Extract the final answer, then compare it with the reference."""

    kind: ClassVar[str]

    @abstractmethod
    def extract(self, output: str, question: Question) -> str | None: ...

    @abstractmethod
    def matches(self, extracted: str, question: Question) -> bool: ...

    async def score(self, output: str, question: Question) -> Score:
        extracted = self.extract(output, question)
        if extracted is None:
            return Score(correct=False, extracted=None, reason=NO_ANSWER)
        correct = self.matches(extracted, question)
        return Score(correct, extracted, "" if correct else f"expected {question.answer}")


class MathScorer(AnswerScorer):
    """MATH: the last \\boxed{} answer (else math-verify's own extraction of the final
    expression), compared for mathematical equivalence with math-verify: 1/2 = 0.5 = \\frac12,
    intervals, sets, tuples, units and text answers."""

    kind = "math"

    def extract(self, output: str, question: Question) -> str | None:
        boxed = last_boxed(output)
        if boxed is not None:
            return boxed
        parsed = _math_parse(output)
        return parsed[1] if len(parsed) > 1 else None

    def matches(self, extracted: str, question: Question) -> bool:
        from math_verify import verify

        gold = _math_parse(f"\\boxed{{{question.answer}}}")
        answer = _math_parse(f"\\boxed{{{extracted}}}")
        return bool(gold and answer) and verify(gold, answer, timeout_seconds=_timeout())


@lru_cache(maxsize=4096)
def _math_parse(text: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        text,
        extraction_config=(LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()),
        parsing_timeout=_timeout(),
    )


def _timeout() -> int | None:
    """math-verify times out with SIGALRM, which only works on the main thread; elsewhere it
    must run without (it refuses otherwise)."""
    return 5 if threading.current_thread() is threading.main_thread() else None


class NumericScorer(AnswerScorer):
    """GSM8K and numeric answers: "The answer is N" / "####" / \\boxed{} / the last number,
    with $, thousands commas and units ignored, compared as exact values (18 = 18.00)."""

    kind = "numeric"

    def extract(self, output: str, question: Question) -> str | None:
        return extract_number(output)

    def matches(self, extracted: str, question: Question) -> bool:
        value, reference = parse_number(extracted), parse_number(question.answer)
        return value is not None and value == reference


class ChoiceScorer(AnswerScorer):
    """Multiple choice: the option letter, from the common ways models state it."""

    kind = "multiple_choice"

    def extract(self, output: str, question: Question) -> str | None:
        return extract_choice(output, question.choices)

    def matches(self, extracted: str, question: Question) -> bool:
        return extracted == question.answer


class ExactScorer(AnswerScorer):
    """Free text: the answer after the last "Answer:" (else the last line) equals the reference
    up to case, whitespace, quotes, markdown and a final period."""

    kind = "exact"

    def extract(self, output: str, question: Question) -> str | None:
        return final_line_answer(output)

    def matches(self, extracted: str, question: Question) -> bool:
        return normalize_text(extracted) == normalize_text(question.answer)


class RegexScorer(ExactScorer):
    """Free text found by a regular expression: its last match in the output (the group named
    `answer`, else group 1, else the whole match), compared like `ExactScorer`."""

    kind = "regex"

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def extract(self, output: str, question: Question) -> str | None:
        return regex_answer(output, self.pattern)


class CodeScorer:
    """Python code: the program in the output runs with the question's whole test in the
    sandbox; correct iff every test passes (pass@1 for one sample)."""

    kind: ClassVar[str] = "python_tests"

    def __init__(self, limits: SandboxLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    def extract(self, output: str, question: Question) -> str | None:
        code = extract_code(output, question.entry_point)
        return code if code.strip() else None

    async def score(self, output: str, question: Question) -> Score:
        code = self.extract(output, question)
        if code is None:
            return Score(correct=False, extracted=None, reason=NO_ANSWER)
        result = await run_tests(code, question, self.limits)
        reason = "" if result.passed else f"{result.outcome}: {result.reason}"
        return Score(result.passed, code, reason)
