"""vLLM's own metrics of several co-hosted in-process engines on the server's /metrics, next to
the server's `tts_` metrics (see tts_opt/engines/vllm_metrics.py for why each engine has its own
registry)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from graph_factory import make_artifact
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from server_support import make_app, serving, write_artifacts

from tts_opt.engines.vllm_metrics import EngineMetrics
from tts_opt.graph.schema import Decoding, ModelSpec, RoleTemplates, TaskLengths

GEMMA, QWEN = "gemma-3-270m", "qwen2.5-coder-1.5b"
HISTOGRAMS = ("time_to_first_token", "request_time_per_output_token", "e2e_request_latency")


def engine_registry(model: str, running: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    gauge = Gauge("vllm:num_requests_running", "Running.", labels, registry=registry)
    gauge.labels(model, "0").set(running)
    Counter("vllm:generation_tokens", "Tokens.", labels, registry=registry).labels(model, "0").inc()
    return registry


def samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, model_name) -> value, for every `vllm:` sample of an exposition."""
    return {
        (s.name, s.labels.get("model_name", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("vllm:")
    }


def test_engine_registries_merge_into_one_family_per_name_and_leave_when_detached() -> None:
    metrics = EngineMetrics()
    first, second = engine_registry("a", 1), engine_registry("b", 2)
    metrics.attach(first)
    metrics.attach(second)
    text = generate_latest(metrics).decode()  # type: ignore[arg-type]
    assert text.count("# TYPE vllm:num_requests_running gauge") == 1
    values = samples(text)
    assert values[("vllm:num_requests_running", "a")] == 1
    assert values[("vllm:num_requests_running", "b")] == 2
    assert values[("vllm:generation_tokens_total", "b")] == 1
    metrics.detach(first)
    values = samples(generate_latest(metrics).decode())  # type: ignore[arg-type]
    assert ("vllm:num_requests_running", "a") not in values
    assert values[("vllm:num_requests_running", "b")] == 2


@pytest.mark.engine
async def test_metrics_show_vllm_series_of_every_cohosted_engine_next_to_tts_ones(
    gemma_engine, qwen_engine, tmp_path: Path
) -> None:
    artifact = make_artifact(
        [("a", GEMMA, "assistant")],
        [],
        "a",
        budget=10,
        models=[ModelSpec(GEMMA, 100293760.0, 18, 640)],
        lengths=TaskLengths(60, 32),
        templates=RoleTemplates(assistant="Q: {question}\nA:"),
        decoding=Decoding(max_tokens=8, seed=1),
    )
    engines = {GEMMA: gemma_engine, QWEN: qwen_engine}
    app, _ = make_app(write_artifacts(tmp_path, artifact), engines)
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=300) as http:
        for model in ("math", QWEN):  # the profile runs on Gemma, Qwen is served directly
            reply = await http.post(
                "/v1/chat/completions",
                json={"model": model, "messages": question, "max_tokens": 8},
            )
            assert reply.status_code == 200, reply.text
        text = (await http.get("/metrics")).text

    values = samples(text)
    for model in (GEMMA, QWEN):
        assert values[("vllm:num_requests_running", model)] == 0
        assert ("vllm:num_requests_waiting", model) in values
        assert ("vllm:kv_cache_usage_perc", model) in values
        assert values[("vllm:prompt_tokens_total", model)] > 0
        assert values[("vllm:generation_tokens_total", model)] > 0
        for histogram in HISTOGRAMS:
            assert values[(f"vllm:{histogram}_seconds_count", model)] >= 1
    assert text.count("# TYPE vllm:num_requests_running gauge") == 1
    assert b"vllm:" not in generate_latest(REGISTRY)  # nothing left in the global registry
    # tts-opt's own metrics are there as before, labelled by profile and pool model.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {
        s.labels["profile"]: s.value
        for s in families["tts_request_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {"math@10": 1, QWEN: 1}
    nodes = families["tts_node_duration_seconds"].samples
    assert any(s.labels["model"] == GEMMA for s in nodes)
