"""Readers for the shipped deployment files (deploy/): YAML documents, Dockerfiles, PromQL, and the
`tts-opt` command lines they run, so that tests check the files as the tools would read them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from typer.testing import CliRunner

from tts_opt.cli.app import app

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tts-opt.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# PromQL words that are not metric names: aggregations, functions (followed by "("), keywords.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
_KEYWORDS |= {"bool", "offset", "inf", "nan"}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def promtool() -> str:
    """The promtool binary; its absence fails the test (CI installs it: `make system-deps`)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: install Debian's prometheus package (make system-deps)"
    return binary


def run_promtool(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, numbers and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in _KEYWORDS}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query of a Grafana dashboard: panel targets, and the metric that each
    `label_values(metric, label)` variable reads."""
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    queries = [t["expr"] for p in panels for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert match, f"variable {variable['name']}: not a label_values() query"
            queries.append(match[1])
    return queries


def alert_expressions() -> Iterator[tuple[str, str]]:
    """(record or alert name, expression) of every rule in alerts.yml."""
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("record") or rule["alert"], rule["expr"]


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in logical.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def instruction(steps: list[tuple[str, str]], name: str) -> list[str]:
    """The arguments of every `name` instruction, in order."""
    return [arguments for step, arguments in steps if step == name]


def image_environment(path: Path) -> dict[str, str]:
    """The ENV variables a Dockerfile sets."""
    lines = instruction(dockerfile(path), "ENV")
    return dict(item.split("=", 1) for line in lines for item in shlex.split(line))


def serve_arguments(argv: list[str]) -> dict[str, Any]:
    """Run the `tts-opt` CLI on `argv` as a container would, with the server itself replaced:
    the arguments `serve()` received (the options exist and parse)."""
    with mock.patch("tts_opt.cli.serve_command.serve") as serve:
        result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, f"tts-opt {shlex.join(argv)}: {result.output}"
    [call] = serve.call_args_list
    graphs, config = call.args
    return {"graphs": graphs, "config": config, **call.kwargs}
