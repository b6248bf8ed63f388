"""The real scorer: graphs run through `tts_opt.evaluation` on (scripted) engines."""

from __future__ import annotations

import asyncio
import sqlite3

from msgspec.structs import replace
from optimizer_support import fast_settings, paper_space, synthetic_task

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.evaluation import NodeCache
from tts_opt.graph import to_text
from tts_opt.optimizer import optimize
from tts_opt.optimizer.budget import parallel_graph
from tts_opt.optimizer.evaluation_scorer import EvaluationScorer
from tts_opt.optimizer.report import run_report

TASK = synthetic_task(60)
SPACE = paper_space(budget=18.0)


def engines() -> dict[str, ScriptedEngine]:
    """The 3B model answers right, the others wrong: the sink's model decides."""
    return {
        m.name: ScriptedEngine(
            m.name,
            lambda messages, i, right=m.name == "llama-3.2-3b": f"Answer: {1 if right else 2}",
        )
        for m in SPACE.pool
    }


def scorer(pool: dict[str, ScriptedEngine], cache: NodeCache | None = None) -> EvaluationScorer:
    async def start():
        return pool

    return EvaluationScorer(TASK, start, cache=cache)


def test_scores_come_from_running_the_graph() -> None:
    pool = engines()
    questions = TASK.split("val", limit=5)

    async def run():
        s = scorer(pool)
        try:
            right = await s.score(
                SPACE.artifact(parallel_graph(SPACE, ["llama-3.2-1b", "llama-3.2-3b"])), questions
            )
            wrong = await s.score(
                SPACE.artifact(parallel_graph(SPACE, ["llama-3.1-8b"])), questions
            )
        finally:
            await s.close()
        return right, wrong

    right, wrong = asyncio.run(run())
    assert (right.accuracy, right.n, wrong.accuracy) == (1.0, 5, 0.0)
    assert right.ci_low > 0.4 and right.tokens > 0 and right.flops > 0
    assert len(pool["llama-3.2-1b"].requests) == 5  # the 1B assistant ran once per question


def test_a_search_on_engines_with_the_node_cache(tmp_path) -> None:
    pool = engines()
    settings = replace(
        fast_settings(iterations=5),
        val_questions=4,
        pretest_questions=2,
        reeval_questions=6,
        test_questions=6,
    )

    async def run():
        s = scorer(pool, NodeCache(tmp_path / "cache.sqlite3"))
        try:
            return await optimize(TASK, SPACE, settings, s, tmp_path / "a.jsonl")
        finally:
            await s.close()

    result = asyncio.run(run())
    assert result.artifact.accuracy[1].n == 6
    assert result.artifact.nodes[-1].model == "llama-3.2-3b"  # the search found the right sink
    assert result.selection.test.measurement.accuracy == 1.0


def set_times(path, seconds: float | None) -> None:
    """Every stored sample's recorded generation time becomes `seconds` (None: unrecorded)."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM sample_times")
        if seconds is not None:
            db.execute("INSERT INTO sample_times SELECT key, ?, NULL FROM samples", (seconds,))
    db.close()


def test_a_run_replayed_from_the_cache_reports_the_recorded_latency(tmp_path) -> None:
    """Scored again on a warm cache, every node is a replay: the latency is the recorded
    generation times, marked replayed, and a search on the warm cache ships it so marked."""
    settings = replace(fast_settings(iterations=3), val_questions=3, test_questions=3)
    graph = SPACE.artifact(parallel_graph(SPACE, ["llama-3.2-3b"]))
    questions = TASK.split("val", limit=3)
    path = tmp_path / "cache.sqlite3"

    async def run():
        s = scorer(engines(), NodeCache(path))
        try:
            first = await s.score(graph, questions)
            set_times(path, 2.5)
            again = await s.score(graph, questions)
            searches = [
                await optimize(TASK, SPACE, settings, s, tmp_path / f"{i}.jsonl") for i in (0, 1)
            ]
        finally:
            await s.close()
        return first, again, searches

    first, again, (cold, warm) = asyncio.run(run())
    assert first.latency_p50_s is not None and len(first.latencies_s) == 3
    assert not first.latency_replayed
    assert (again.latency_p50_s, again.latency_p95_s, again.latencies_s) == (2.5, 2.5, (2.5,) * 3)
    assert again.latency_replayed and again.accuracy == first.accuracy == 1.0
    assert cold.artifact.nodes == warm.artifact.nodes
    assert cold.artifact.latency is not None and cold.artifact.latency.n == 3
    assert warm.artifact.latency is not None and warm.artifact.latency.replayed
    assert "replayed" in to_text(warm.artifact)
    assert "p50 latency " in run_report(warm) and " s (replayed)" in run_report(warm)


def test_a_replay_without_recorded_times_has_no_latency(tmp_path) -> None:
    graph = SPACE.artifact(parallel_graph(SPACE, ["llama-3.2-3b"]))
    questions = TASK.split("val", limit=3)
    path = tmp_path / "cache.sqlite3"

    async def run():
        s = scorer(engines(), NodeCache(path))
        try:
            await s.score(graph, questions)
            set_times(path, None)
            return await s.score(graph, questions)
        finally:
            await s.close()

    again = asyncio.run(run())
    assert again.latency_p50_s is None and again.latency_p95_s is None
    assert again.latencies_s == () and again.accuracy == 1.0
