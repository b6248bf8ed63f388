"""Robustness of a real server on loopback: API keys, body and concurrency limits, timeouts,
client disconnects that must abort every node's engine request, reload, and metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
from server_support import (
    LARGE,
    QUESTION,
    SMALL,
    config,
    eventually,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    single_artifact,
    write_artifacts,
)

from tts_opt.engines.scripted import ScriptedEngine

BODY = {"model": "math@100", "messages": QUESTION}


@pytest.fixture
def graphs(tmp_path: Path) -> Path:
    return write_artifacts(tmp_path / "graphs", fan_in_artifact(100))


def client(url: str, key: str = "none", **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, **kwargs)


async def test_api_keys_are_required_on_the_api_but_not_on_probes(graphs):
    app, _ = make_app(graphs, scripted_engines(), config(api_keys=("sk-right",)))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client(url, "sk-wrong").chat.completions.create(**BODY)
        assert caught.value.body["code"] == "invalid_api_key"
        response = await http.get("/v1/models")  # no key at all
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert (await http.post("/admin/reload")).status_code == 401
        answer = await client(url, "sk-right").chat.completions.create(**BODY)
        assert answer.choices[0].message.content
        for probe in ("/health", "/ready", "/metrics"):
            assert (await http.get(probe)).status_code == 200


async def test_a_body_over_the_limit_gets_413(graphs):
    app, _ = make_app(graphs, scripted_engines(), config(limits={"max_body_bytes": 1000}))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        big = {"model": "math", "messages": [{"role": "user", "content": "x " * 1000}]}
        response = await http.post("/v1/chat/completions", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"


async def test_a_prompt_over_the_token_limit_gets_400(graphs):
    app, _ = make_app(graphs, scripted_engines(), config(limits={"max_prompt_tokens": 10}))
    async with serving(app) as url:
        long = [{"role": "user", "content": "word " * 11}]
        with pytest.raises(openai.BadRequestError) as caught:
            await client(url).chat.completions.create(model="math", messages=long)
        assert caught.value.body["code"] == "context_length_exceeded"


async def test_past_the_concurrency_limit_requests_get_429_with_retry_after(graphs):
    engines = scripted_engines(first_token_delay_s=0.5)
    app, _ = make_app(graphs, engines, config(limits={"max_concurrent_requests": 2}))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        api = client(url)
        running = [asyncio.create_task(api.chat.completions.create(**BODY)) for _ in range(2)]
        assert await eventually(lambda: engines[SMALL].in_flight)
        response = await http.post("/v1/chat/completions", json=BODY)
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        with pytest.raises(openai.RateLimitError):
            await api.chat.completions.create(**BODY, stream=True)
        await asyncio.gather(*running)
        # The slots are free again.
        assert (await api.chat.completions.create(**BODY)).choices


async def test_a_request_over_the_timeout_gets_504_and_its_nodes_are_aborted(graphs):
    engines = scripted_engines(first_token_delay_s=5)
    app, _ = make_app(graphs, engines, config(limits={"request_timeout_s": 0.2}))
    async with serving(app) as url:
        api = client(url)
        with pytest.raises(openai.APIStatusError) as caught:
            await api.chat.completions.create(**BODY)
        assert caught.value.status_code == 504 and caught.value.body["code"] == "timeout"
        assert engines[SMALL].in_flight == set() and len(engines[SMALL].aborted) == 1
        # Streamed: the headers are gone already, so the error comes as an error frame.
        stream = await api.chat.completions.create(**BODY, stream=True)
        with pytest.raises(openai.APIError, match="timeout"):
            async for _ in stream:
                pass
        assert engines[SMALL].in_flight == set() and len(engines[SMALL].aborted) == 2


async def free_slot(url: str, engines: dict[str, ScriptedEngine]) -> bool:
    """With one slot, a fast request succeeding shows the slot was given back."""
    for engine in engines.values():
        engine.first_token_delay_s = engine.token_delay_s = 0
    async with httpx.AsyncClient(base_url=url) as http:
        metrics = (await http.get("/metrics")).text
    answer = await client(url).chat.completions.create(**BODY)
    return bool(answer.choices) and 'tts_requests_in_flight{profile="math@100"} 0.0' in metrics


async def test_a_client_disconnect_mid_stream_aborts_every_node_request(graphs):
    engines = scripted_engines(first_token_delay_s=0.3, token_delay_s=0.2)
    app, _ = make_app(graphs, engines, config(limits={"max_concurrent_requests": 1}))
    async with serving(app) as url:
        api = client(url)
        # While the upstream assistants run (the stream has sent its headers, no chunk yet).
        stream = await api.chat.completions.create(**BODY, stream=True)
        assert await eventually(lambda: engines[SMALL].in_flight)
        await stream.close()
        assert await eventually(lambda: engines[SMALL].aborted)
        assert engines[SMALL].in_flight == set() and engines[LARGE].requests == []

        # While the sink streams its answer.
        stream = await api.chat.completions.create(**BODY, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()
        assert await eventually(lambda: engines[LARGE].aborted)
        assert engines[LARGE].in_flight == set() and engines[SMALL].in_flight == set()
        assert await free_slot(url, engines)


async def test_a_client_disconnect_cancels_a_non_streamed_request(graphs):
    engines = scripted_engines(first_token_delay_s=5)
    app, _ = make_app(graphs, engines, config(limits={"max_concurrent_requests": 1}))
    async with serving(app) as url:
        with pytest.raises(openai.APITimeoutError):
            await client(url, timeout=0.3).chat.completions.create(**BODY)
        assert await eventually(lambda: engines[SMALL].aborted)
        assert engines[SMALL].in_flight == set()
        assert await free_slot(url, engines)


async def test_reload_swaps_profiles_without_disturbing_requests_in_flight(graphs):
    engines = {
        SMALL: ScriptedEngine(SMALL),
        LARGE: ScriptedEngine(LARGE, first_token_delay_s=0.3),
    }
    app, registry = make_app(graphs, engines)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        api = client(url)
        in_flight = asyncio.create_task(api.chat.completions.create(**BODY))
        assert await eventually(lambda: engines[LARGE].in_flight)
        (graphs / "math-100.json").unlink()
        write_artifacts(graphs, single_artifact(2))
        response = await http.post("/admin/reload")
        assert response.json() == {"profiles": ["math@2"]}
        answer = await in_flight  # finished on the graph it started with
        assert answer.model == "math@100" and answer.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            await api.chat.completions.create(**BODY)
        assert (
            await api.chat.completions.create(model="math", messages=QUESTION)
        ).model == "math@2"

        # A bad artifact is refused by name and the served set stays as it was.
        (graphs / "broken.json").write_text('{"schema_version": 1}')
        response = await http.post("/admin/reload")
        assert response.status_code == 400 and "broken.json" in response.json()["error"]["message"]
        assert set(registry.current.profiles) == {"math@2"}


async def test_metrics_cover_latency_nodes_overhead_tokens_flops_and_errors(graphs):
    app, _ = make_app(graphs, scripted_engines())
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        api = client(url)
        await api.chat.completions.create(**BODY)
        async for _ in await api.chat.completions.create(**BODY, stream=True):
            pass
        with pytest.raises(openai.NotFoundError):
            await api.chat.completions.create(model="nope", messages=QUESTION)
        text = (await http.get("/metrics")).text
    profile = 'profile="math@100"'
    expected = [
        f"tts_request_duration_seconds_count{{{profile}}} 2.0",
        f"tts_time_to_first_token_seconds_count{{{profile}}} 2.0",
        f"tts_orchestration_overhead_seconds_count{{{profile}}} 2.0",
        f'tts_node_duration_seconds_count{{model="{LARGE}",node="f",{profile},role="fuser"}} 2.0',
        f'tts_node_duration_seconds_count{{model="{SMALL}",node="a",{profile},role="assistant"}}',
        f'tts_tokens_total{{kind="completion",{profile}}}',
        f"tts_flops_total{{{profile}}}",
        f"tts_requests_in_flight{{{profile}}} 0.0",
        'tts_errors_total{profile="",type="model_not_found"} 1.0',
        "process_cpu_seconds_total",  # the default registry (where vLLM's engines report)
    ]
    for line in expected:
        assert line in text, line
