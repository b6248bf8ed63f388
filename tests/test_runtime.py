"""The graph runtime on the scripted test double: prompts, concurrency, batching, streaming,
cancellation and the failure policy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from graph_factory import make_artifact
from server_support import eventually

from tts_opt.engines.base import ChatMessage
from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.graph.cost import node_flops_measured
from tts_opt.graph.schema import Decoding, RoleTemplates
from tts_opt.runtime.executor import (
    FailurePolicy,
    GraphRunner,
    NodeFinished,
    RunError,
    RunFinished,
    SinkDelta,
)

SMALL, LARGE = "llama-3.2-1b", "llama-3.2-3b"
QUESTION = [ChatMessage("user", "What is {x} + 1 when x = 2?")]
TEMPLATES = RoleTemplates(
    system="You solve problems.",
    assistant="Q: {question}",
    assistant_with_references="Q: {question}\nRefs:\n{references}\nImprove.",
    fuser="Q: {question}\nCandidates:\n{references}\nFuse.",
    reference="<{index}> {answer}",
    reference_separator="\n",
)


def last_user(messages: Sequence[ChatMessage]) -> str:
    return messages[-1].content


def engines(**kwargs: object) -> dict[str, ScriptedEngine]:
    return {m: ScriptedEngine(m, **kwargs) for m in (SMALL, LARGE)}  # type: ignore[arg-type]


def fan_in(width: int, **fields: object):
    nodes = [(f"a{i}", SMALL, "assistant") for i in range(width)] + [("f", LARGE, "fuser")]
    edges = [(f"a{i}", "f") for i in range(width)]
    return make_artifact(nodes, edges, "f", budget=1e6, templates=TEMPLATES, **fields)


async def test_identical_assistants_become_one_request_and_the_fuser_sees_every_answer():
    pool = engines()
    result = await GraphRunner(fan_in(3), pool).run(QUESTION)

    [batched] = pool[SMALL].requests
    assert batched.params.n == 3
    assert last_user(batched.messages) == "Q: What is {x} + 1 when x = 2?"  # braces kept
    assert batched.messages[0] == ChatMessage("system", "You solve problems.")
    [fuse] = pool[LARGE].requests
    prompt = last_user(fuse.messages)
    for i in range(3):
        assert f"<{i + 1}> answer {i} to Q: What is {{x}}" in prompt
    assert prompt.endswith("Fuse.")
    assert result.answer.startswith("answer 0 to Q: What")
    assert [t.node for t in result.trace.nodes] == ["a0", "a1", "a2", "f"]
    assert all(t.batch_size == 3 for t in result.trace.nodes[:3])


async def test_greedy_identical_assistants_share_one_sample():
    pool = engines()
    result = await GraphRunner(fan_in(3, decoding=Decoding(temperature=0.0)), pool).run(QUESTION)

    [single] = pool[SMALL].requests
    assert single.params.n == 1
    [fuse] = pool[LARGE].requests
    assert last_user(fuse.messages).count("answer 0 to Q: What is") == 3
    first, *copies, sink = result.trace.nodes
    assert first.flops > 0 and [c.flops for c in copies] == [0.0, 0.0]
    assert [c.output_tokens for c in copies] == [first.output_tokens] * 2
    assert result.trace.usage.completion_tokens == first.output_tokens + sink.output_tokens


async def test_without_batching_each_node_is_its_own_request_with_its_own_seed():
    pool = engines()
    runner = GraphRunner(fan_in(3, decoding=Decoding(seed=7)), pool, batch_identical=False)
    await runner.run(QUESTION)
    seeds = [r.params.seed for r in pool[SMALL].requests]
    assert [r.params.n for r in pool[SMALL].requests] == [1, 1, 1]
    assert sorted(seeds) == [7, 8, 9]  # the seeds of one n=3 request: the same samples


async def test_graphs_asking_a_model_the_question_draw_the_same_samples():
    """A model's source samples take seeds 0, 1, ... past the decoding seed in every graph, and
    its other calls seeds after those: shared draws for the node cache, none repeated."""
    decoding = Decoding(seed=7)
    chain_first = make_artifact(  # a non-source SMALL call comes first in topological order
        [
            ("x", LARGE, "assistant"),
            ("y", SMALL, "assistant"),
            ("z", SMALL, "assistant"),
            ("f", SMALL, "fuser"),
        ],
        [("x", "y"), ("y", "f"), ("z", "f")],
        "f",
        budget=1e6,
        templates=TEMPLATES,
        decoding=decoding,
    )
    seen = {}
    for name, artifact in {"wide": fan_in(3, decoding=decoding), "chain": chain_first}.items():
        pool = engines()
        await GraphRunner(artifact, pool).run(QUESTION)
        seen[name] = sorted((r.params.seed, r.params.n) for r in pool[SMALL].requests)
    assert seen["wide"] == [(7, 3)]
    # z, a source: the wide graph's first draw; y and the fuser: seeds of their own.
    assert seen["chain"] == [(7, 1), (8, 1), (9, 1)]


async def test_usage_and_flops_are_summed_over_nodes():
    pool = engines()
    artifact = fan_in(2)
    result = await GraphRunner(artifact, pool).run(QUESTION)
    trace = result.trace
    spec = {m.name: m for m in artifact.models}
    for node in trace.nodes:
        expected = node_flops_measured(spec[node.model], node.prompt_tokens, node.output_tokens)
        assert node.flops == pytest.approx(expected)
    assert trace.flops == pytest.approx(sum(n.flops for n in trace.nodes))
    # One n=2 request (its prompt counted once) and one fuser request.
    a0, a1, f = trace.nodes
    assert trace.usage.prompt_tokens == a0.prompt_tokens + f.prompt_tokens
    assert trace.usage.completion_tokens == a0.output_tokens + a1.output_tokens + f.output_tokens


async def test_independent_nodes_run_concurrently_and_chains_wait():
    pool = {
        "m1": ScriptedEngine("m1", first_token_delay_s=0.05),
        "m2": ScriptedEngine("m2", first_token_delay_s=0.05),
        LARGE: ScriptedEngine(LARGE, first_token_delay_s=0.05),
    }
    from tts_opt.graph.schema import ModelSpec

    models = [
        ModelSpec("m1", 1e9, 16, 2048),
        ModelSpec("m2", 1e9, 16, 2048),
        ModelSpec(LARGE, 3e9, 28, 3072),
    ]
    nodes = [
        ("a", "m1", "assistant"),
        ("b", "m2", "assistant"),
        ("c", LARGE, "assistant"),
        ("f", LARGE, "fuser"),
    ]
    edges = [("a", "c"), ("b", "c"), ("a", "f"), ("c", "f")]
    artifact = make_artifact(nodes, edges, "f", budget=1e6, models=models, templates=TEMPLATES)
    result = await GraphRunner(artifact, pool).run(QUESTION)
    t = {n.node: n for n in result.trace.nodes}
    assert t["b"].start_s < t["a"].end_s and t["a"].start_s < t["b"].end_s  # overlap
    assert t["c"].start_s >= max(t["a"].end_s, t["b"].end_s)
    assert t["f"].start_s >= t["c"].end_s
    # c is an assistant with references: it saw both a's and b's answers.
    c_prompt = last_user(pool[LARGE].requests[0].messages)
    assert "Refs:" in c_prompt and "<1> answer 0" in c_prompt and "<2> answer 0" in c_prompt


async def test_sink_tokens_stream_before_the_sink_finishes():
    pool = engines(token_delay_s=0.01)
    events = [e async for e in GraphRunner(fan_in(2), pool).stream(QUESTION)]
    deltas = [i for i, e in enumerate(events) if isinstance(e, SinkDelta)]
    sink_done = next(
        i for i, e in enumerate(events) if isinstance(e, NodeFinished) and e.trace.node == "f"
    )
    assert len(deltas) > 3 and deltas[0] < sink_done
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert "".join(events[i].text for i in deltas) == finished.answer


async def test_closing_the_stream_aborts_the_sink_request():
    pool = engines(token_delay_s=0.05)
    stream = GraphRunner(fan_in(2), pool).stream(QUESTION)
    async for event in stream:
        if isinstance(event, SinkDelta):
            break
    await stream.aclose()
    assert pool[LARGE].in_flight == set()
    assert len(pool[LARGE].aborted) == 1


async def test_cancelling_the_caller_aborts_upstream_nodes():
    pool = engines(first_token_delay_s=10)
    task = asyncio.create_task(GraphRunner(fan_in(3), pool).run(QUESTION))
    assert await eventually(lambda: pool[SMALL].in_flight)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool[SMALL].in_flight == set()
    assert len(pool[SMALL].aborted) == 1
    assert pool[LARGE].requests == []  # the fuser never started


async def test_a_failed_call_is_retried():
    pool = engines()
    pool[SMALL].failures_left = 1
    result = await GraphRunner(fan_in(2), pool).run(QUESTION)
    assert [t.attempts for t in result.trace.nodes] == [2, 2, 1]
    assert all(t.status == "ok" for t in result.trace.nodes)


async def test_a_failed_assistant_is_dropped_and_the_fuser_uses_the_rest():
    pool = {
        SMALL: ScriptedEngine(SMALL, failures=5),
        LARGE: ScriptedEngine(LARGE),
    }
    nodes = [("a", SMALL, "assistant"), ("b", LARGE, "assistant"), ("f", LARGE, "fuser")]
    artifact = make_artifact(nodes, [("a", "f"), ("b", "f")], "f", budget=1e6, templates=TEMPLATES)
    result = await GraphRunner(artifact, pool, policy=FailurePolicy(retries=1)).run(QUESTION)
    status = {t.node: t.status for t in result.trace.nodes}
    assert status == {"a": "failed", "b": "ok", "f": "ok"}
    fuse_prompt = last_user(pool[LARGE].requests[-1].messages)
    assert "<1> answer 0" in fuse_prompt and "<2>" not in fuse_prompt


async def test_failures_that_leave_no_answer_fail_the_run_with_the_node_named():
    pool = {SMALL: ScriptedEngine(SMALL, failures=5), LARGE: ScriptedEngine(LARGE)}
    with pytest.raises(RunError, match="fuser 'f'"):
        await GraphRunner(fan_in(2), pool).run(QUESTION)
    pool = {SMALL: ScriptedEngine(SMALL), LARGE: ScriptedEngine(LARGE, failures=5)}
    with pytest.raises(RunError, match=r"node 'f' \(llama-3.2-3b, fuser\) failed after 2"):
        await GraphRunner(fan_in(2), pool).run(QUESTION)


async def test_strict_policy_fails_on_any_node():
    pool = {SMALL: ScriptedEngine(SMALL, failures=5), LARGE: ScriptedEngine(LARGE)}
    policy = FailurePolicy(retries=0, degrade=False)
    with pytest.raises(RunError, match="node 'a0'"):
        await GraphRunner(fan_in(2), pool, policy=policy, batch_identical=False).run(QUESTION)


def test_a_runner_needs_an_engine_for_every_model():
    with pytest.raises(ValueError, match=r"llama-3\.2-3b"):
        GraphRunner(fan_in(2), {SMALL: ScriptedEngine(SMALL)})


async def test_the_conversation_must_end_with_a_user_message():
    from tts_opt.runtime.prompts import PromptError

    with pytest.raises(PromptError):
        await GraphRunner(fan_in(2), engines()).run([ChatMessage("assistant", "hi")])
