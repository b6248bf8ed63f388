"""The evaluation report: what one graph scored on one question set, per question and in sum.

A report is self-contained: it embeds the artifact exactly as evaluated (decoding overrides and
seed applied), so a result can be traced to the graph, the data (sha256) and the tool version
that produced it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

import msgspec

from tts_opt import __version__
from tts_opt.evaluation.stats import percentile, wilson_interval
from tts_opt.graph.io import write_atomic
from tts_opt.graph.schema import Accuracy, GraphArtifact, Latency

REPORT_VERSION = 2  # 2: latencies of runs that replayed cached nodes are their critical path


class QuestionResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One question. `error` is set when the run or the scoring failed (then `correct` is
    false); `reason` is the scorer's word on a wrong answer. Tokens, FLOPs and latency are those
    of the graph run (summed over its nodes; FLOPs from the measured token counts); `cache_hits`
    and `cache_misses` count node samples replayed from / added to the node-output cache.
    A run that replayed nodes has `latency_replayed`: its latency is the critical path over the
    nodes' recorded (replayed) and measured (live) times, None when a replayed node's time was
    not recorded. `early_exit` says the sink was skipped, its inputs having agreed (the
    artifact's rule)."""

    id: str
    correct: bool
    extracted: str | None
    reference: str
    output: str
    latency_s: float | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float = 0.0
    finish_reason: str | None = None
    reason: str = ""
    cache_hits: int = 0
    cache_misses: int = 0
    early_exit: bool = False
    error: str | None = None
    latency_replayed: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LatencyStats(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """End-to-end latency of graph runs in seconds; `replayed` of the `n` runs replayed nodes."""

    n: int
    mean_s: float
    p50_s: float
    p95_s: float
    max_s: float
    replayed: int = 0

    @classmethod
    def of(cls, results: Sequence[QuestionResult]) -> LatencyStats | None:
        """Over the results whose latency is known; None if there are none."""
        values = [r.latency_s for r in results if r.latency_s is not None]
        if not values:
            return None
        return cls(
            n=len(values),
            mean_s=fmean(values),
            p50_s=percentile(values, 50),
            p95_s=percentile(values, 95),
            max_s=max(values),
            replayed=sum(r.latency_replayed for r in results if r.latency_s is not None),
        )


class CacheStats(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Node-output cache use of one evaluation, counted in node samples."""

    enabled: bool
    hits: int = 0
    misses: int = 0
    path: str | None = None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class EvalReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A graph evaluated on questions of a task.

    `accuracy` counts failed questions as wrong. `latency` is over the questions whose run
    succeeded and whose latency is known: cache hits return at once, so a run that had any is
    timed by its critical path over the recorded times of its replayed nodes and the measured
    times of its live ones (`LatencyStats.replayed` counts those runs); a replayed node without
    a recorded time leaves its run's latency unknown. `latency_uncached` is over the runs
    without any hit, all measured live. Means of FLOPs and tokens are per question over
    successful runs; they do not depend on the cache (a hit replays the token counts of the
    original call).
    """

    graph: str
    task: str
    split: str
    accuracy: Accuracy
    correct: int
    errors: int
    latency: LatencyStats | None
    latency_uncached: LatencyStats | None
    mean_flops: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    cache: CacheStats
    concurrency: int
    wall_s: float
    started_at: str
    tool_version: str
    data_sha256: str
    artifact: GraphArtifact
    results: tuple[QuestionResult, ...]
    report_version: int = REPORT_VERSION

    @property
    def n(self) -> int:
        return self.accuracy.n

    @property
    def mean_tokens(self) -> float:
        return self.mean_prompt_tokens + self.mean_completion_tokens


def summarize(
    results: Sequence[QuestionResult],
    *,
    graph: str,
    task: str,
    split: str,
    artifact: GraphArtifact,
    cache: CacheStats,
    concurrency: int,
    wall_s: float,
    started_at: str,
    data_sha256: str,
) -> EvalReport:
    """The report of `results`; `cache` says where the cache was, the results count its use."""
    n = len(results)
    correct = sum(r.correct for r in results)
    low, high = wilson_interval(correct, n)
    ok = [r for r in results if r.error is None]
    return EvalReport(
        split=split,
        accuracy=Accuracy(
            split=split, value=correct / n if n else 0.0, n=n, ci_low=low, ci_high=high
        ),
        correct=correct,
        errors=n - len(ok),
        latency=LatencyStats.of(ok),
        latency_uncached=LatencyStats.of([r for r in ok if not r.cache_hits]),
        mean_flops=fmean(r.flops for r in ok) if ok else 0.0,
        mean_prompt_tokens=fmean(r.prompt_tokens for r in ok) if ok else 0.0,
        mean_completion_tokens=fmean(r.completion_tokens for r in ok) if ok else 0.0,
        cache=msgspec.structs.replace(
            cache,
            hits=sum(r.cache_hits for r in results),
            misses=sum(r.cache_misses for r in results),
        ),
        concurrency=concurrency,
        wall_s=wall_s,
        started_at=started_at,
        tool_version=__version__,
        data_sha256=data_sha256,
        artifact=artifact,
        results=tuple(results),
        graph=graph,
        task=task,
    )


_ENCODER = msgspec.json.Encoder(order="deterministic")


def dumps_report(report: EvalReport) -> bytes:
    return msgspec.json.format(_ENCODER.encode(report), indent=2) + b"\n"


def save_report(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON atomically (a reader never sees half a report)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, dumps_report(report))


def load_report(path: str | os.PathLike[str]) -> EvalReport:
    return msgspec.json.decode(Path(path).read_bytes(), type=EvalReport)


def with_measurements(artifact: GraphArtifact, report: EvalReport) -> GraphArtifact:
    """`artifact` with the report's accuracy (replacing one on the same split) and, when the
    report knows it, its latency (replayed if any run's was): what an optimizer or a user
    records in the graph it serves."""
    accuracy = tuple(a for a in artifact.accuracy if a.split != report.split)
    latency = artifact.latency
    if report.latency is not None:
        stats = report.latency
        latency = Latency(
            p50_s=stats.p50_s, p95_s=stats.p95_s, n=stats.n, replayed=stats.replayed > 0
        )
    return msgspec.structs.replace(artifact, accuracy=(*accuracy, report.accuracy), latency=latency)
