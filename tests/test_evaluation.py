"""The evaluation runner on scripted engines: exact accuracy and Wilson interval, failures
counted wrong, bounded concurrency, overrides, the JSON report, probes and statistics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest
from evaluation_support import (
    CRASH_ON,
    LARGE,
    N_QUESTIONS,
    SMALL,
    arithmetic_task,
    crashing_solver,
    solver,
)

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.evaluation import (
    QuestionResult,
    chain_graph,
    evaluate,
    load_report,
    parallel_graph,
    percentile,
    probe_graph,
    save_report,
    single_model_graph,
    wilson_interval,
    with_measurements,
)
from tts_opt.graph import GraphError, graph_cost_units, graph_flops, node_flops_measured, validate
from tts_opt.tasks import Task


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return arithmetic_task(tmp_path)


def engine(reply=solver, **kwargs) -> dict[str, ScriptedEngine]:
    return {SMALL.name: ScriptedEngine(SMALL.name, reply, **kwargs)}


async def test_accuracy_and_wilson_interval_are_exact(task: Task) -> None:
    report = await evaluate(
        single_model_graph(task, SMALL), task, task.questions, engine(token_delay_s=0.001)
    )
    assert (report.n, report.correct, report.errors) == (N_QUESTIONS, 6, 0)
    acc = report.accuracy
    assert acc.value == 0.6 and acc.split == "val"
    # 6/10: the textbook Wilson 95% interval is [0.3127, 0.8318].
    assert acc.ci_low == pytest.approx(0.312674, abs=1e-6)
    assert acc.ci_high == pytest.approx(0.831820, abs=1e-6)
    assert [r.id for r in report.results] == [q.id for q in task.questions]
    by_id = {r.id: r for r in report.results}
    assert by_id["q3"].extracted == "5" and not by_id["q3"].correct and by_id["q3"].reference == "4"
    assert by_id["q4"].extracted == "5" and by_id["q4"].correct
    first = report.results[0]
    assert first.latency_s > 0 and first.prompt_tokens > 0 and first.completion_tokens > 0
    assert first.flops == node_flops_measured(SMALL, first.prompt_tokens, first.completion_tokens)
    assert report.mean_flops == pytest.approx(sum(r.flops for r in report.results) / N_QUESTIONS)
    assert report.latency is not None and report.latency.n == N_QUESTIONS
    assert report.latency.p50_s <= report.latency.p95_s <= report.latency.max_s
    assert report.latency_uncached == report.latency  # no cache, no hits
    assert not report.cache.enabled and report.cache.hits == report.cache.misses == 0


async def test_a_failing_question_is_wrong_with_its_error_and_the_rest_go_on(task: Task) -> None:
    report = await evaluate(
        single_model_graph(task, SMALL), task, task.questions, engine(crashing_solver)
    )
    crashed = next(r for r in report.results if r.id == f"q{CRASH_ON}")
    assert not crashed.correct and crashed.error is not None and "scripted crash" in crashed.error
    assert (report.correct, report.errors) == (5, 1)
    assert report.latency is not None and report.latency.n == N_QUESTIONS - 1


async def test_engine_failures_after_retries_are_recorded(task: Task) -> None:
    # Two scripted failures: the first question's call and its one retry.
    pool = engine(failures=2)
    report = await evaluate(
        single_model_graph(task, SMALL), task, task.questions, pool, concurrency=1
    )
    first = report.results[0]
    assert first.error is not None and "RunError" in first.error and "2 attempt(s)" in first.error
    assert first.id == "q0" and report.errors == 1 and report.correct == 6  # q0 was wrong anyway


async def test_concurrency_is_bounded(task: Task) -> None:
    pool = engine(first_token_delay_s=0.02)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(pool[SMALL.name].in_flight))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        await evaluate(single_model_graph(task, SMALL), task, task.questions, pool, concurrency=3)
    finally:
        watcher.cancel()
    assert peak == 3


async def test_seed_and_max_tokens_override_the_artifact(task: Task) -> None:
    pool = engine()
    report = await evaluate(
        single_model_graph(task, SMALL), task, task.questions[:2], pool, seed=7, max_tokens=5
    )
    params = {r.params for r in pool[SMALL.name].requests}
    assert {(p.seed, p.max_tokens) for p in params} == {(7, 5)}
    assert report.artifact.decoding.seed == 7 and report.artifact.decoding.max_tokens == 5
    assert {r.finish_reason for r in report.results} == {"length"}


async def test_progress_sees_every_result(task: Task) -> None:
    seen: list[str] = []
    report = await evaluate(
        single_model_graph(task, SMALL),
        task,
        task.questions,
        engine(),
        progress=lambda r: seen.append(r.id),
    )
    assert sorted(seen) == sorted(r.id for r in report.results)


async def test_a_missing_engine_fails_before_any_question(task: Task) -> None:
    with pytest.raises(ValueError, match="no engine for model"):
        await evaluate(single_model_graph(task, LARGE), task, task.questions, engine())


async def test_report_json_round_trips_atomically(task: Task, tmp_path: Path) -> None:
    report = await evaluate(
        parallel_graph(task, [SMALL, SMALL], SMALL), task, task.questions, engine()
    )
    path = save_report(report, tmp_path / "out" / "report.json")
    assert load_report(path) == report
    assert json.loads(path.read_text())["accuracy"]["n"] == N_QUESTIONS
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left


async def test_with_measurements_records_accuracy_and_latency(task: Task) -> None:
    artifact = single_model_graph(task, SMALL)
    report = await evaluate(artifact, task, task.questions, engine())
    measured = with_measurements(artifact, report)
    again = with_measurements(measured, report)
    assert again.accuracy == (report.accuracy,)
    assert again.latency is not None and again.latency.n == N_QUESTIONS
    validate(again)


def test_probe_graphs_have_the_shape_and_cost_they_claim(task: Task) -> None:
    parallel = parallel_graph(task, [SMALL, SMALL, LARGE], LARGE)
    assert [(n.id, n.model, n.role) for n in parallel.nodes][-1] == ("fuser", LARGE.name, "fuser")
    assert parallel.edges == (("a1", "fuser"), ("a2", "fuser"), ("a3", "fuser"))
    chain = chain_graph(task, [SMALL, LARGE, SMALL])
    assert chain.edges == (("a1", "a2"), ("a2", "a3")) and chain.sink == "a3"
    for artifact in (parallel, chain, single_model_graph(task, SMALL)):
        validate(artifact)
        assert artifact.templates == task.templates and artifact.task == "sums"
        assert artifact.budget.value == pytest.approx(graph_cost_units(artifact))
        assert artifact.flops == pytest.approx(graph_flops(artifact))
    assert {m.name for m in chain.models} == {SMALL.name, LARGE.name}


def test_probe_specs_parse_and_bad_ones_name_the_syntax(task: Task) -> None:
    specs = {SMALL.name: SMALL, LARGE.name: LARGE}
    graph = probe_graph(f"parallel:{SMALL.name}*2,{LARGE.name}:{LARGE.name}", task, specs.get)
    assert [n.model for n in graph.nodes] == [SMALL.name, SMALL.name, LARGE.name, LARGE.name]
    chain = probe_graph(f"chain:{SMALL.name}*3", task, specs.get)
    assert len(chain.nodes) == 3 and len(chain.edges) == 2
    single = probe_graph(f"single:{LARGE.name}", task, specs.get)
    assert [n.model for n in single.nodes] == [LARGE.name]
    for bad in ("single:", "parallel:x", "parallel:x*0:y", "chain:", "star:x", "single:a,b"):
        with pytest.raises(GraphError, match="single:MODEL"):
            probe_graph(bad, task, specs.get)


def test_wilson_interval_and_percentiles() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.434482, abs=1e-6)
    low, high = wilson_interval(5, 5)
    assert high == 1.0 and low == pytest.approx(1 - 0.434482, abs=1e-6)
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


def test_report_structs_are_strict() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"id": "q", "correct": true, "extracted": null, "reference": "", "output": "",'
            b' "latency_s": 1, "bogus": 1}',
            type=QuestionResult,
        )
