"""What the optimizer maximizes, and the one thing it needs from evaluation: a `GraphScorer`.

The optimizer never runs engines itself. A scorer runs an artifact on questions and returns a
`Measurement`; the real one wraps `tts_opt.evaluation`, tests use `SyntheticScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from tts_opt.evaluation.stats import percentile, wilson_interval
from tts_opt.graph.schema import GraphArtifact
from tts_opt.tasks.schema import Question

ObjectiveKind = Literal["accuracy", "accuracy-latency"]


class Measurement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One graph on one question set: accuracy with its 95% CI, latency, compute and tokens."""

    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    # None when no run's latency is known (replayed nodes whose times were not recorded).
    latency_p50_s: float | None
    latency_p95_s: float | None
    flops: float
    tokens: int = 0
    # Per question, in the order scored: what paired comparisons read.
    outcomes: tuple[bool, ...] = ()
    # Per question latency in the order of `outcomes`; empty when not every one is known.
    latencies_s: tuple[float, ...] = ()
    # Some latency is the critical path over replayed nodes' recorded times, not a measurement.
    latency_replayed: bool = False

    def head(self, k: int) -> Measurement:
        """This measurement on its first `k` questions (tokens pro rata; latency percentiles
        recomputed where per-question latencies are known, else kept as estimates)."""
        if k >= self.n:
            return self
        outcomes, latencies = self.outcomes[:k], self.latencies_s[:k]
        low, high = wilson_interval(sum(outcomes), k)
        exact = len(latencies) == k
        return msgspec.structs.replace(
            self,
            accuracy=sum(outcomes) / k if k else 0.0,
            n=k,
            ci_low=low,
            ci_high=high,
            latency_p50_s=percentile(latencies, 50) if exact else self.latency_p50_s,
            latency_p95_s=percentile(latencies, 95) if exact else self.latency_p95_s,
            tokens=round(self.tokens * k / self.n),
            outcomes=outcomes,
            latencies_s=latencies,
        )

    def extended(self, more: Measurement) -> Measurement:
        """This measurement and `more` (the same graph on further questions) as one.

        Percentiles are recomputed from the per-question latencies when both have them; else a
        known latency is the question-weighted mean of the two (an estimate), and unknown stays
        unknown."""
        n = self.n + more.n
        outcomes = self.outcomes + more.outcomes
        correct = sum(outcomes)
        low, high = wilson_interval(correct, n)
        latencies = self.latencies_s + more.latencies_s
        p50: float | None
        p95: float | None
        if len(latencies) == n:
            p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        else:
            latencies = ()
            p50 = _weighted(self.latency_p50_s, self.n, more.latency_p50_s, more.n)
            p95 = _weighted(self.latency_p95_s, self.n, more.latency_p95_s, more.n)
        return Measurement(
            accuracy=correct / n if n else 0.0,
            n=n,
            ci_low=low,
            ci_high=high,
            latency_p50_s=p50,
            latency_p95_s=p95,
            flops=(self.flops * self.n + more.flops * more.n) / n if n else 0.0,
            tokens=self.tokens + more.tokens,
            outcomes=outcomes,
            latencies_s=latencies,
            latency_replayed=self.latency_replayed or more.latency_replayed,
        )


def _weighted(a: float | None, n_a: int, b: float | None, n_b: int) -> float | None:
    if a is None or b is None:
        return None
    return (a * n_a + b * n_b) / (n_a + n_b)


class GraphScorer(Protocol):
    """Runs a graph on questions. Implementations must be safe to call repeatedly; `close`
    releases what the scorer holds (engines, cache) once the searches are done."""

    async def score(
        self, artifact: GraphArtifact, questions: Sequence[Question]
    ) -> Measurement: ...

    async def close(self) -> None: ...


class Objective(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The declared trade-off.

    `accuracy`: utility = accuracy. `accuracy-latency`: utility = accuracy - latency_weight *
    p50 latency (seconds), and a graph whose p50 exceeds `latency_limit_s` loses 1 (infeasible:
    below every graph within the limit).
    """

    kind: ObjectiveKind = "accuracy"
    latency_weight: float = 0.01
    latency_limit_s: float | None = None

    def utility(self, m: Measurement) -> float:
        if self.kind == "accuracy":
            return m.accuracy
        p50 = m.latency_p50_s
        if p50 is None:
            raise ValueError("the accuracy-latency objective needs a measured latency")
        penalty = self.latency_weight * p50
        if self.latency_limit_s is not None and p50 > self.latency_limit_s:
            penalty += 1.0
        return m.accuracy - penalty

    @property
    def uses_latency(self) -> bool:
        return self.kind == "accuracy-latency"

    def describe(self) -> str:
        if not self.uses_latency:
            return "maximize validation accuracy"
        limit = (
            f"; graphs with p50 latency above {self.latency_limit_s:g} s are infeasible"
            if self.latency_limit_s is not None
            else ""
        )
        return (
            f"maximize accuracy - {self.latency_weight:g} x p50 latency in seconds"
            f" (1 s of latency is worth {self.latency_weight:.1%} accuracy){limit}"
        )
