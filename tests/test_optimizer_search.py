"""Searches end to end on the synthetic scorer: every method, reproducibility, stopping rules,
best-not-last selection, the archive, kill-and-resume, and the CLI."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from optimizer_support import FreeChat, fast_settings, paper_space, synthetic_task
from typer.testing import CliRunner

from tts_opt.cli.errors import CommandLineGroup
from tts_opt.cli.optimize_command import compare_command, optimize_command
from tts_opt.graph import GraphArtifact, load_artifact, validate
from tts_opt.optimizer import (
    METHODS,
    ArchiveMismatch,
    Limits,
    Measurement,
    Objective,
    SearchResult,
    SyntheticScorer,
    optimize,
)
from tts_opt.optimizer.agents import LLMAgent, RuleBasedAgent
from tts_opt.optimizer.archive import Archive, RunHeader
from tts_opt.optimizer.runner import search_order
from tts_opt.tasks import Question

TASK = synthetic_task()
SPACE = paper_space(budget=18.0)
OFFLINE_METHODS = [m for m in METHODS if m != "textgrad"]


def search(
    path: Path, method: str = "agent-reinforce", scorer=None, agent=None, **kw
) -> SearchResult:
    settings = fast_settings(method, **kw)
    return asyncio.run(
        optimize(TASK, SPACE, settings, scorer or SyntheticScorer(), path, agent=agent)
    )


def trace(result: SearchResult) -> list[tuple]:
    return [(r.index, r.stage, r.candidate.key(), r.measurement) for r in result.records]


@pytest.mark.parametrize("method", OFFLINE_METHODS)
def test_every_method_finds_a_valid_graph_and_is_reproducible(method: str, tmp_path) -> None:
    first = search(tmp_path / "a.jsonl", method, iterations=10)
    again = search(tmp_path / "b.jsonl", method, iterations=10)
    assert trace(first) == trace(again)
    assert 1 <= len(first.records) <= 10
    validate(first.artifact)
    assert first.artifact.provenance.method == method
    assert [a.split for a in first.artifact.accuracy] == ["val", "test"]
    assert first.selection.winner.measurement.n == 40  # re-evaluated on more questions
    if method == "agent-reinforce-no-fuser":
        assert all(r.candidate.nodes[-1].role == "assistant" for r in first.records)


def test_textgrad_runs_with_an_llm_and_needs_one(tmp_path) -> None:
    llm = LLMAgent(FreeChat(), RuleBasedAgent(), model="free")
    result = search(tmp_path / "t.jsonl", "textgrad", iterations=6, agent=llm)
    assert len(result.records) == 6
    assert result.artifact.provenance.agent_model == "llm:free"
    with pytest.raises(ValueError, match="textgrad needs an LLM"):
        search(tmp_path / "u.jsonl", "textgrad", iterations=6)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), method=st.sampled_from(["agent-reinforce", "reinforce"]))
def test_any_seed_reproduces_its_search(seed: int, method: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        a = search(Path(tmp) / "a.jsonl", method, iterations=6, seed=seed)
        b = search(Path(tmp) / "b.jsonl", method, iterations=6, seed=seed)
    assert trace(a) == trace(b)


def test_different_seeds_search_differently(tmp_path) -> None:
    a = search(tmp_path / "a.jsonl", "random", iterations=6, seed=1)
    b = search(tmp_path / "b.jsonl", "random", iterations=6, seed=2)
    assert trace(a) != trace(b)


class QuestionLog(SyntheticScorer):
    """The synthetic scorer, logging the question ids of every scoring call in order."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, ...]] = []

    async def score(self, artifact: GraphArtifact, questions: Sequence[Question]) -> Measurement:
        self.asked.append(tuple(q.id for q in questions))
        return await super().score(artifact, questions)


