"""Session fixtures for the real embedded models: pulled once, each engine started once.

Engines are sized for a CI box (2 cores, 24 GiB): small KV caches and context. The Qwen engine
only starts when a test asks for it; once both are up they are co-hosted in this process, as in
the server. `remote_gemma` is Gemma behind a real vLLM OpenAI server in a second process, the
way engines on other machines join a deployment. The session runs on an empty cache root of its
own (`cache_guard`), so the models are provisioned as on a new machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["cache_guard", "pytester"]

GEMMA = "gemma-3-270m"
QWEN = "qwen2.5-coder-1.5b"


def _pull(name: str) -> Path:
    from tts_opt.models import pull

    return pull([name])[name]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _pull(GEMMA)


@pytest.fixture(scope="session")
def qwen_path() -> Path:
    return _pull(QWEN)


async def _engine(name: str, path: Path, **overrides) -> AsyncIterator:
    from tts_opt.engines.vllm_config import VllmEngineConfig
    from tts_opt.engines.vllm_engine import VllmEngine

    config = VllmEngineConfig(model=name, path=str(path), max_model_len=2048, **overrides)
    engine = VllmEngine(config)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture(scope="session")
async def gemma_engine(gemma_path: Path) -> AsyncIterator:
    async for engine in _engine(GEMMA, gemma_path, max_num_seqs=8, kv_cache_gib=0.5):
        yield engine


@pytest.fixture(scope="session")
async def qwen_engine(qwen_path: Path) -> AsyncIterator:
    async for engine in _engine(QWEN, qwen_path, max_num_seqs=8, kv_cache_gib=1.0):
        yield engine


@pytest.fixture(scope="session")
def remote_gemma(gemma_path: Path) -> Iterator[str]:
    """The base URL (`.../v1`) of a vLLM OpenAI server (`python -m vllm...api_server`) on
    loopback serving Gemma as `gemma-3-270m`."""
    from vllm_server import PLAIN_TEMPLATE, vllm_openai_server

    with vllm_openai_server(gemma_path, GEMMA, chat_template=PLAIN_TEMPLATE) as url:
        yield url
