"""Early exit on agreement, on the scripted test double: the sink is skipped exactly when a quorum
of its inputs agree, the agreeing answer is streamed at once, calls still running are aborted,
bad declarations are refused, and the server counts early exits per profile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import httpx
import msgspec
import openai
import pytest
from graph_factory import make_artifact
from server_support import (
    LARGE,
    QUESTION,
    SMALL,
    TEMPLATES,
    fan_in_artifact,
    make_app,
    serving,
    write_artifacts,
)

from tts_opt.cli.display import trace_table
from tts_opt.engines.base import ChatMessage, SampleDelta, SamplingParams
from tts_opt.engines.scripted import RecordedRequest, Reply, ScriptedEngine
from tts_opt.graph import (
    AnswerExtractor,
    Decoding,
    EarlyExit,
    GraphError,
    decode_artifact,
    dumps_artifact,
    to_text,
    validate,
)
from tts_opt.runtime.agreement import answer_key
from tts_opt.runtime.executor import GraphRunner, RunFinished, SinkDelta
from tts_opt.runtime.trace import EarlyExitTrace

ASK = [ChatMessage("user", "What is 2 + 2?")]
NUMERIC = AnswerExtractor("numeric")


def scripted(replies: Sequence[str]):
    """A reply per sample index, whatever the prompt (the fuser's is the last one)."""
    return lambda messages, index: replies[min(index, len(replies) - 1)]


def fan_in(width: int, quorum: int, models: Sequence[str] | None = None):
    """`width` assistants (on SMALL unless `models` says) into a LARGE fuser, with the rule."""
    models = models or [SMALL] * width
    nodes = [(f"a{i}", m, "assistant") for i, m in enumerate(models)] + [("f", LARGE, "fuser")]
    return make_artifact(
        nodes,
        [(f"a{i}", "f") for i in range(width)],
        "f",
        budget=1e6,
        templates=TEMPLATES,
        early_exit=EarlyExit(NUMERIC, quorum),
    )


def engines(small_replies: Sequence[str], **large: float) -> dict[str, ScriptedEngine]:
    return {
        SMALL: ScriptedEngine(SMALL, scripted(small_replies)),
        LARGE: ScriptedEngine(LARGE, scripted(["The fused answer is 4"]), **large),  # type: ignore[arg-type]
    }


async def test_agreeing_inputs_skip_the_sink_and_answer_with_the_first_to_agree():
    # a0 and a2 finish first (4 words); a1, longer, makes the quorum with a0 ("4" = "$4.00").
    pool = engines(["The answer is 4", "So the answer is $4.00 today", "The answer is 5"])
    result = await GraphRunner(fan_in(3, quorum=2), pool).run(ASK)

    assert pool[LARGE].requests == []
    assert result.answer == "The answer is 4"
    assert result.finish_reason == "stop"
    trace = result.trace
    assert trace.early_exit == EarlyExitTrace(answer="4", quorum=2, agreeing=("a0", "a1"))
    assert [(t.node, t.status) for t in trace.nodes] == [("a0", "ok"), ("a1", "ok"), ("a2", "ok")]
    assert trace.usage.completion_tokens == 4 + 6 + 4  # the assistants only
    assert trace.flops == pytest.approx(sum(t.flops for t in trace.nodes))


async def test_greedy_copies_of_one_sample_are_inputs_that_agree():
    # Greedy decoding gives identical assistants one shared sample: the fuser would read it 3 times.
    artifact = msgspec.structs.replace(fan_in(3, quorum=3), decoding=Decoding(temperature=0))
    pool = engines(["The answer is 4", "The answer is 5"])
    result = await GraphRunner(artifact, pool).run(ASK)
    assert [r.params.n for r in pool[SMALL].requests] == [1]
    assert pool[LARGE].requests == []
    assert result.trace.early_exit == EarlyExitTrace("4", 3, ("a0", "a1", "a2"))


async def test_disagreeing_inputs_run_the_fuser():
    pool = engines(["The answer is 3", "The answer is 4", "no number here"])
    result = await GraphRunner(fan_in(3, quorum=2), pool).run(ASK)

    assert len(pool[LARGE].requests) == 1
    assert result.answer == "The fused answer is 4"
    assert result.trace.early_exit is None
    assert [t.node for t in result.trace.nodes] == ["a0", "a1", "a2", "f"]


async def test_the_agreeing_answer_is_streamed_in_one_delta_before_the_run_ends():
    pool = engines(["The answer is 4"])
    events = [e async for e in GraphRunner(fan_in(2, quorum=2), pool).stream(ASK)]

    deltas = [e for e in events if isinstance(e, SinkDelta)]
    assert deltas == [SinkDelta("The answer is 4")]
    assert isinstance(events[-1], RunFinished)
    assert events[-1].answer == "The answer is 4"
    assert events.index(deltas[0]) < len(events) - 1


async def test_a_quorum_aborts_the_unfinished_sample_of_the_same_request():
    # One n=3 request: sample 1 makes the quorum with its 4th token, when sample 2 has 3 of 60.
    pool = engines(["The answer is 4", "The answer is 4", "Let me think " * 20])
    result = await GraphRunner(fan_in(3, quorum=2), pool).run(ASK)

    [request] = pool[SMALL].requests
    assert pool[SMALL].aborted == [request.request_id]
    assert pool[SMALL].in_flight == set()
    a0, a1, a2 = result.trace.nodes
    assert (a0.status, a1.status, a2.status) == ("ok", "ok", "cancelled")
    assert a2.output_tokens == 3  # what it generated before the cut, counted
    assert result.trace.usage.completion_tokens == 4 + 4 + 3
    assert pool[LARGE].requests == []


class StalledEngine(ScriptedEngine):
    """Test double: a request stays in flight without a token until it is aborted; `started` is
    set once one is in flight."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.started = asyncio.Event()

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        self.requests.append(RecordedRequest(request_id, tuple(messages), params))
        self.in_flight.add(request_id)
        self.started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        finally:
            await self.abort(request_id)
        yield SampleDelta(0, "", 0, 0)  # pragma: no cover (makes this a generator)


class GatedEngine(ScriptedEngine):
    """Test double: answers as ScriptedEngine does, once `gate` is set."""

    def __init__(self, model: str, reply: Reply, gate: asyncio.Event) -> None:
        super().__init__(model, reply)
        self.gate = gate

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        await self.gate.wait()
        async for delta in super().generate(request_id, messages, params):
            yield delta


async def test_a_quorum_aborts_the_other_calls_in_flight():
    # a2 runs on LARGE, where it stays in flight; a0 and a1 answer once it is and cancel it.
    stalled = StalledEngine(LARGE)
    pool = {
        SMALL: GatedEngine(SMALL, scripted(["The answer is 4"]), stalled.started),
        LARGE: stalled,
    }
    artifact = fan_in(3, quorum=2, models=[SMALL, SMALL, LARGE])
    async with asyncio.timeout(30):  # without the cancellation the run would wait forever
        result = await GraphRunner(artifact, pool).run(ASK)

    [a2_request] = stalled.requests  # the fuser never started
    assert stalled.aborted == [a2_request.request_id]
    assert stalled.in_flight == set()
    assert result.answer == "The answer is 4"
    assert result.trace.early_exit == EarlyExitTrace("4", 2, ("a0", "a1"))
    a2 = next(t for t in result.trace.nodes if t.node == "a2")
    assert (a2.status, a2.output_tokens) == ("cancelled", 0)


async def test_an_unreachable_quorum_lets_the_run_go_on():
    pool = engines(["The answer is 4", "The answer is 5"])
    result = await GraphRunner(fan_in(2, quorum=2), pool).run(ASK)
    assert result.answer == "The fused answer is 4"
    assert result.trace.early_exit is None


@pytest.mark.parametrize(
    ("extractor", "a", "b"),
    [
        (NUMERIC, "The answer is $1,234.50", "#### 1234.5"),
        (AnswerExtractor("choice"), "The answer is (b)", "Answer: B"),
        (AnswerExtractor("math"), "so \\boxed{\\frac{1}{2}}", "\\boxed{ \\frac{1}{2} }"),
        (AnswerExtractor("exact"), "Answer: **Paris**.", "answer: paris"),
        (AnswerExtractor("regex", pattern=r"city=(\w+)"), "city=Rome", "CITY=x city=rome"),
    ],
)
def test_answers_agree_in_the_tasks_own_sense(extractor: AnswerExtractor, a: str, b: str):
    assert answer_key(extractor, a) is not None
    assert answer_key(extractor, a) == answer_key(extractor, b)


@pytest.mark.parametrize("kind", ["numeric", "choice", "math", "exact"])
def test_an_output_without_an_answer_does_not_vote(kind: str):
    assert answer_key(AnswerExtractor(kind), "") is None  # type: ignore[arg-type]


def test_a_declared_rule_round_trips_and_is_shown():
    artifact = fan_in(3, quorum=2)
    validate(artifact)
    assert decode_artifact(dumps_artifact(artifact)) == artifact
    assert "early exit: skip f when 2 of its inputs agree on the numeric answer" in to_text(
        artifact
    )


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (EarlyExit(NUMERIC, 1), "quorum must be between 2 and the sink's 3 inputs, got 1"),
        (EarlyExit(NUMERIC, 4), "quorum must be between 2 and the sink's 3 inputs, got 4"),
        (EarlyExit(AnswerExtractor("regex"), 2), "kind 'regex' needs a pattern"),
        (EarlyExit(AnswerExtractor("regex", "(unclosed"), 2), "is not a regular expression"),
        (EarlyExit(AnswerExtractor("numeric", "x"), 2), "only read by kind 'regex'"),
        (EarlyExit(AnswerExtractor("choice", options=11), 2), "options must be between 2 and 10"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_problem(rule: EarlyExit, fragment: str):
    artifact = msgspec.structs.replace(fan_in(3, quorum=2), early_exit=rule)
    with pytest.raises(GraphError, match="early exit") as info:
        validate(artifact)
    assert fragment in str(info.value)


def test_the_sink_must_be_a_fuser():
    artifact = make_artifact(
        [("a", SMALL, "assistant"), ("b", SMALL, "assistant"), ("s", LARGE, "assistant")],
        [("a", "s"), ("b", "s")],
        "s",
        early_exit=EarlyExit(NUMERIC, 2),
    )
    with pytest.raises(GraphError, match="early exit needs a fuser sink to skip; sink 's' is an"):
        validate(artifact)


async def test_the_server_counts_early_exits_per_profile_and_traces_them(tmp_path: Path):
    artifact = msgspec.structs.replace(fan_in_artifact(100), early_exit=EarlyExit(NUMERIC, 2))
    app, _ = make_app(write_artifacts(tmp_path, artifact), engines(["The answer is 4"]))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        api = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        answer = await api.chat.completions.create(
            model="math@100", messages=QUESTION, extra_body={"tts_opt": {"trace": True}}
        )
        chunks = await api.chat.completions.create(model="math@100", messages=QUESTION, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        metrics = (await http.get("/metrics")).text

    assert answer.choices[0].message.content == streamed == "The answer is 4"
    assert answer.tts_opt["trace"]["early_exit"] == {  # type: ignore[attr-defined]
        "answer": "4",
        "quorum": 2,
        "agreeing": ["a", "b"],
    }
    assert 'tts_early_exits_total{profile="math@100"} 2.0' in metrics


async def test_the_trace_table_of_tts_opt_run_says_the_sink_did_not_run():
    result = await GraphRunner(fan_in(2, quorum=2), engines(["The answer is 4"])).run(ASK)
    caption = str(trace_table(result.trace).caption)
    assert caption.endswith("; early exit: a0, a1 agreed on 4 (quorum 2), the sink did not run")
