"""Runs one graph for one request on engines.

Every call group starts as soon as its inputs are done, so independent nodes run concurrently; the
sink's tokens are streamed to the caller as they come. Closing the stream (or cancelling the task
that consumes it) cancels every call in flight, which aborts the requests on the engines.

Failure policy: a failed call is retried `retries` times. If it still fails, a non-sink node is
dropped and its successors go on with the answers that exist (`degrade=True`), unless that leaves a
fuser with nothing to fuse; a failed sink, or any failure with `degrade=False`, fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence

import msgspec

from tts_opt.engines.base import (
    ChatMessage,
    Engine,
    EngineError,
    GenerationResult,
    SampleTally,
    SamplingParams,
)
from tts_opt.errors import UserError
from tts_opt.graph.cost import node_flops_measured
from tts_opt.graph.schema import Decoding, GraphArtifact
from tts_opt.runtime.plan import CallGroup, ExecutionPlan, build_plan
from tts_opt.runtime.prompts import node_messages, split_conversation
from tts_opt.runtime.trace import NodeTrace, RunTrace, Usage


class FailurePolicy(msgspec.Struct, frozen=True):
    retries: int = 1
    degrade: bool = True


class RunError(UserError, RuntimeError):
    """The graph could not produce an answer; the message names the node and the cause."""


class SinkDelta(msgspec.Struct, frozen=True):
    """New text of the final answer."""

    text: str


class NodeFinished(msgspec.Struct, frozen=True):
    trace: NodeTrace


class RunFinished(msgspec.Struct, frozen=True):
    answer: str
    finish_reason: str
    trace: RunTrace


RunEvent = SinkDelta | NodeFinished | RunFinished


class _Failed(msgspec.Struct):
    error: BaseException


class GraphRunner:
    """Runs one artifact on a set of engines (pool model name -> engine)."""

    def __init__(
        self,
        artifact: GraphArtifact,
        engines: Mapping[str, Engine],
        *,
        policy: FailurePolicy = FailurePolicy(),
        batch_identical: bool = True,
    ) -> None:
        missing = sorted({n.model for n in artifact.nodes} - engines.keys())
        if missing:
            raise ValueError(f"no engine for model(s) {', '.join(missing)}")
        self.artifact = artifact
        self.engines = engines
        self.policy = policy
        self.plan: ExecutionPlan = build_plan(artifact, batch_identical=batch_identical)
        self.specs = {m.name: m for m in artifact.models}
        self.roles = {n.id: n.role for n in artifact.nodes}

    async def run(
        self,
        conversation: Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        decoding: Decoding | None = None,
    ) -> RunFinished:
        """Run to completion and return the answer with its trace."""
        async for event in self.stream(conversation, request_id=request_id, decoding=decoding):
            if isinstance(event, RunFinished):
                return event
        raise AssertionError("stream ended without RunFinished")  # pragma: no cover

    async def stream(
        self,
        conversation: Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        decoding: Decoding | None = None,
    ) -> AsyncGenerator[RunEvent]:
        """Yield the sink's deltas and node completions, then `RunFinished`."""
        split_conversation(conversation)  # reject a bad conversation before any engine call
        run = _GraphRun(self, list(conversation), request_id or uuid.uuid4().hex, decoding)
        task = asyncio.create_task(run.execute())
        try:
            while True:
                event = await run.events.get()
                if isinstance(event, _Failed):
                    raise event.error
                yield event
                if isinstance(event, RunFinished):
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class _GraphRun:
    """State of one execution: node outputs, traces and the event queue to the caller."""

    def __init__(
        self,
        runner: GraphRunner,
        conversation: list[ChatMessage],
        request_id: str,
        decoding: Decoding | None,
    ) -> None:
        self.runner = runner
        self.conversation = conversation
        self.request_id = request_id
        self.decoding = decoding or runner.artifact.decoding
        self.events: asyncio.Queue[RunEvent | _Failed] = asyncio.Queue()
        self.outputs: dict[str, asyncio.Future[str | None]] = {}
        self.traces: list[NodeTrace] = []
        self.usage = Usage()
        self.finish_reason = "stop"
        self.sink_streamed = False
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def execute(self) -> None:
        loop = asyncio.get_running_loop()
        plan = self.runner.plan
        self.outputs = {node: loop.create_future() for node in plan.order}
        try:
            async with asyncio.TaskGroup() as group:
                for index, call in enumerate(plan.groups):
                    group.create_task(self.run_group(index, call))
            answer = self.outputs[plan.sink].result()
            assert answer is not None  # a failed sink raises RunError
            self.events.put_nowait(RunFinished(answer, self.finish_reason, self.trace()))
        except BaseException as exc:  # the consumer re-raises it in its own task
            error = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc
            self.events.put_nowait(_Failed(error))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def trace(self) -> RunTrace:
        return RunTrace(
            request_id=self.request_id,
            nodes=tuple(sorted(self.traces, key=lambda t: self.runner.plan.order.index(t.node))),
            usage=self.usage,
            flops=sum(t.flops for t in self.traces),
            total_s=self.now(),
            engine_s=_covered_time([(t.start_s, t.end_s) for t in self.traces]),
        )

    async def run_group(self, index: int, call: CallGroup) -> None:
        references = [
            answer
            for answer in await asyncio.gather(*(self.outputs[i] for i in call.inputs))
            if answer is not None
        ]
        ready_s = self.now()
        if call.inputs and not references and call.role == "fuser":
            self.fail_group(call, ready_s, 0, f"all inputs of fuser {call.nodes[0]!r} failed")
            return
        messages = node_messages(
            self.runner.artifact.templates, call.role, self.conversation, references
        )
        params = SamplingParams(
            max_tokens=self.decoding.max_tokens,
            temperature=self.decoding.temperature,
            top_p=self.decoding.top_p,
            # Distinct seeds per call: identical prompts sent separately must not repeat a sample.
            seed=None if self.decoding.seed is None else self.decoding.seed + index,
            stop=self.decoding.stop,
            # Greedy decoding gives identical calls one answer: sample it once and share it
            # (engines also reject n > 1 without sampling).
            n=1 if self.decoding.temperature == 0 else len(call.nodes),
        )
        engine = self.runner.engines[call.model]
        for attempt in itertools.count(1):
            start_s = self.now()
            try:
                result = await self.call_engine(engine, call, index, attempt, messages, params)
            except EngineError as exc:
                # A sink that already streamed text cannot be retried without repeating it.
                if attempt > self.runner.policy.retries or (call.is_sink and self.sink_streamed):
                    self.fail_group(call, ready_s, attempt, str(exc))
                    return
                continue
            self.record(call, result, ready_s, start_s, attempt)
            return

    async def call_engine(
        self,
        engine: Engine,
        call: CallGroup,
        index: int,
        attempt: int,
        messages: list[ChatMessage],
        params: SamplingParams,
    ) -> _CallResult:
        tally = SampleTally(params.n)
        first_token_s: float | None = None
        recorded: list[float | None] = []
        request_id = f"{self.request_id}-{index}-{attempt}"
        async for delta in engine.generate(request_id, messages, params):
            if first_token_s is None and delta.text:
                first_token_s = self.now()
            if delta.replayed:
                recorded.append(delta.recorded_s)
            tally.add(delta)
            if call.is_sink and delta.text:
                self.sink_streamed = True
                self.events.put_nowait(SinkDelta(delta.text))
        known = [t for t in recorded if t is not None]
        recorded_s = max(known) if recorded and len(known) == len(recorded) else None
        return _CallResult(tally.result(), first_token_s, bool(recorded), recorded_s)

    def record(
        self, call: CallGroup, result: _CallResult, ready_s: float, start_s: float, attempts: int
    ) -> None:
        end_s = self.now()
        spec = self.runner.specs[call.model]
        generation = result.generation
        prompt_tokens = generation.prompt_tokens
        self.usage += Usage(prompt_tokens, generation.output_tokens)
        for position, node in enumerate(call.nodes):
            # Nodes beyond the samples generated share sample 0 and cost nothing more.
            sample = generation.samples[position if position < len(generation.samples) else 0]
            generated = sample.index == position
            trace = NodeTrace(
                node=node,
                model=call.model,
                role=call.role,
                status="ok",
                ready_s=ready_s,
                start_s=start_s,
                first_token_s=result.first_token_s,
                end_s=end_s,
                prompt_tokens=prompt_tokens,
                output_tokens=sample.output_tokens,
                flops=node_flops_measured(spec, prompt_tokens, sample.output_tokens)
                if generated
                else 0.0,
                attempts=attempts,
                batch_size=len(call.nodes),
                replayed=result.replayed,
                recorded_s=result.recorded_s,
            )
            self.traces.append(trace)
            self.events.put_nowait(NodeFinished(trace))
            if call.is_sink:
                self.finish_reason = sample.finish_reason
            self.outputs[node].set_result(sample.text)

    def fail_group(self, call: CallGroup, ready_s: float, attempts: int, error: str) -> None:
        end_s = self.now()
        for node in call.nodes:
            trace = NodeTrace(
                node=node,
                model=call.model,
                role=call.role,
                status="failed",
                ready_s=ready_s,
                start_s=ready_s,
                first_token_s=None,
                end_s=end_s,
                prompt_tokens=0,
                output_tokens=0,
                flops=0.0,
                attempts=attempts,
                batch_size=len(call.nodes),
                error=error,
            )
            self.traces.append(trace)
            self.events.put_nowait(NodeFinished(trace))
        if call.is_sink or not self.runner.policy.degrade:
            node = call.nodes[0]
            raise RunError(
                f"node {node!r} ({call.model}, {self.runner.roles[node]}) failed "
                f"after {attempts} attempt(s): {error}"
            )
        for node in call.nodes:
            self.outputs[node].set_result(None)


class _CallResult(msgspec.Struct):
    generation: GenerationResult
    first_token_s: float | None
    replayed: bool
    recorded_s: float | None


def _covered_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered
