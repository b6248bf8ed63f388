"""A call's priority on the engines: what the openai engine sends (to a recording endpoint, a
test double of an OpenAI-compatible server) and how the scripted engine (a test double) orders
waiting requests by it. Its real-engine counterpart is
test_vllm_engine.py::test_a_calls_priority_reaches_the_engine_request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Request, post
from litestar.response import Stream
from server_support import eventually, serving

from tts_opt.engines.base import ChatMessage, SamplingParams, collect
from tts_opt.engines.openai_engine import OpenAIEngine, OpenAIEngineConfig
from tts_opt.engines.scripted import ScriptedEngine

PROMPT = [ChatMessage("user", "Hi")]
FRAMES = (
    b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n',
    b"data: [DONE]\n\n",
)


def recording_endpoint(bodies: list[dict[str, Any]]) -> Litestar:
    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request) -> Stream:
        bodies.append(await request.json())

        async def frames() -> AsyncIterator[bytes]:
            for frame in FRAMES:
                yield frame

        return Stream(frames(), media_type="text/event-stream")

    return Litestar([chat], logging_config=None)


@pytest.mark.parametrize("send_priority", [True, False])
async def test_the_openai_engine_sends_the_priority_only_when_configured(send_priority: bool):
    bodies: list[dict[str, Any]] = []
    async with serving(recording_endpoint(bodies)) as url:
        config = OpenAIEngineConfig(
            model="m", base_url=f"{url}/v1", max_retries=0, send_priority=send_priority
        )
        engine = OpenAIEngine(config)
        result = await collect(engine, "r", PROMPT, SamplingParams(priority=5))
        await engine.close()
    assert result.samples[0].text == "ok"
    [body] = bodies
    assert body.get("priority") == (5 if send_priority else None)


async def test_the_scripted_engine_starts_waiting_requests_lowest_priority_first():
    gate = asyncio.Event()
    engine = ScriptedEngine("m", slots=1, gate=gate)

    def run(request_id: str, priority: int) -> asyncio.Task[object]:
        params = SamplingParams(max_tokens=2, priority=priority)
        return asyncio.create_task(collect(engine, request_id, PROMPT, params))

    running = run("first", 9)
    assert await eventually(lambda: engine.started)
    waiting = [run("late", 3), run("early", 1), run("tie", 3), run("cancelled", 0)]
    assert await eventually(lambda: engine.waiting == 4)
    waiting[3].cancel()  # a cancelled waiter gives up its place
    gate.set()
    await asyncio.gather(running, *waiting[:3])
    assert engine.started == ["first", "early", "late", "tie"]
    assert engine.aborted == ["cancelled"] and engine.waiting == 0
