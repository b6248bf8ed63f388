"""Prometheus metrics of the server (`tts_` prefix) and the `/metrics` exposition.

The server's metrics live in their own registry, so several apps (tests) can coexist in one
process. `/metrics` appends the in-process vLLM engines' own `vllm:` metrics (one series per
engine, label `model_name`; see `tts_opt.engines.vllm_metrics`) and prometheus_client's default
registry (process metrics).
Label `profile` is a profile name or, for direct serving, a pool model name: both come from the
server's own set, never from what a client typed, so cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from tts_opt.engines.vllm_metrics import ENGINE_METRICS
from tts_opt.runtime.trace import RunTrace, Usage

# Seconds: end-to-end and first-token latency of LLM graphs range from ms (tiny, cached) to minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600)
# Seconds of orchestration outside engine calls: should stay well under a millisecond.
OVERHEAD_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.25)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "tts_request_duration_seconds",
            "End-to-end latency of completed chat completions.",
            ["profile"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "tts_time_to_first_token_seconds",
            "Time from admission to the first token of the answer.",
            ["profile"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.node_latency = Histogram(
            "tts_node_duration_seconds",
            "Latency of one graph node's engine request (sent to last token).",
            ["profile", "node", "role", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "tts_orchestration_overhead_seconds",
            "Wall time of a graph run not covered by any engine request.",
            ["profile"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tts_tokens",
            "Tokens over every node of completed requests.",
            ["profile", "kind"],
            registry=r,
        )
        self.flops = Counter("tts_flops", "FLOPs of completed graph runs.", ["profile"], registry=r)
        self.early_exits = Counter(
            "tts_early_exits",
            "Completed graph runs answered without their sink, its inputs having agreed.",
            ["profile"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tts_requests_in_flight", "Admitted requests not yet finished.", ["profile"], registry=r
        )
        self.errors = Counter(
            "tts_errors", "Failed requests by error type.", ["profile", "type"], registry=r
        )
        self.degraded = Counter(
            "tts_degraded_requests",
            "Requests for a profile served by its fallback under load.",
            ["profile", "fallback"],
            registry=r,
        )
        self.node_calls = Gauge(
            "tts_node_calls_in_flight",
            "Node calls of the admitted requests (what admission counts against its capacity).",
            registry=r,
        )
        # Label sets come from the server's own profiles and graphs, so these stay small.
        self._profiles: dict[str, ProfileMetrics] = {}
        self._nodes: dict[tuple[str, str, str, str], Histogram] = {}

    def profile(self, profile: str) -> ProfileMetrics:
        """The children of one `profile` label, made once (`labels()` costs more than an update)."""
        children = self._profiles.get(profile)
        if children is None:
            children = self._profiles[profile] = ProfileMetrics(self, profile)
        return children

    def completed(self, profile: str, seconds: float, usage: Usage, trace: RunTrace | None) -> None:
        children = self.profile(profile)
        children.request_latency.observe(seconds)
        children.prompt_tokens.inc(usage.prompt_tokens)
        children.completion_tokens.inc(usage.completion_tokens)
        if trace is None:
            return
        children.flops.inc(trace.flops)
        children.overhead.observe(trace.overhead_s)
        if trace.early_exit is not None:
            children.early_exits.inc()
        for node in trace.nodes:
            if node.status == "ok":
                key = (profile, node.node, node.role, node.model)
                histogram = self._nodes.get(key)
                if histogram is None:
                    histogram = self._nodes[key] = self.node_latency.labels(*key)
                histogram.observe(node.end_s - node.start_s)

    def exposition(self) -> bytes:
        return (
            generate_latest(self.registry)
            + generate_latest(ENGINE_METRICS)
            + generate_latest(REGISTRY)
        )


class ProfileMetrics:
    """The per-request metrics of one profile (or pool model)."""

    def __init__(self, metrics: Metrics, profile: str) -> None:
        self.request_latency = metrics.request_latency.labels(profile)
        self.first_token = metrics.first_token.labels(profile)
        self.overhead = metrics.overhead.labels(profile)
        self.prompt_tokens = metrics.tokens.labels(profile, "prompt")
        self.completion_tokens = metrics.tokens.labels(profile, "completion")
        self.flops = metrics.flops.labels(profile)
        self.early_exits = metrics.early_exits.labels(profile)
        self.in_flight = metrics.in_flight.labels(profile)
