"""`tts-opt eval` end to end on scripted engines (the engine pool is replaced by test doubles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from evaluation_support import LARGE, SMALL, SeededEngine, arithmetic_task
from typer.testing import CliRunner

from tts_opt.cli.errors import CommandLineGroup
from tts_opt.cli.eval_command import eval_command
from tts_opt.engines.pool import EnginePool
from tts_opt.evaluation import load_report
from tts_opt.graph import load_artifact
from tts_opt.server.profiles import profile_name

app = typer.Typer(cls=CommandLineGroup)
app.command("eval")(eval_command)
app.command("noop")(lambda: None)  # two commands: `eval` stays a subcommand, as when mounted
runner = CliRunner()


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    async def start(self: EnginePool, models, on_start=None):
        self.engines = {m: SeededEngine(m) for m in models}
        return self.engines

    monkeypatch.setattr(EnginePool, "start", start)
    arithmetic_task(tmp_path)
    return str(tmp_path / "sums.toml")


def invoke(*args: str):
    return runner.invoke(app, ["eval", *args])


def test_two_graphs_share_engines_and_cache_and_write_one_report_each(
    spec: str, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    wide = f"parallel:{SMALL.name}*3:{LARGE.name}"
    result = invoke(
        "--graph", f"single:{SMALL.name}", "--graph", wide, "--task", spec, "--split", "test",
        "--out", str(out), "--cache-path", str(tmp_path / "c.sqlite3"), "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    single = load_report(out / f"single_{SMALL.name}.json")
    parallel = load_report(out / f"parallel_{SMALL.name}_3_{LARGE.name}.json")
    assert single.split == "test" and single.n == parallel.n > 0
    assert single.artifact.decoding.seed == 3
    assert parallel.cache.hits == single.n  # the single node's samples are reused
    assert "evaluation" in result.output and f"single:{SMALL.name}" in result.output


def test_one_graph_to_a_json_file_without_cache(spec: str, tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    result = invoke("-g", f"chain:{SMALL.name}*2", "--task", spec, "--no-cache", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = load_report(out)
    assert not report.cache.enabled and len(report.artifact.nodes) == 2


def test_artifacts_are_written_as_evaluated_with_their_measurements(
    spec: str, tmp_path: Path
) -> None:
    folder = tmp_path / "graphs"
    wide = f"parallel:{SMALL.name}*2:{LARGE.name}"
    result = invoke(
        "-g", f"single:{SMALL.name}", "-g", wide, "--task", spec, "--max-tokens", "64",
        "--out", str(tmp_path / "reports"), "--artifacts", str(folder), "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    single = load_report(tmp_path / "reports" / f"single_{SMALL.name}.json")
    saved = sorted(folder.glob("*.json"))
    assert len(saved) == 2
    by_nodes = {len(a.nodes): a for a in map(load_artifact, saved)}
    one = by_nodes[1]
    assert one.accuracy == (single.accuracy,) and one.decoding.max_tokens == 64
    assert one.latency is not None and one.latency.n == single.n
    assert {p.stem for p in saved} == {profile_name(a) for a in by_nodes.values()}  # servable
    assert by_nodes[3].budget.value > one.budget.value  # a probe's budget is its own cost
    before = {p: p.read_bytes() for p in saved}
    again = invoke(
        "-g", f"single:{SMALL.name}", "--task", spec, "--out", str(tmp_path / "again"),
        "--artifacts", str(folder),
    )  # fmt: skip
    assert again.exit_code == 1 and "exists" in again.output, again.output
    assert {p: p.read_bytes() for p in saved} == before
    assert not (tmp_path / "again").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "parallel:x", "--task", "{spec}"], "bad probe"),
        (["-g", "single:nobody", "--task", "{spec}"], "no spec for model 'nobody'"),
        (["-g", "missing.json", "--task", "{spec}"], "missing.json"),
        (["-g", f"single:{SMALL.name}", "--task", "nosuchtask"], "known tasks"),
        (["-g", "single:a", "-g", "single:b", "--task", "{spec}", "--out", "x.json"], "one file"),
        (
            [
                "-g",
                f"single:{SMALL.name}",
                "-g",
                f"chain:{SMALL.name}",
                "--task",
                "{spec}",
                "--artifacts",
                "g",
            ],
            "would both be",
        ),
    ],
)
def test_bad_input_exits_1_naming_the_problem(spec: str, args: list[str], message: str) -> None:
    result = invoke(*(a.replace("{spec}", spec) for a in args))
    assert result.exit_code == 1 and message in result.output, result.output
