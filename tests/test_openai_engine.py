"""The OpenAI-compatible engine against a real vLLM OpenAI server on loopback (Gemma 270M, the
session fixture `remote_gemma`)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tts_opt.engines.base import ChatMessage, EngineError, SamplingParams, collect
from tts_opt.engines.openai_engine import OpenAIEngine, OpenAIEngineConfig, parse_event

pytestmark = pytest.mark.engine
PROMPT = [ChatMessage("user", "The capital of France is")]


@pytest.fixture
async def engine(remote_gemma: str):
    engine = OpenAIEngine(OpenAIEngineConfig(model="gemma-3-270m", base_url=remote_gemma))
    await engine.start()
    yield engine
    await engine.close()


def running_requests(base_url: str) -> float:
    metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics").text
    values = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.e+]+)$", metrics, re.M)
    assert values, "vLLM server exports no vllm:num_requests_running"
    return sum(float(v) for v in values)


async def test_n_samples_stream_with_usage(engine: OpenAIEngine):
    params = SamplingParams(max_tokens=12, temperature=0.8, seed=3, n=2)
    result = await collect(engine, "r1", PROMPT, params)
    assert [s.index for s in result.samples] == [0, 1]
    assert all(s.text and 0 < s.output_tokens <= 12 for s in result.samples)
    assert result.prompt_tokens >= 5  # BOS + the words of the prompt
    assert result.output_tokens <= 24


async def test_max_tokens_ends_with_length(engine: OpenAIEngine):
    result = await collect(engine, "r2", PROMPT, SamplingParams(max_tokens=3, temperature=0))
    [sample] = result.samples
    assert sample.finish_reason == "length" and sample.output_tokens == 3


async def test_closing_the_stream_aborts_the_request_on_the_server(
    engine: OpenAIEngine, remote_gemma: str
):
    stream = engine.generate("r3", PROMPT, SamplingParams(max_tokens=1500, temperature=1.0))
    async for delta in stream:
        if delta.text:
            break
    assert running_requests(remote_gemma) == 1
    await stream.aclose()
    for _ in range(50):
        if running_requests(remote_gemma) == 0:
            break
        await asyncio.sleep(0.1)
    assert running_requests(remote_gemma) == 0


async def test_unknown_served_model_is_an_engine_error(remote_gemma: str):
    engine = OpenAIEngine(
        OpenAIEngineConfig(model="x", base_url=remote_gemma, served_model="nope", max_retries=0)
    )
    with pytest.raises(EngineError, match="nope"):
        await collect(engine, "r4", PROMPT, SamplingParams(max_tokens=2))
    await engine.close()


def test_stream_lines_parse_to_chunks_and_skip_the_rest():
    chunk = parse_event(
        'data: {"id":"c","object":"chat.completion.chunk","choices":'
        '[{"index":1,"delta":{"content":"hi"},"finish_reason":"stop"}]}'
    )
    assert chunk is not None
    [choice] = chunk.choices
    assert (choice.index, choice.delta.content, choice.finish_reason) == (1, "hi", "stop")
    usage = parse_event('data:{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}')
    assert usage is not None and usage.usage is not None and usage.usage.completion_tokens == 5
    for line in ("data: [DONE]", "", ": keep-alive", "event: message"):
        assert parse_event(line) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('data: {"error": {"message": "engine died", "code": 500}}', "engine died"),
        ("data: {not json", "malformed stream chunk"),
        ('data: {"choices": [{"delta": {}}]}', "malformed stream chunk"),  # no index
    ],
)
def test_error_events_and_malformed_chunks_are_rejected(line: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_event(line)
