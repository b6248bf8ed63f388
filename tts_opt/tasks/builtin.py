"""The built-in tasks: MATH-500, GSM8K, MMLU and HumanEval, read from the pinned data files."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tts_opt.tasks import templates
from tts_opt.tasks.datasets import dataset_path, get_dataset
from tts_opt.tasks.extract import LETTERS
from tts_opt.tasks.jsonl import read_jsonl
from tts_opt.tasks.schema import Question
from tts_opt.tasks.scorers import ChoiceScorer, CodeScorer, MathScorer, NumericScorer, Scorer
from tts_opt.tasks.task import Task


def load_math(path: Path) -> list[Question]:
    return [
        Question(
            id=row["unique_id"].removesuffix(".json"),
            prompt=row["problem"],
            answer=row["answer"],
            solution=row["solution"],
            subject=row["subject"],
            metadata={"level": row["level"]},
        )
        for _, row in read_jsonl(path)
    ]


def load_gsm8k(path: Path) -> list[Question]:
    questions = []
    for _, row in read_jsonl(path):
        reasoning, _, answer = row["answer"].rpartition("####")
        answer = answer.strip().replace(",", "")
        # Drop the calculator annotations ("<<48/2=24>>") that only the dataset's authors need.
        reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()
        questions.append(
            Question(
                id=f"gsm8k/{row['idx']}",
                prompt=row["question"],
                answer=answer,
                solution=f"{reasoning}\nThe answer is {answer}",
            )
        )
    return questions


def load_mmlu(path: Path) -> list[Question]:
    """All MMLU test questions. The file holds two stray CSV header rows ("question",
    "answer_a", ...), which are skipped: 14,042 questions remain, as in MMLU."""
    questions = []
    per_subject: Counter[str] = Counter()
    for _, row in read_jsonl(path):
        if row["correct_answer"] not in LETTERS[:4]:
            continue
        choices = tuple(row[f"answer_{letter}"] for letter in "abcd")
        subject = row["topic"]
        questions.append(
            Question(
                id=f"mmlu/{subject.replace(' ', '_')}/{per_subject[subject]}",
                prompt=templates.multiple_choice_prompt(row["question"], choices),
                answer=row["correct_answer"],
                choices=choices,
                subject=subject,
            )
        )
        per_subject[subject] += 1
    return questions


def load_humaneval(path: Path) -> list[Question]:
    return [
        Question(
            id=row["task_id"],
            prompt=f"Complete the following Python function:\n\n```python\n{row['prompt']}```",
            solution=row["prompt"] + row["canonical_solution"],
            tests=row["test"],
            entry_point=row["entry_point"],
            code_prefix=row["prompt"],
        )
        for _, row in read_jsonl(path)
    ]


@dataclass(frozen=True)
class BuiltinTask:
    """How to build a built-in task from its dataset (which has the task's name)."""

    name: str
    load: Callable[[Path], list[Question]]
    instruction: str
    scorer: Callable[[], Scorer]
    val_fraction: float

    @property
    def description(self) -> str:
        return get_dataset(self.name).description

    def build(self) -> Task:
        return Task(
            name=self.name,
            questions=tuple(self.load(dataset_path(self.name))),
            templates=templates.role_templates(self.instruction),
            scorer=self.scorer(),
            val_fraction=self.val_fraction,
            description=self.description,
            data_sha256=get_dataset(self.name).sha256,
        )


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    b.name: b
    for b in (
        BuiltinTask("math", load_math, templates.BOXED, MathScorer, 0.2),
        BuiltinTask("gsm8k", load_gsm8k, templates.NUMBER, NumericScorer, 0.2),
        BuiltinTask("mmlu", load_mmlu, templates.LETTER, ChoiceScorer, 0.1),
        BuiltinTask("humaneval", load_humaneval, templates.CODE, CodeScorer, 0.3),
    )
}