def test_the_search_questions_follow_the_seed_and_the_final_shares_its_pool(tmp_path) -> None:
    logs = {seed: QuestionLog() for seed in (1, 2)}
    runs = {
        seed: search(tmp_path / f"{seed}.jsonl", scorer=log, iterations=4, seed=seed)
        for seed, log in logs.items()
    }
    pool = {q.id for q in TASK.split("val", limit=40)}  # the larger of 20 search, 40 reeval
    firsts = {seed: log.asked[0] for seed, log in logs.items()}
    assert firsts[1] != firsts[2]  # the first pre-test: 5 questions, drawn by the seed
    assert all(len(ids) == 5 and set(ids) <= pool for ids in firsts.values())
    for seed, result in runs.items():
        assert result.selection.winner.measurement.n == 40  # the final: the whole pool
        order = " ".join(q.id for q in search_order(TASK.split("val", limit=40), seed))
        asked = [ids for ids in logs[seed].asked if set(ids) <= pool]  # not the test split
        # Pre-tests, racing steps and the final each score a run of the seed's one order.
        assert all(f" {' '.join(ids)} " in f" {order} " for ids in asked)
        assert set().union(*asked) == pool


class FirstGraphWins:
    """The first graph it sees scores 90%, every other one 10%, on any questions."""

    def __init__(self) -> None:
        self.first: str | None = None

    async def score(self, artifact: GraphArtifact, questions: Sequence[Question]) -> Measurement:
        key = msgspec.json.encode([artifact.nodes, artifact.edges]).decode()
        self.first = self.first or key
        acc = 0.9 if key == self.first else 0.1
        outcomes = tuple(i % 10 < acc * 10 for i in range(len(questions)))
        return Measurement(
            acc, len(questions), acc - 0.1, acc + 0.1, 1.0, 1.2, 1e12, outcomes=outcomes
        )

    async def close(self) -> None:
        return None


def test_the_best_graph_is_returned_not_the_last(tmp_path) -> None:
    result = search(tmp_path / "a.jsonl", "random", scorer=FirstGraphWins(), iterations=8)
    first, last = result.records[0], result.records[-1]
    assert result.selection.winner.candidate == first.candidate != last.candidate
    assert result.artifact.nodes == first.candidate.nodes
    assert result.artifact.accuracy[0].value == 0.9


def test_patience_stops_the_search(tmp_path) -> None:
    result = search(
        tmp_path / "a.jsonl", "random", scorer=FirstGraphWins(), iterations=30, patience=3
    )
    assert len(result.records) == 4  # the best, then 3 without improvement


def test_time_limit_stops_the_search(tmp_path) -> None:
    settings = msgspec.structs.replace(
        fast_settings("random"), limits=Limits(iterations=30, time_limit_s=0.0)
    )
    with pytest.raises(RuntimeError, match="evaluated no graph"):
        asyncio.run(optimize(TASK, SPACE, settings, SyntheticScorer(), tmp_path / "a.jsonl"))


def test_latency_objective_trades_accuracy_for_latency(tmp_path) -> None:
    objective = Objective(kind="accuracy-latency", latency_weight=0.2, latency_limit_s=2.0)
    fast = search(tmp_path / "a.jsonl", objective=objective, iterations=10)
    plain = search(tmp_path / "b.jsonl", iterations=10)
    assert fast.selection.winner.measurement.latency_p50_s <= 2.0
    assert fast.artifact.latency.p50_s <= plain.artifact.latency.p50_s


class Interrupted(Exception):
    pass


