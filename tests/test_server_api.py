"""The OpenAI-compatible API through the official `openai` client against a real server on
loopback: completions (sync and async, streamed and not), usage, traces, parameters, models."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import httpx
import msgspec
import openai
import pytest
from server_support import (
    LARGE,
    QUESTION,
    SMALL,
    config,
    eventually_async,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    single_artifact,
    write_artifacts,
)
from vllm.benchmarks.lib.endpoint_request_func import (
    RequestFuncInput,
    async_request_openai_chat_completions,
)

from tts_opt.engines.scripted import ScriptedEngine


@pytest.fixture
def graphs(tmp_path: Path) -> Path:
    return write_artifacts(tmp_path / "graphs", fan_in_artifact(100), single_artifact(2))


@pytest.fixture
async def server(graphs: Path):
    engines = scripted_engines()
    app, _ = make_app(graphs, engines)
    async with serving(app) as url:
        yield url, engines


def clients(url: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    kwargs = {"base_url": f"{url}/v1", "api_key": "none", "max_retries": 0}
    return openai.OpenAI(**kwargs), openai.AsyncOpenAI(**kwargs)


def words(text: str) -> int:
    return len(text.split())


async def test_a_profile_answers_with_the_sinks_text_and_usage_summed_over_nodes(server):
    url, engines = server
    _, client = clients(url)
    response = await client.chat.completions.create(
        model="math@100", messages=QUESTION, extra_body={"tts_opt": {"trace": True}}
    )
    [choice] = response.choices
    assert response.object == "chat.completion" and response.model == "math@100"
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content.startswith("answer 0 to Q: What is 2")  # the fuser's answer
    # One n=2 request for both assistants (prompt counted once), one for the fuser.
    [assistants] = engines[SMALL].requests
    [fuser] = engines[LARGE].requests
    assert assistants.params.n == 2
    prompt = sum(words(m.content) for r in (assistants, fuser) for m in r.messages)
    assert response.usage.prompt_tokens == prompt
    assert response.usage.completion_tokens == 2 * 7 + words(choice.message.content)
    assert response.usage.total_tokens == prompt + response.usage.completion_tokens
    trace = response.tts_opt  # extra fields are kept by the client
    assert trace["profile"] == "math@100"
    assert [n["node"] for n in trace["trace"]["nodes"]] == ["a", "b", "f"]
    assert trace["trace"]["flops"] == pytest.approx(
        sum(n["flops"] for n in trace["trace"]["nodes"])
    )
    assert 0 <= trace["overhead_s"] < trace["trace"]["total_s"]


async def test_streamed_text_equals_non_streamed_text_sync_and_async(server):
    url, _ = server
    sync_client, async_client = clients(url)
    request = {"model": "math", "messages": QUESTION, "seed": 7, "temperature": 0.5}
    plain = await async_client.chat.completions.create(**request)

    chunks = [
        c
        async for c in await async_client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    ]

    def sync_stream() -> list:
        return list(sync_client.chat.completions.create(**request, stream=True))

    sync_chunks = await asyncio.to_thread(sync_stream)
    sync_plain = await asyncio.to_thread(lambda: sync_client.chat.completions.create(**request))

    def text(chunks) -> str:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert text(chunks) == text(sync_chunks) == plain.choices[0].message.content
    assert sync_plain.choices[0].message.content == plain.choices[0].message.content
    # OpenAI's sequence: the role with the first token, content, finish_reason, then usage.
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == "answer"
    assert all(c.choices[0].delta.role is None for c in chunks[1:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == "math@100"
    assert all(c.usage is None and "usage" not in c.model_fields_set for c in sync_chunks)


async def test_the_sse_stream_is_exact_and_keeps_alive_while_upstream_nodes_run(graphs):
    engines = {
        SMALL: ScriptedEngine(SMALL, first_token_delay_s=0.35),
        LARGE: ScriptedEngine(LARGE, token_delay_s=0.05),
    }
    app, _ = make_app(graphs, engines)
    async with serving(app) as url, httpx.AsyncClient() as http:
        body = {"model": "math@100", "messages": QUESTION, "stream": True}
        arrivals: list[tuple[float, str]] = []
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line:
                    arrivals.append((time.perf_counter(), line))
    lines = [line for _, line in arrivals]
    # Only keep-alive comments while the assistants think: the first chunk is the first token.
    first = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    assert first > 0 and set(lines[:first]) == {": keep-alive"}
    assert '"role":"assistant","content":"answer"' in lines[first]
    assert lines[-1] == "data: [DONE]"
    content = [(t, line) for t, line in arrivals if '"content":"' in line]
    finish = next(t for t, line in arrivals if '"finish_reason":"stop"' in line)
    # The first answer token reached the client long before the sink finished.
    assert len(content) > 5 and content[0][0] < finish - 0.15


async def test_each_choice_s_role_rides_on_its_first_token_or_precedes_its_finish(graphs):
    """Load tools time the first chunk with choices as the first token: no role-only chunk
    may come ahead of the tokens; a choice that produced no text still gets its role."""

    def second_sample_silent(messages, index: int) -> str:
        return "" if index == 1 else "four it is"

    engines = {SMALL: ScriptedEngine(SMALL, second_sample_silent), LARGE: ScriptedEngine(LARGE)}
    app, _ = make_app(graphs, engines)
    async with serving(app) as url:
        _, client = clients(url)
        stream = await client.chat.completions.create(
            model=SMALL, messages=QUESTION, n=2, temperature=0.5, stream=True
        )
        deltas = [(c.choices[0].index, c.choices[0]) async for c in stream if c.choices]
    first_index, first = deltas[0]
    assert (first_index, first.delta.role, first.delta.content) == (0, "assistant", "four")
    roles = [(i, c.delta.content) for i, c in deltas if c.delta.role == "assistant"]
    assert roles == [(0, "four"), (1, "")]
    silent = [c for i, c in deltas if i == 1]
    assert silent[0].delta.role == "assistant" and silent[-1].finish_reason is not None


async def test_vllms_benchmark_client_times_the_first_token_not_the_headers(graphs):
    """`vllm bench serve`'s own request function, as it measures TTFT and tokens."""
    engines = scripted_engines(first_token_delay_s=0.3)
    # No keep-alive during the delay: vLLM 0.32's client strips each read before buffering it,
    # so a comment that arrives alone swallows the frames after it.
    app, _ = make_app(graphs, engines, msgspec.structs.replace(config(), keepalive_s=60))
    async with serving(app) as url, aiohttp.ClientSession() as session:
        plain = await clients(url)[1].chat.completions.create(model="math@2", messages=QUESTION)
        request = RequestFuncInput(
            prompt=QUESTION[0]["content"],
            api_url=f"{url}/v1/chat/completions",
            prompt_len=1,
            output_len=16,
            model="math@2",
        )
        measured = await async_request_openai_chat_completions(request, session)
    assert measured.success, measured.error
    assert measured.generated_text == plain.choices[0].message.content
    assert measured.output_tokens == plain.usage.completion_tokens
    assert measured.ttft >= 0.3  # the first token's chunk, not the response's headers
    # One chunk per token and the finish chunk: the role rides on the first token's chunk.
    assert len(measured.itl) == measured.output_tokens


async def test_models_lists_profiles_aliases_and_pool_models(server):
    url, _ = server
    _, client = clients(url)
    models = {m.id: m for m in (await client.models.list()).data}
    assert set(models) == {"math@100", "math@2", "math", SMALL, LARGE}
    profile = models["math@100"].tts_opt
    assert profile["kind"] == "profile" and profile["budget"] == {"value": 100.0, "unit": "flops"}
    assert profile["accuracy"][0]["value"] == 0.6 and profile["latency"]["p95_s"] == 3.0
    assert profile["flops"] > 0 and profile["graph"]["nodes"] == 3
    assert profile["graph"]["node_models"] == {SMALL: 2, LARGE: 1}
    assert "sink: f" in profile["graph"]["text"]
    assert models["math"].tts_opt["alias_of"] == "math@100"
    assert models[SMALL].tts_opt == {"kind": "model"}
    assert (await client.models.retrieve("math@2")).id == "math@2"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


async def test_a_profile_can_be_named_in_extra_body_and_budgets_in_any_notation(server):
    url, engines = server
    _, client = clients(url)
    response = await client.chat.completions.create(
        model="anything", messages=QUESTION, extra_body={"tts_opt": {"profile": "math@2.0"}}
    )
    assert response.model == "math@2"
    assert engines[LARGE].requests == []  # the single-node graph runs on the small model only


