"""The `tts-opt tasks` commands."""

from __future__ import annotations

from pathlib import Path

import typer
from tasks_fixtures import datasets  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from tts_opt.cli.tasks_commands import tasks_app

app = typer.Typer()
app.add_typer(tasks_app, name="tasks")
runner = CliRunner()


def test_pull_is_idempotent(datasets: dict[str, Path]) -> None:  # noqa: F811
    result = runner.invoke(app, ["tasks", "pull", "gsm8k"])
    assert result.exit_code == 0, result.output
    assert f"ready gsm8k: {datasets['gsm8k']}" in result.output


def test_list_shows_split_sizes(datasets: dict[str, Path]) -> None:  # noqa: F811
    result = runner.invoke(app, ["tasks", "list"])
    assert result.exit_code == 0, result.output
    assert "14042" in result.output and "1416" in result.output
    for name in ("math", "gsm8k", "mmlu", "humaneval"):
        assert name in result.output


def test_show_prints_questions_of_a_split(datasets: dict[str, Path]) -> None:  # noqa: F811
    result = runner.invoke(app, ["tasks", "show", "math", "--split", "val", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "500 questions, val 107 / test 393" in result.output
    assert "test/precalculus/1133" in result.output
    assert result.output.count("reference:") == 2


def test_show_unknown_task_fails_with_the_known_ones() -> None:
    result = runner.invoke(app, ["tasks", "show", "nope"])
    assert result.exit_code == 1
    assert "known tasks: gsm8k, humaneval, math, mmlu" in result.output
