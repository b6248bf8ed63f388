"""Evaluate a graph on task questions: run them concurrently through the graph runtime, score
them with the task's scorer, and summarize accuracy, latency and compute in a report."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from tts_opt.engines.base import ChatMessage, Engine
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.evaluation.cache import NodeCache
from tts_opt.evaluation.caching_engine import CachingEngine
from tts_opt.evaluation.report import CacheStats, EvalReport, QuestionResult, summarize
from tts_opt.graph.schema import Decoding, GraphArtifact
from tts_opt.runtime.critical_path import run_latency_s
from tts_opt.runtime.executor import FailurePolicy, GraphRunner
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

ResultCallback = Callable[[QuestionResult], None]


def evaluated_decoding(decoding: Decoding, seed: int | None, max_tokens: int | None) -> Decoding:
    """The decoding an evaluation runs with: its `seed`, and `max_tokens` when given."""
    return msgspec.structs.replace(
        decoding, seed=seed, max_tokens=decoding.max_tokens if max_tokens is None else max_tokens
    )


async def evaluate(
    artifact: GraphArtifact,
    task: Task,
    questions: Sequence[Question],
    engines: Mapping[str, Engine],
    *,
    split: str = "val",
    concurrency: int = MAX_NUM_SEQS,
    cache: NodeCache | None = None,
    progress: ResultCallback | None = None,
    seed: int | None = 0,
    max_tokens: int | None = None,
    policy: FailurePolicy = FailurePolicy(),
    label: str | None = None,
) -> EvalReport:
    """Run `artifact` on `questions` of `task` (at most `concurrency` graph runs at a time).

    `seed` replaces the artifact's decoding seed (None: unseeded, not reproducible), and
    `max_tokens` its output limit when given; the report embeds the artifact as evaluated.
    `split` labels the questions in the report. A question whose run or scoring fails is
    counted wrong with the error recorded; the evaluation goes on. `progress` is called with
    each result as it completes. With `cache`, every engine is wrapped in a `CachingEngine`.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    evaluated = msgspec.structs.replace(
        artifact, decoding=evaluated_decoding(artifact.decoding, seed, max_tokens)
    )
    GraphRunner(evaluated, engines)  # fails fast, before any question, on a missing engine
    gate = asyncio.Semaphore(concurrency)
    run_id = uuid.uuid4().hex[:8]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    async def one(index: int, question: Question) -> QuestionResult:
        result = await _evaluate_question(
            evaluated, task, question, engines, cache, gate, policy, f"eval-{run_id}-{index}"
        )
        if progress is not None:
            progress(result)
        return result

    results = await asyncio.gather(*(one(i, q) for i, q in enumerate(questions)))
    return summarize(
        results,
        split=split,
        cache=CacheStats(
            enabled=cache is not None, path=None if cache is None else str(cache.path)
        ),
        graph=label or artifact.description or f"{artifact.task}@{artifact.budget.value:g}",
        task=task.name,
        concurrency=concurrency,
        wall_s=time.perf_counter() - t0,
        started_at=started_at,
        data_sha256=task.data_sha256,
        artifact=evaluated,
    )


async def _evaluate_question(
    artifact: GraphArtifact,
    task: Task,
    question: Question,
    engines: Mapping[str, Engine],
    cache: NodeCache | None,
    gate: asyncio.Semaphore,
    policy: FailurePolicy,
    request_id: str,
) -> QuestionResult:
    """Run and score one question. Wrappers are per question, so their counters are the
    question's cache use. Scoring happens outside the gate: a slow scorer (a code sandbox)
    does not hold back engine work. A failed run that had cache hits has no known latency:
    its replayed nodes took no time and it left no trace to time them by."""
    wrapped = {} if cache is None else {m: CachingEngine(e, cache) for m, e in engines.items()}
    base = QuestionResult(
        id=question.id,
        correct=False,
        extracted=None,
        reference=question.answer,
        output="",
        latency_s=0.0,
    )
    async with gate:
        start = time.perf_counter()
        try:
            runner = GraphRunner(artifact, engines if cache is None else wrapped, policy=policy)
            conversation = [ChatMessage("user", question.prompt)]
            finished = await runner.run(conversation, request_id=request_id)
        except Exception as exc:  # any failure of one question is that question's result
            counts = _cache_counts(wrapped)
            return msgspec.structs.replace(
                base,
                latency_s=None if counts["cache_hits"] else time.perf_counter() - start,
                latency_replayed=counts["cache_hits"] > 0,
                error=_describe(exc),
                **counts,
            )
    trace = finished.trace
    ran = msgspec.structs.replace(
        base,
        output=finished.answer,
        latency_s=run_latency_s(trace, runner.plan),
        latency_replayed=trace.replayed,
        prompt_tokens=trace.usage.prompt_tokens,
        completion_tokens=trace.usage.completion_tokens,
        flops=trace.flops,
        finish_reason=finished.finish_reason,
        early_exit=trace.early_exit is not None,
        **_cache_counts(wrapped),
    )
    try:
        score = await task.score(finished.answer, question)
    except Exception as exc:
        return msgspec.structs.replace(ran, error=f"scoring failed: {_describe(exc)}")
    return msgspec.structs.replace(
        ran, correct=score.correct, extracted=score.extracted, reason=score.reason
    )


def _cache_counts(wrapped: Mapping[str, CachingEngine]) -> dict[str, int]:
    return {
        "cache_hits": sum(e.hits for e in wrapped.values()),
        "cache_misses": sum(e.misses for e in wrapped.values()),
    }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
