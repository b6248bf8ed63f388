"""The boundary types of the tasks package: a question and the verdict on one answer to it."""

from __future__ import annotations

from typing import Literal

import msgspec

Split = Literal["val", "test"]
SPLITS: tuple[Split, ...] = ("val", "test")


class Question(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One benchmark item.

    `prompt` is the text a graph is asked (it fills the templates' `{question}`); `answer` is the
    reference the scorer compares with (MATH: LaTeX, GSM8K: a number, multiple choice: the letter;
    code tasks have none and are scored by `tests`). `solution` is a reference worked solution
    where the data has one: it measures typical answer lengths and can serve as a few-shot example.
    For code tasks the candidate program is `code_prefix` (HumanEval: signature and docstring,
    so imports and helper functions exist), the candidate's code, then `tests`, then
    `check(<entry_point>)` when an entry point is named.
    """

    id: str
    prompt: str
    answer: str = ""
    solution: str = ""
    choices: tuple[str, ...] = ()
    tests: str = ""
    entry_point: str = ""
    code_prefix: str = ""
    subject: str = ""
    metadata: dict[str, str | int | float] = {}


class Score(msgspec.Struct, frozen=True):
    """The verdict on one output: `extracted` is the answer found in it (None: none found);
    `reason` says why it is wrong (or why code failed: error, timeout, memory)."""

    correct: bool
    extracted: str | None
    reason: str = ""
