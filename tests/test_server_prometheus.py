"""A real Prometheus server (Debian's `prometheus`) scrapes a running tts-opt server on loopback,
and a PromQL query of p95 latency per profile returns a number."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from server_support import (
    QUESTION,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    write_artifacts,
)
from vllm_server import free_port

P95_PER_PROFILE = (
    "histogram_quantile(0.95, sum by (le, profile) "
    "(rate(tts_request_duration_seconds_bucket[30s])))"
)


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is missing: run `make system-deps`"
    return binary


def start_prometheus(binary: str, config: Path, url: str, data: Path) -> subprocess.Popen:
    port = url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("prometheus did not become ready")


async def query(url: str, promql: str) -> list[dict]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{url}/api/v1/query", params={"query": promql})
    reply.raise_for_status()
    return reply.json()["data"]["result"]


async def test_prometheus_scrapes_p95_latency_per_profile(prometheus_binary: str, tmp_path: Path):
    prom_url, config = f"http://127.0.0.1:{free_port()}", tmp_path / "prometheus.yml"
    write_artifacts(tmp_path / "graphs", fan_in_artifact())
    app, _ = make_app(tmp_path / "graphs", scripted_engines(first_token_delay_s=0.01))
    async with serving(app) as server_url:
        target = server_url.removeprefix("http://")
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: tts-opt\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        process = await asyncio.to_thread(
            start_prometheus, prometheus_binary, config, prom_url, tmp_path / "data"
        )
        try:
            async with httpx.AsyncClient(base_url=server_url, timeout=10) as client:
                result: list[dict] = []
                deadline = time.monotonic() + 40  # bounded: 40 s of requests at most
                while time.monotonic() < deadline:
                    for _ in range(5):
                        reply = await client.post(
                            "/v1/chat/completions", json={"model": "math", "messages": QUESTION}
                        )
                        assert reply.status_code == 200, reply.text
                    result = await query(prom_url, P95_PER_PROFILE)
                    if result and result[0]["value"][1] not in ("NaN", "+Inf"):
                        break
                    await asyncio.sleep(1)
            assert result, "prometheus returned no p95 series"
            [series] = result
            assert series["metric"]["profile"] == "math@100"
            p95 = float(series["value"][1])
            assert 0.0 < p95 < 5.0
            up = await query(prom_url, 'up{job="tts-opt"}')
            assert up[0]["value"][1] == "1"
        finally:
            process.terminate()
            process.wait(timeout=30)
