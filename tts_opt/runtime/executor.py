"""Runs one graph for one request on engines.

Every call group starts as soon as its inputs are done, so independent nodes run concurrently; the
sink's tokens are streamed to the caller as they come. Closing the stream (or cancelling the task
that consumes it) cancels every call in flight, which aborts the requests on the engines.

Failure policy: a failed call is retried `retries` times. If it still fails, a non-sink node is
dropped and its successors go on with the answers that exist (`degrade=True`), unless that leaves a
fuser with nothing to fuse; a failed sink, or any failure with `degrade=False`, fails the run.

Every engine call of a run carries the run's `priority` (lower runs first on an engine that
schedules by priority; see `SamplingParams`).

Early exit (an artifact's `early_exit` rule): each input of the sink votes with the answer in its
output as soon as that sample finishes. When `quorum` votes agree, the run answers with the output
of the first agreeing input (complete at that moment, and the answer the others confirmed),
streamed in one delta, cancels every call still running and never starts the sink. Until then,
or if the quorum is never reached, the run goes on as without the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing

import msgspec

from tts_opt.engines.base import (
    ChatMessage,
    Engine,
    EngineError,
    SampleTally,
    SamplingParams,
)
from tts_opt.errors import UserError
from tts_opt.graph.cost import node_flops_measured
from tts_opt.graph.schema import Decoding, GraphArtifact
from tts_opt.runtime.agreement import Agreement, Votes
from tts_opt.runtime.plan import CallGroup, ExecutionPlan, build_plan, sampling_params
from tts_opt.runtime.prompts import node_messages, split_conversation
from tts_opt.runtime.trace import EarlyExitTrace, NodeTrace, RunTrace, Usage


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
        priority: int = 0,
    ) -> RunFinished:
        """Run to completion and return the answer with its trace."""
        events = self.stream(
            conversation, request_id=request_id, decoding=decoding, priority=priority
        )
        async for event in events:
            if isinstance(event, RunFinished):
                return event
        raise AssertionError("stream ended without RunFinished")  # pragma: no cover

    async def stream(
        self,
        conversation: Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        decoding: Decoding | None = None,
        priority: int = 0,
    ) -> AsyncGenerator[RunEvent]:
        """Yield the sink's deltas and node completions, then `RunFinished`."""
        split_conversation(conversation)  # reject a bad conversation before any engine call
        request_id = request_id or uuid.uuid4().hex
        run = _GraphRun(self, list(conversation), request_id, decoding, priority)
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
        priority: int,
    ) -> None:
        self.runner = runner
        self.conversation = conversation
        self.request_id = request_id
        self.decoding = decoding or runner.artifact.decoding
        self.priority = priority
        self.events: asyncio.Queue[RunEvent | _Failed] = asyncio.Queue()
        self.outputs: dict[str, asyncio.Future[str | None]] = {}
        self.traces: list[NodeTrace] = []
        self.usage = Usage()
        self.finish_reason = "stop"
        self.sink_streamed = False
        rule = runner.artifact.early_exit
        sink_inputs = next(g.inputs for g in runner.plan.groups if g.is_sink)
        self.votes = None if rule is None else Votes(rule, sink_inputs)
        self.agreement: Agreement | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def execute(self) -> None:
        loop = asyncio.get_running_loop()
        plan = self.runner.plan
        self.outputs = {node: loop.create_future() for node in plan.order}
        try:
            async with asyncio.TaskGroup() as group:
                self.tasks = [
                    group.create_task(self.run_group(index, call))
                    for index, call in enumerate(plan.groups)
                ]
            answer: str | None
            if self.agreement is not None:
                answer = self.agreement.sample.text
                self.finish_reason = self.agreement.sample.finish_reason
            else:
                answer = self.outputs[plan.sink].result()
            assert answer is not None  # a failed sink raises RunError
            self.events.put_nowait(RunFinished(answer, self.finish_reason, self.trace()))
        except BaseException as exc:  # the consumer re-raises it in its own task
            error = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc
            self.events.put_nowait(_Failed(error))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def trace(self) -> RunTrace:
        agreement, rule = self.agreement, self.runner.artifact.early_exit
        early_exit = None
        if agreement is not None and rule is not None:
            early_exit = EarlyExitTrace(agreement.answer, rule.quorum, agreement.nodes)
        return RunTrace(
            request_id=self.request_id,
            nodes=tuple(sorted(self.traces, key=lambda t: self.runner.plan.order.index(t.node))),
            usage=self.usage,
            flops=sum(t.flops for t in self.traces),
            total_s=self.now(),
            engine_s=_covered_time([(t.start_s, t.end_s) for t in self.traces]),
            early_exit=early_exit,
        )

    async def run_group(self, index: int, call: CallGroup) -> None:
        if call.inputs:  # `wait`, unlike `gather`, leaves the futures alone when cancelled
            await asyncio.wait([self.outputs[i] for i in call.inputs])
        references = [
            answer for i in call.inputs if (answer := self.outputs[i].result()) is not None
        ]
        ready_s = self.now()
        if call.inputs and not references and call.role == "fuser":
            self.fail_group(call, ready_s, 0, f"all inputs of fuser {call.nodes[0]!r} failed")
            return
        messages = node_messages(
            self.runner.artifact.templates, call.role, self.conversation, references
        )
        params = sampling_params(self.decoding, call, self.priority)
        engine = self.runner.engines[call.model]
        for attempt in itertools.count(1):
            start_s = self.now()
            live = _LiveCall(params)
            try:
                await self.call_engine(engine, call, index, attempt, messages, live)
            except asyncio.CancelledError:
                if self.agreement is not None:  # cut short by the early exit: what ran counts
                    self.record(call, live, ready_s, start_s, attempt)
                raise
            except EngineError as exc:
                if self.votes is not None:  # samples of a failed request do not count
                    self.votes.withdraw(call.nodes)
                # A sink that already streamed text cannot be retried without repeating it.
                if attempt > self.runner.policy.retries or (call.is_sink and self.sink_streamed):
                    self.fail_group(call, ready_s, attempt, str(exc))
                    return
                continue
            self.record(call, live, ready_s, start_s, attempt)
            return

    async def call_engine(
        self,
        engine: Engine,
        call: CallGroup,
        index: int,
        attempt: int,
        messages: list[ChatMessage],
        live: _LiveCall,
    ) -> None:
        """Stream one request into `live`; stops early when a finished sample makes a quorum."""
        request_id = f"{self.request_id}-{index}-{attempt}"
        deltas = engine.generate(request_id, messages, live.params)
        async with aclosing(deltas):
            async for delta in deltas:
                if live.first_token_s is None and delta.text:
                    live.first_token_s = self.now()
                if delta.replayed:
                    live.recorded.append(delta.recorded_s)
                live.tally.add(delta)
                if call.is_sink and delta.text:
                    self.sink_streamed = True
                    self.events.put_nowait(SinkDelta(delta.text))
                if delta.finish_reason is not None and self.vote(call, live, delta.index):
                    return

    def vote(self, call: CallGroup, live: _LiveCall, index: int) -> bool:
        """Count finished sample `index` for the nodes it serves; on a quorum, answer with the
        agreement and cancel every other call (the caller ends its own)."""
        if self.votes is None:
            return False
        sample = live.tally.sample(index)
        for position, node in enumerate(call.nodes):
            # Nodes beyond the samples generated share sample 0 (see `record`).
            if (position if position < live.params.n else 0) != index:
                continue
            agreement = self.votes.add(node, sample)
            if agreement is not None:
                self.agreement = agreement
                self.events.put_nowait(SinkDelta(agreement.sample.text))
                current = asyncio.current_task()
                for task in self.tasks:
                    if task is not current:
                        task.cancel()
                return True
        return False

    def record(
        self, call: CallGroup, live: _LiveCall, ready_s: float, start_s: float, attempts: int
    ) -> None:
        end_s = self.now()
        spec = self.runner.specs[call.model]
        generation = live.tally.result()
        prompt_tokens = generation.prompt_tokens
        self.usage += Usage(prompt_tokens, generation.output_tokens)
        for position, node in enumerate(call.nodes):
            # Nodes beyond the samples generated share sample 0 and cost nothing more.
            sample = generation.samples[position if position < len(generation.samples) else 0]
            generated = sample.index == position
            cut = self.agreement is not None and sample.finish_reason == "abort"
            trace = NodeTrace(
                node=node,
                model=call.model,
                role=call.role,
                status="cancelled" if cut else "ok",
                ready_s=ready_s,
                start_s=start_s,
                first_token_s=live.first_token_s,
                end_s=end_s,
                prompt_tokens=prompt_tokens,
                output_tokens=sample.output_tokens,
                flops=node_flops_measured(spec, prompt_tokens, sample.output_tokens)
                if generated
                else 0.0,
                attempts=attempts,
                batch_size=len(call.nodes),
                replayed=live.replayed,
                recorded_s=live.recorded_s,
            )
            self.traces.append(trace)
            self.events.put_nowait(NodeFinished(trace))
            if call.is_sink:
                self.finish_reason = sample.finish_reason
            self.outputs[node].set_result(None if cut else sample.text)

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


class _LiveCall:
    """One engine request as it streams: read by `record` also when it was cut short."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.tally = SampleTally(params.n)
        self.first_token_s: float | None = None
        self.recorded: list[float | None] = []  # generation times of the replayed samples

    @property
    def replayed(self) -> bool:
        return bool(self.recorded)

    @property
    def recorded_s(self) -> float | None:
        """The slowest replayed sample's recorded time (the call's nodes are released
        together); None when one is unknown or nothing was replayed."""
        known = [t for t in self.recorded if t is not None]
        return max(known) if known and len(known) == len(self.recorded) else None


def _covered_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered
