"""The Grafana dashboard and the alert rules query only what really exists: every metric name is
read off a live `/metrics` (a tts-opt server on loopback for `tts_*`, a real vLLM server for
`vllm:*`), every query parses as PromQL (promtool), and the error classes (4xx/5xx/429) match
the status codes the server answers with."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_support import (
    DASHBOARD,
    alert_expressions,
    dashboard_queries,
    metric_names,
    run_promtool,
)
from litestar.exceptions import HTTPException
from prometheus_client.parser import text_string_to_metric_families
from server_support import (
    QUESTION,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    write_artifacts,
)

from tts_opt.engines.base import EngineError
from tts_opt.runtime.executor import RunError
from tts_opt.runtime.prompts import PromptError
from tts_opt.server.admission import Admission
from tts_opt.server.config import Limits
from tts_opt.server.errors import APIError, from_exception, invalid, model_not_found, not_ready

# Grafana's variables, as a query reaches Prometheus.
VARIABLES = {"$__rate_interval": "1m", "$profile": ".*", "$model": ".*"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queried(prefix: str) -> set[str]:
    """The metric names with `prefix` that the dashboard and the alert rules read."""
    records = {name for name, expr in alert_expressions() if ":" in name}
    queries = dashboard_queries(dashboard()) + [expr for _, expr in alert_expressions()]
    names = {name for query in queries for name in metric_names(query)} - records
    return {name for name in names if name.startswith(prefix)}


def exported(exposition: str) -> dict[str, list[dict[str, str]]]:
    """Sample name (with _bucket/_sum/_count/_total) -> the label sets it is exported with."""
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def test_every_query_reads_tts_or_vllm_metrics_only():
    """`up` (alerts on scrape targets) is Prometheus' own; everything else is checked below."""
    assert queried("") - queried("tts_") - queried("vllm:") == {"up"}
    assert len(queried("tts_")) >= 8 and len(queried("vllm:")) >= 4


def test_every_dashboard_query_parses_as_promql(tmp_path: Path):
    """promtool parses each query (as a recording rule) with Grafana's variables filled in."""
    queries = dashboard_queries(dashboard())
    for variable, value in VARIABLES.items():
        queries = [query.replace(variable, value) for query in queries]
    rules = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", path.name, cwd=tmp_path)


def test_the_dashboard_uses_its_data_source_variable_and_unique_panel_ids():
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in (p for p in panels if p["type"] != "row"):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


async def test_the_tts_metrics_queried_exist_on_a_live_server(tmp_path: Path):
    """After one answered and one failed request, every labelled series exists."""
    app, _ = make_app(write_artifacts(tmp_path, fan_in_artifact()), scripted_engines())
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        answered = await client.post(
            "/v1/chat/completions", json={"model": "math", "messages": QUESTION}
        )
        failed = await client.post(
            "/v1/chat/completions", json={"model": "nope", "messages": QUESTION}
        )
        exposition = (await client.get("/metrics")).text
    assert (answered.status_code, failed.status_code) == (200, 404)
    assert queried("tts_") <= exported(exposition).keys()


@pytest.mark.engine
def test_the_vllm_metrics_queried_exist_on_a_live_vllm_server(remote_gemma: str):
    """The panels group engines by `model_name`: every series carries it."""
    samples = exported(httpx.get(remote_gemma.removesuffix("/v1") + "/metrics").text)
    assert queried("vllm:") <= samples.keys()
    for name in queried("vllm:"):
        assert all("model_name" in labels for labels in samples[name]), name


def server_errors() -> list[APIError]:
    """One of each kind of error the server answers with."""
    admission = Admission(Limits(max_concurrent_requests=0, retry_after_s=1))
    with pytest.raises(APIError) as refused:
        admission.admit()
    causes = (TimeoutError(), EngineError("down"), RunError("node f"), ConnectionAbortedError())
    causes += (PromptError("no user message"), HTTPException(status_code=413), RuntimeError())
    return [
        refused.value,
        not_ready(),
        model_not_found("nope"),
        invalid("bad"),
        invalid("long", code="context_length_exceeded"),
        APIError(401, "no key", code="invalid_api_key"),
        *(from_exception(cause) for cause in causes),
    ]


def type_matcher(expr: str) -> Callable[[str], bool]:
    """The `type` matcher of a PromQL selector as a predicate on an error's metric label."""
    operator, value = re.search(r'type(=~|!~|=)"([^"]*)"', expr).groups()  # type: ignore[union-attr]
    if operator == "=":
        return lambda kind: kind == value
    return lambda kind: bool(re.fullmatch(value, kind)) == (operator == "=~")


def test_error_classes_match_the_status_codes_of_the_server():
    [errors_panel] = [p for p in dashboard()["panels"] if p["title"].startswith("Errors")]
    targets = errors_panel["targets"]
    classes = {t["legendFormat"].split()[0]: type_matcher(t["expr"]) for t in targets}
    rules = dict(alert_expressions())
    for error in server_errors():
        assert classes["5xx"](error.kind) == (error.status >= 500), error.kind
        assert classes["429"](error.kind) == (error.status == 429), error.kind
        client_error = 400 <= error.status < 500 and error.status != 429
        assert classes["4xx"](error.kind) == client_error, error.kind
        assert type_matcher(rules["job:tts_server_errors:rate5m"])(error.kind) == (
            error.status >= 500
        )
        assert type_matcher(rules["TtsOptRejectingRequests"])(error.kind) == (error.status == 429)
        assert type_matcher(rules["TtsOptEnginesNotReady"])(error.kind) == (
            error.kind == not_ready().kind
        )
