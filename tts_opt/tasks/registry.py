"""Look tasks up by name: a built-in (optionally narrowed to subjects), or a custom task spec."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from tts_opt.tasks.builtin import BUILTIN_TASKS
from tts_opt.tasks.custom import load_task_spec
from tts_opt.tasks.datasets import dataset_path
from tts_opt.tasks.errors import TaskError
from tts_opt.tasks.task import Task

SPEC_SUFFIXES = (".toml", ".json")


def task_names() -> list[str]:
    return sorted(BUILTIN_TASKS)


def get_task(name: str) -> Task:
    """The task called `name`.

    `name` is a built-in task (`math`, `gsm8k`, `mmlu`, `humaneval`), a built-in narrowed to
    some subjects (`mmlu:college_physics,astronomy`; `math:algebra`; underscores or spaces,
    any case), or the path of a custom task spec (`.toml` or `.json`).
    """
    if name.endswith(SPEC_SUFFIXES):
        return load_task_spec(Path(name))
    base, _, subjects = name.partition(":")
    if base not in BUILTIN_TASKS:
        raise TaskError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())} "
            f"(or the path of a task spec: {' or '.join(SPEC_SUFFIXES)})"
        )
    task = _builtin(base, dataset_path(base))
    return _with_subjects(task, subjects.split(",")) if subjects else task


@cache
def _builtin(name: str, data: Path) -> Task:
    """Tasks are immutable: build each once per data file."""
    return BUILTIN_TASKS[name].build()


def subjects(task: Task) -> list[str]:
    return sorted({q.subject for q in task.questions if q.subject})


def _with_subjects(task: Task, wanted: list[str]) -> Task:
    known = {_key(s): s for s in subjects(task)}
    if not known:
        raise TaskError(f"task {task.name!r} has no subjects to select")
    unknown = [w for w in wanted if _key(w) not in known]
    if unknown:
        listing = ", ".join(s.replace(" ", "_") for s in known.values())
        raise TaskError(f"unknown subject(s) {', '.join(unknown)} of {task.name}; known: {listing}")
    keep = {known[_key(w)] for w in wanted}
    slugs = ",".join(sorted(_key(s).replace(" ", "_") for s in keep))
    return replace(
        task,
        name=f"{task.name}:{slugs}",
        questions=tuple(q for q in task.questions if q.subject in keep),
    )


def _key(subject: str) -> str:
    return " ".join(subject.replace("_", " ").casefold().split())