async def test_profile_parameters_apply_to_every_node_and_unfit_ones_are_refused(server):
    url, engines = server
    _, client = clients(url)
    await client.chat.completions.create(
        model="math@100", messages=QUESTION, max_tokens=3, temperature=0.2, seed=11
    )
    for request in engines[SMALL].requests + engines[LARGE].requests:
        assert request.params.max_tokens == 3 and request.params.temperature == 0.2
    # The request's seed is each model's first: the assistant's (SMALL) and the fuser's (LARGE).
    seeds = [r.params.seed for r in engines[SMALL].requests + engines[LARGE].requests]
    assert seeds == [11, 11]
    for extra, param in (({"n": 2}, "n"), ({"stop": ["\n"]}, "stop")):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="math", messages=QUESTION, **extra)
        assert caught.value.body["param"] == param


async def test_a_pool_model_is_served_directly_with_every_parameter(server):
    url, engines = server
    _, client = clients(url)
    response = await client.chat.completions.create(
        model=SMALL,
        messages=[{"role": "system", "content": "Be brief."}, *QUESTION],
        n=3,
        stop="\n",
        seed=5,
        max_completion_tokens=4,
        top_p=0.9,
    )
    assert response.model == SMALL
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.choices[2].message.content == "answer 2 to What"  # 4 tokens
    assert {c.finish_reason for c in response.choices} == {"length"}
    [request] = engines[SMALL].requests
    assert request.params.n == 3 and request.params.stop == ("\n",)
    assert (request.params.seed, request.params.max_tokens, request.params.top_p) == (5, 4, 0.9)
    assert request.messages[0].role == "system"
    assert response.usage.completion_tokens == 12

    chunks = [
        c
        async for c in await client.chat.completions.create(
            model=SMALL, messages=QUESTION, n=2, stream=True
        )
    ]
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "answer 0 to What is 2 +", 1: "answer 1 to What is 2 +"}


async def test_requests_the_server_cannot_honour_are_refused_in_openais_shape(server):
    url, _ = server
    _, client = clients(url)
    refused = [
        ({"model": "no-such-profile"}, openai.NotFoundError, "model_not_found"),
        (
            {"model": "math", "tools": [{"type": "function", "function": {"name": "f"}}]},
            openai.BadRequestError,
            None,
        ),
        ({"model": "math", "max_tokens": 10**6}, openai.BadRequestError, None),
        (
            {"model": SMALL, "extra_body": {"tts_opt": {"trace": True}}},
            openai.BadRequestError,
            None,
        ),
        (
            {"model": "math", "messages": [{"role": "assistant", "content": "hi"}]},
            openai.BadRequestError,
            None,
        ),
        (
            {"model": "math", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            openai.BadRequestError,
            None,
        ),
    ]
    for request, error, code in refused:
        request = {"messages": QUESTION, **request}
        with pytest.raises(error) as caught:
            await client.chat.completions.create(**request)
        body = caught.value.body
        assert body["message"] and body["type"] and body["code"] == code


async def test_malformed_and_invalid_bodies_get_400_not_500(server):
    url, _ = server
    async with httpx.AsyncClient(base_url=url) as http:
        for content in (
            b"{not json",
            b"",
            b"[1, 2]",
            b'{"model": "math"}',
            b'{"model": "math", "messages": [], "stream": false}',
            b'{"model": "math", "messages": [{"role": "user", "content": 5}]}',
            b'{"model": "math", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "many"}',
        ):
            response = await http.post(
                "/v1/chat/completions",
                content=content,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 400, content
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
        response = await http.get("/v1/nothing")
        assert response.status_code == 404 and "Invalid URL" in response.json()["error"]["message"]


async def test_health_and_ready(server):
    url, _ = server
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/ready")).json() == {"status": "ready"}


async def test_ready_is_503_while_the_engines_start(graphs):
    from tts_opt.server.app import create_app
    from tts_opt.server.profiles import ProfileRegistry

    registry = ProfileRegistry(graphs)
    started = asyncio.Event()

    async def start_engines() -> None:
        await started.wait()
        registry.activate(scripted_engines())

    app = create_app(config(), registry, startup=start_engines)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 503
        response = await http.post(
            "/v1/chat/completions", json={"model": "math", "messages": QUESTION}
        )
        assert response.status_code == 503 and response.headers["retry-after"]
        started.set()
        assert await eventually_async(lambda: http.get("/ready"), lambda r: r.status_code == 200), (
            "/ready did not turn 200 once the engines were up"
        )
