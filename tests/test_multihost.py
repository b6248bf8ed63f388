"""Engines on two hosts, chosen in the server config only: a graph whose assistants run on Gemma
behind a real vLLM OpenAI server in a second process (`remote_gemma`, kind "openai") and whose
fuser runs on an in-process vLLM Qwen engine (kind "vllm"), served on loopback and asked with
the official `openai` client. The engines are the session's: no extra vLLM start."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest
from graph_factory import make_artifact
from server_support import make_app, serving, write_artifacts

from tts_opt.engines.openai_engine import OpenAIEngine
from tts_opt.engines.pool import EnginePool, PoolConfig
from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.graph.schema import Decoding, ModelSpec, RoleTemplates, TaskLengths
from tts_opt.server.config import load_config

pytestmark = pytest.mark.engine

GEMMA, QWEN = "gemma-3-270m", "qwen2.5-coder-1.5b"
TEMPLATES = RoleTemplates(
    assistant="Q: What is 3 + 4?\nA: 3 + 4 = 7.\n\nQ: {question}\nA:",
    fuser="Question: {question}\n{references}\nReply with the correct answer only.",
    reference="Candidate {index}: {answer}",
    reference_separator="\n",
)


def server_toml(qwen_path: Path, remote_url: str) -> str:
    """The in-process engine as the session's `qwen_engine` is configured (tests/conftest.py)."""
    return f"""
[[engines]]
kind = "vllm"
model = "{QWEN}"
path = "{qwen_path}"
max_model_len = 2048
max_num_seqs = 8
kv_cache_gib = 1.0

[[engines]]
kind = "openai"
model = "{GEMMA}"
base_url = "{remote_url}"
"""


def remote_requests(base_url: str) -> float:
    metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics").text
    return sum(map(float, re.findall(r"^vllm:request_success_total\{.*\} (\S+)$", metrics, re.M)))


@pytest.fixture
async def server(qwen_engine, qwen_path: Path, remote_gemma: str, tmp_path: Path):
    """The pool as `tts-opt serve` builds it from the config, its in-process engine being the
    session's (the same config, already started)."""
    config_file = tmp_path / "server.toml"
    config_file.write_text(server_toml(qwen_path, remote_gemma))
    settings = load_config(config_file, environ={})
    pool = EnginePool(PoolConfig(engines=settings.engines))
    [in_process] = [e for e in settings.engines if isinstance(e, VllmEngineConfig)]
    assert in_process == qwen_engine.config
    pool.engines[QWEN] = qwen_engine
    artifact = make_artifact(
        [("a", GEMMA, "assistant"), ("b", GEMMA, "assistant"), ("f", QWEN, "fuser")],
        [("a", "f"), ("b", "f")],
        "f",
        budget=100,
        models=[ModelSpec(GEMMA, 100293760.0, 18, 640), ModelSpec(QWEN, 1543656960.0, 28, 1536)],
        lengths=TaskLengths(60, 16),
        templates=TEMPLATES,
        decoding=Decoding(max_tokens=16, temperature=0.7, seed=1),  # n>1 needs sampling
    )
    graphs = write_artifacts(tmp_path / "graphs", artifact)
    engines = await pool.start([GEMMA, QWEN])  # starts the remote engine's client only
    assert isinstance(engines[GEMMA], OpenAIEngine) and engines[QWEN] is qwen_engine
    app, _ = make_app(graphs, engines, settings)
    try:
        async with serving(app) as url:
            yield url
    finally:
        await engines.pop(GEMMA).close()  # the session keeps its Qwen engine


async def test_a_graph_runs_on_a_remote_and_an_in_process_engine(server: str, remote_gemma: str):
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    before = remote_requests(remote_gemma)
    answer = await client.chat.completions.create(
        model="math",
        messages=[{"role": "user", "content": "What is 12 + 30?"}],
        extra_body={"tts_opt": {"trace": True}},
    )
    assert answer.choices[0].message.content.strip()
    nodes = {node["node"]: node for node in answer.tts_opt["trace"]["nodes"]}  # type: ignore[attr-defined]
    assert {name: node["model"] for name, node in nodes.items()} == {
        "a": GEMMA,
        "b": GEMMA,
        "f": QWEN,
    }
    assert all(node["status"] == "ok" and node["output_tokens"] > 0 for node in nodes.values())
    assert nodes["a"]["batch_size"] == 2  # both assistants in one request to the remote server
    assert remote_requests(remote_gemma) > before  # which served them
    assert answer.usage.completion_tokens == sum(n["output_tokens"] for n in nodes.values())