class KilledAt(SyntheticScorer):
    """Dies at its `at`-th call, like a killed process: nothing after it is written."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    async def score(self, artifact, questions):
        if self.calls + 1 == self.at:
            raise Interrupted
        return await super().score(artifact, questions)


@pytest.mark.parametrize("method", ["agent-reinforce", "bo", "reinforce"])
@pytest.mark.parametrize("kill_at", [1, 4, 9])
def test_a_killed_search_resumes_with_nothing_lost(method: str, kill_at: int, tmp_path) -> None:
    whole = SyntheticScorer()
    uninterrupted = search(tmp_path / "whole.jsonl", method, scorer=whole, iterations=10)
    path = tmp_path / "killed.jsonl"
    with pytest.raises(Interrupted):
        search(path, method, scorer=KilledAt(kill_at), iterations=10)
    archived = sum(json.loads(line)["type"] == "evaluation" for line in path.open())
    resumed_scorer = SyntheticScorer()
    resumed = search(path, method, scorer=resumed_scorer, iterations=10)
    assert trace(resumed) == trace(uninterrupted)
    assert resumed.artifact.nodes == uninterrupted.artifact.nodes
    # Done work is not redone: each archived evaluation took at least one scorer call (racing
    # may take several), and only the calls of the evaluation in flight are made again.
    assert whole.calls - (kill_at - 1) <= resumed_scorer.calls <= whole.calls - archived


def test_resume_replays_llm_decisions_instead_of_asking_again(tmp_path) -> None:
    path = tmp_path / "llm.jsonl"
    with pytest.raises(Interrupted):
        asyncio.run(_llm_search(path, KilledAt(6)))
    archived = _agent_records(path)
    FreeChat.calls = 0
    resumed = asyncio.run(_llm_search(path, SyntheticScorer()))
    assert FreeChat.calls == len(_agent_records(path)) - len(archived)  # only new decisions
    whole = asyncio.run(_llm_search(tmp_path / "whole.jsonl", SyntheticScorer()))
    assert trace(resumed) == trace(whole)


def _agent_records(path: Path) -> list[dict]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return [r for r in lines if r["type"] == "agent"]


async def _llm_search(path: Path, scorer) -> SearchResult:
    agent = LLMAgent(FreeChat(), RuleBasedAgent(), model="free")
    return await optimize(TASK, SPACE, fast_settings(iterations=8), scorer, path, agent=agent)


def test_archive_cuts_a_torn_last_line_and_refuses_other_settings(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    search(path, "random", iterations=4)
    with path.open("ab") as f:
        f.write(b'{"type":"evaluation","index":4,"sta')  # killed mid-write
    resumed = search(path, "random", iterations=4)
    assert len(resumed.records) == 4
    assert path.read_bytes().endswith(b"\n")
    with pytest.raises(ArchiveMismatch, match="other settings"):
        search(path, "random", iterations=4, seed=99)
    header = RunHeader(fingerprint="x", settings=msgspec.Raw(b"{}"), created_at="")
    assert Archive.open(path, header, fresh=True).evaluations == []


def cli() -> typer.Typer:
    app = typer.Typer(cls=CommandLineGroup)
    app.command("optimize")(optimize_command)
    app.command("compare")(compare_command)
    return app


PAPER_POOL = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")
POOL_ARGS = [arg for model in PAPER_POOL for arg in ("--models", model)]
SMALL = [
    "--val-questions",
    "10",
    "--reeval-questions",
    "20",
    "--test-questions",
    "20",
    "--scorer",
    "synthetic",
    "--max-nodes",
    "5",
]


def test_cli_optimize_writes_a_loadable_artifact_and_resumes(tmp_path, monkeypatch) -> None:
    from tts_opt.tasks import registry

    monkeypatch.setattr(registry, "get_task", lambda name: TASK)
    monkeypatch.setattr("tts_opt.optimizer.service.get_task", lambda name: TASK)
    args = [
        "optimize",
        "--task",
        "math",
        "--budget",
        "18",
        "--iterations",
        "6",
        "--max-tokens",
        "128",
        "--out",
        str(tmp_path),
        *POOL_ARGS,
        *SMALL,
    ]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    artifact = load_artifact(tmp_path / "math@18.json")
    assert "SYNTHETIC" in artifact.description
    assert artifact.decoding.max_tokens == 128
    report = (tmp_path / "math@18.agent-reinforce.s0.report.md").read_text()
    assert "## Search history" in report
    again = CliRunner().invoke(cli(), args)
    assert again.exit_code == 0, again.output
    archive = next((tmp_path / ".archive").iterdir()).read_text().splitlines()
    # No repeats: the search, 3 finalists, the self-consistency graph (unless a finalist) and 3
    # single models re-evaluated, the shipped graph tested (and the other side of the
    # comparison next to it, when a graph was compared with the single model).
    assert artifact.baseline is not None
    evaluations = [json.loads(line) for line in archive if '"type":"evaluation"' in line]
    stages = [e["stage"] for e in evaluations]
    tests = 1 if artifact.baseline.validation is None else 2
    assert stages.count("test") == tests and stages.count("reeval") in (6, 7)
    assert len(evaluations) == 6 + stages.count("reeval") + tests
    fresh = ["--out", str(tmp_path / "real"), "--scorer", "real"]
    bad = CliRunner().invoke(cli(), [*args, *fresh])  # paper models: no engine can serve them
    assert bad.exit_code == 1 and "error:" in bad.output
    bad = CliRunner().invoke(cli(), [*args, "--scorer", "nope"])
    assert bad.exit_code == 1 and "scorer 'nope'" in bad.output


def test_cli_compare_writes_a_table_and_a_plot(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("tts_opt.optimizer.service.get_task", lambda name: TASK)
    args = [
        "compare",
        "--task",
        "math",
        "--budget",
        "18",
        "--iterations",
        "5",
        "--method",
        "agent-reinforce",
        "--method",
        "random",
        "--seed",
        "0",
        "--seed",
        "1",
        "--out",
        str(tmp_path),
        *POOL_ARGS,
        *SMALL,
    ]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "compare-math@18.md").read_text()
    assert "| agent-reinforce | 2 |" in table and "| random | 2 |" in table
    assert (tmp_path / "compare-math@18.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_compare_in_parallel_finds_what_it_finds_in_turn(tmp_path, monkeypatch) -> None:
    """Searches sharing the scorer at once stay independent: each is what its seed makes it."""
    monkeypatch.setattr("tts_opt.optimizer.service.get_task", lambda name: TASK)
    args = ["compare", "--task", "math", "--budget", "18", "--iterations", "4", *POOL_ARGS, *SMALL]
    args += ["--method", "agent-reinforce", "--method", "bo", "--seed", "0", "--seed", "1"]
    for parallel, out in (("1", "turn"), ("4", "parallel")):
        result = CliRunner().invoke(
            cli(), [*args, "--parallel", parallel, "--out", str(tmp_path / out)]
        )
        assert result.exit_code == 0, result.output
    for method, seed in (("agent-reinforce", 0), ("agent-reinforce", 1), ("bo", 0), ("bo", 1)):
        name = f"math@18.{method}.s{seed}.json"
        in_turn, at_once = (load_artifact(tmp_path / out / name) for out in ("turn", "parallel"))
        assert in_turn.nodes == at_once.nodes and in_turn.edges == at_once.edges
        assert in_turn.accuracy == at_once.accuracy
    bad = CliRunner().invoke(cli(), [*args, "--parallel", "0", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--parallel" in bad.output


@pytest.mark.parametrize(
    ("objective", "cache"),
    [
        ("accuracy", True),
        ("accuracy-latency", True),
        ("accuracy", False),
        ("accuracy-latency", False),
    ],
)
async def test_the_node_cache_is_on_unless_turned_off_whatever_the_objective(
    objective: str, cache: bool
) -> None:
    """Replayed nodes count their recorded times, so a latency objective may use the cache: it
    replays only samples with a recorded time."""
    from tts_opt.optimizer.service import SearchRequest, real_scorer, search_space

    request = SearchRequest(
        task="math", budget=18, objective=objective, models=PAPER_POOL, cache=cache
    )
    scorer = real_scorer(TASK, search_space(request, TASK), request)
    try:
        assert (scorer.cache is not None) == cache
        if scorer.cache is not None:
            assert scorer.cache.timed_only == (objective == "accuracy-latency")
    finally:
        await scorer.close()


def test_the_command_line_defaults_are_the_search_requests() -> None:
    """The options left out make the default request: the CLI takes its defaults from it."""
    from tts_opt.optimizer.service import SearchRequest

    for command in ("optimize", "compare"):
        options = {
            p.name: p.default
            for p in typer.main.get_command(cli()).commands[command].params  # type: ignore[attr-defined]
            if p.param_type_name == "option"
        }
        assert len(options) > 25
        given = {"task": "math", "budget": 4.0, "out": Path("graphs")}  # compare: its own folder
        assert SearchRequest.of({**options, **given}) == SearchRequest(task="math", budget=4.0)
