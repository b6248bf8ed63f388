"""User tasks without code: a JSONL file of questions plus a small spec (TOML or JSON) that names
its fields and declares the scorer.

    name = "capitals"
    data = "capitals.jsonl"          # relative to the spec file
    scorer = "exact"                 # exact | numeric | regex | multiple_choice | python_tests
    question_field = "question"
    answer_field = "answer"

Per scorer: `regex` needs `pattern` (the answer is its last match: group `answer`, else group 1,
else the whole match); `multiple_choice` reads a list of options from `choices_field` and accepts
the answer as a letter, a 0-based index or the option's text; `python_tests` reads the test code
from `tests_field` (defining `check(candidate)` when `entry_point_field` is present, else plain
asserts) and optional code put before the candidate from `code_prefix_field`. Templates default to
the scorer's answer format; `instruction` replaces that format sentence, `[templates]` overrides
single role prompts.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from tts_opt.tasks import templates
from tts_opt.tasks.errors import TaskError
from tts_opt.tasks.extract import LETTERS
from tts_opt.tasks.jsonl import read_jsonl
from tts_opt.tasks.schema import Question
from tts_opt.tasks.scorers import (
    ChoiceScorer,
    CodeScorer,
    ExactScorer,
    NumericScorer,
    RegexScorer,
    Scorer,
)
from tts_opt.tasks.task import Task

ScorerKind = Literal["exact", "numeric", "regex", "multiple_choice", "python_tests"]

_INSTRUCTIONS: dict[str, str] = {
    "exact": templates.TEXT,
    "regex": templates.TEXT,
    "numeric": templates.NUMBER,
    "multiple_choice": templates.LETTER,
    "python_tests": templates.CODE,
}


class TaskSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The declaration of a custom task (see the module docstring)."""

    name: str
    data: str
    scorer: ScorerKind
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str | None = None
    solution_field: str | None = None
    subject_field: str | None = None
    choices_field: str = "choices"
    tests_field: str = "test"
    entry_point_field: str = "entry_point"
    code_prefix_field: str | None = None
    pattern: str | None = None
    instruction: str | None = None
    templates: dict[str, str] = {}
    val_fraction: float = 0.2
    split_seed: int = 0
    description: str = ""


def load_task_spec(path: Path) -> Task:
    """The task declared by the TOML or JSON spec at `path`."""
    spec = _decode_spec(path)
    data = (path.parent / spec.data).resolve()
    scorer = _scorer(spec, path)
    instruction = spec.instruction or _INSTRUCTIONS[spec.scorer]
    try:
        role_templates = msgspec.structs.replace(
            templates.role_templates(instruction), **spec.templates
        )
    except TypeError as exc:
        raise TaskError(f"{path}: bad [templates]: {exc}") from exc
    questions = tuple(_question(spec, data, line, row) for line, row in read_jsonl(data))
    if not questions:
        raise TaskError(f"{data}: no questions")
    return Task(
        name=spec.name,
        questions=questions,
        templates=role_templates,
        scorer=scorer,
        val_fraction=spec.val_fraction,
        description=spec.description or f"custom task from {data}",
        split_seed=spec.split_seed,
        data_sha256=hashlib.sha256(data.read_bytes()).hexdigest(),
    )


def _decode_spec(path: Path) -> TaskSpec:
    try:
        raw = path.read_bytes()
        if path.suffix == ".toml":
            return msgspec.convert(tomllib.loads(raw.decode()), TaskSpec)
        return msgspec.json.decode(raw, type=TaskSpec)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, msgspec.MsgspecError) as exc:
        raise TaskError(f"bad task spec {path}: {exc}") from exc


def _scorer(spec: TaskSpec, path: Path) -> Scorer:
    if spec.scorer == "regex":
        if not spec.pattern:
            raise TaskError(f"{path}: the regex scorer needs `pattern`")
        try:
            return RegexScorer(spec.pattern)
        except re.error as exc:
            raise TaskError(f"{path}: bad pattern {spec.pattern!r}: {exc}") from exc
    scorers: dict[str, type[Scorer]] = {
        "exact": ExactScorer,
        "numeric": NumericScorer,
        "multiple_choice": ChoiceScorer,
        "python_tests": CodeScorer,
    }
    return scorers[spec.scorer]()


def _question(spec: TaskSpec, data: Path, line: int, row: dict[str, Any]) -> Question:
    def get(field: str, kind: type | tuple[type, ...] = str, default: Any = None) -> Any:
        if field not in row:
            if default is not None:
                return default
            raise TaskError(f"{data}:{line}: no field {field!r}")
        value = row[field]
        if not isinstance(value, kind):
            raise TaskError(f"{data}:{line}: field {field!r} has a bad type: {value!r}")
        return value

    scalar = (str, int, float)
    question = get(spec.question_field)
    fields: dict[str, Any] = {
        "id": str(get(spec.id_field, scalar)) if spec.id_field else f"{spec.name}/{line}",
        "prompt": question,
        "solution": str(get(spec.solution_field, scalar)) if spec.solution_field else "",
        "subject": str(get(spec.subject_field, scalar)) if spec.subject_field else "",
    }
    if spec.scorer == "python_tests":
        fields["tests"] = get(spec.tests_field)
        fields["entry_point"] = get(spec.entry_point_field, default="")
        if spec.code_prefix_field:
            fields["code_prefix"] = get(spec.code_prefix_field)
        fields["solution"] = fields["solution"] or str(get(spec.answer_field, scalar, ""))
    elif spec.scorer == "multiple_choice":
        choices = get(spec.choices_field, list)
        if not 2 <= len(choices) <= len(LETTERS) or not all(isinstance(c, str) for c in choices):
            raise TaskError(
                f"{data}:{line}: {spec.choices_field!r} must be 2 to {len(LETTERS)} strings"
            )
        fields["choices"] = tuple(choices)
        fields["prompt"] = templates.multiple_choice_prompt(question, choices)
        fields["answer"] = _choice_letter(get(spec.answer_field, scalar), choices, data, line)
    else:
        fields["answer"] = str(get(spec.answer_field, scalar))
    return Question(**fields)


def _choice_letter(answer: str | int | float, choices: list[str], data: Path, line: int) -> str:
    """A multiple-choice answer given as letter, 0-based index or option text -> its letter."""
    letters = LETTERS[: len(choices)]
    if isinstance(answer, int) and 0 <= answer < len(choices):
        return letters[answer]
    if isinstance(answer, str):
        if answer.strip().upper() in letters and len(answer.strip()) == 1:
            return answer.strip().upper()
        if answer in choices:
            return letters[choices.index(answer)]
    raise TaskError(
        f"{data}:{line}: answer {answer!r} is neither a letter in {letters}, "
        "an index nor one of the choices"
    )
