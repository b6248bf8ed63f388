"""The latency of runs that replay nodes: the critical path over recorded and measured times."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import msgspec
from graph_factory import make_artifact

from tts_opt.engines.base import ChatMessage, SampleDelta, SamplingParams
from tts_opt.engines.scripted import Reply, ScriptedEngine, echo_reply
from tts_opt.runtime.critical_path import critical_path_s, run_latency_s
from tts_opt.runtime.executor import GraphRunner

SMALL, LARGE = "llama-3.2-1b", "llama-3.2-3b"
QUESTION = [ChatMessage("user", "What is 2 + 1?")]


class ReplayingEngine(ScriptedEngine):
    """Test double: a scripted engine whose samples come marked as replayed with a recorded
    generation time, as a cache would send them."""

    def __init__(self, model: str, recorded_s: float | None, reply: Reply = echo_reply) -> None:
        super().__init__(model, reply)
        self.recorded_s = recorded_s

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        async for delta in super().generate(request_id, messages, params):
            yield msgspec.structs.replace(delta, replayed=True, recorded_s=self.recorded_s)


def test_a_chain_adds_up_its_nodes() -> None:
    inputs = {"b": ["a"], "c": ["b"]}
    assert critical_path_s({"a": 1.0, "b": 2.0, "c": 3.0}, inputs, "c") == 6.0


def test_a_fan_in_waits_for_its_slowest_input_only() -> None:
    durations = {"a": 1.0, "b": 4.0, "c": 2.5, "f": 2.0}
    assert critical_path_s(durations, {"f": ["a", "b", "c"]}, "f") == 6.0
    # a -> c, a -> d, (c, d, b) -> f: the longest path a, c, f decides.
    hybrid = {"c": ["a"], "d": ["a"], "f": ["c", "d", "b"]}
    durations = {"a": 1.0, "b": 1.5, "c": 3.0, "d": 0.5, "f": 2.0}
    assert critical_path_s(durations, hybrid, "f") == 6.0


def test_an_unknown_time_the_sink_waits_for_makes_the_latency_unknown() -> None:
    assert critical_path_s({"a": 1.0, "b": None, "c": 3.0}, {"b": ["a"], "c": ["b"]}, "c") is None
    assert critical_path_s({"a": 1.0, "b": None, "f": 1.0}, {"f": ["a", "b"]}, "f") is None


async def test_a_run_without_replays_is_timed_by_its_wall_clock() -> None:
    runner = GraphRunner(make_artifact(), {m: ScriptedEngine(m) for m in (SMALL, LARGE)})
    trace = (await runner.run(QUESTION)).trace
    assert not trace.replayed and not any(node.replayed for node in trace.nodes)
    assert run_latency_s(trace, runner.plan) == trace.total_s


async def test_live_assistants_and_a_replayed_fuser_add_up_on_the_critical_path() -> None:
    """Two live 1B assistants (one request) feed a 3B fuser replayed with 5 s recorded: the run
    took almost no time, its latency is the assistants' measured time plus the 5 s."""
    engines = {SMALL: ScriptedEngine(SMALL), LARGE: ReplayingEngine(LARGE, 5.0)}
    runner = GraphRunner(make_artifact(), engines)
    trace = (await runner.run(QUESTION)).trace
    nodes = {node.node: node for node in trace.nodes}
    assert trace.replayed and nodes["f"].replayed and nodes["f"].recorded_s == 5.0
    assert not nodes["a"].replayed and nodes["a"].recorded_s is None
    latency = run_latency_s(trace, runner.plan)
    assistants = max(nodes["a"].end_s - nodes["a"].ready_s, nodes["b"].end_s - nodes["b"].ready_s)
    assert latency == assistants + 5.0
    assert trace.total_s < 5.0 < latency


async def test_replayed_assistants_count_their_recorded_time_once_in_parallel() -> None:
    engines = {SMALL: ReplayingEngine(SMALL, 2.0), LARGE: ScriptedEngine(LARGE)}
    runner = GraphRunner(make_artifact(), engines)
    trace = (await runner.run(QUESTION)).trace
    fuser = next(node for node in trace.nodes if node.node == "f")
    assert run_latency_s(trace, runner.plan) == 2.0 + (fuser.end_s - fuser.ready_s)


async def test_a_replayed_node_without_a_recorded_time_has_an_unknown_latency() -> None:
    engines = {SMALL: ScriptedEngine(SMALL), LARGE: ReplayingEngine(LARGE, None)}
    runner = GraphRunner(make_artifact(), engines)
    trace = (await runner.run(QUESTION)).trace
    fuser = next(node for node in trace.nodes if node.node == "f")
    assert fuser.replayed and fuser.duration_s is None
    assert run_latency_s(trace, runner.plan) is None


async def test_a_replayed_run_that_exited_early_ends_with_its_agreeing_inputs() -> None:
    """Both assistants replay (2 s recorded) and agree: the fuser never runs, so the latency is
    theirs alone."""
    from tts_opt.graph import AnswerExtractor, EarlyExit

    artifact = msgspec.structs.replace(
        make_artifact(), early_exit=EarlyExit(AnswerExtractor("numeric"), 2)
    )
    engine = ReplayingEngine(SMALL, 2.0, lambda messages, index: "The answer is 3")
    runner = GraphRunner(artifact, {SMALL: engine, LARGE: ScriptedEngine(LARGE)})
    trace = (await runner.run(QUESTION)).trace
    assert trace.early_exit is not None and trace.replayed
    assert run_latency_s(trace, runner.plan) == 2.0
