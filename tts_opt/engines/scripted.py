"""A deterministic test double: scripted replies with controllable latency.

For unit tests and overhead benchmarks only; never a default and never reported as a real result.
Tokens are whitespace-separated words, streamed one per `token_delay_s` after `first_token_delay_s`.

With `slots`, at most that many requests generate at once and the others wait, the lowest
`priority` starting first and ties in arrival order, as in vLLM's priority scheduler; `gate`,
an event every request waits for before its first token, lets a test hold requests in place.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncGenerator, Callable, Sequence

import msgspec

from tts_opt.engines.base import ChatMessage, EngineError, SampleDelta, SamplingParams

Reply = Callable[[Sequence[ChatMessage], int], str]


def echo_reply(messages: Sequence[ChatMessage], index: int) -> str:
    """Default script: a short answer naming the sample and the start of the last message."""
    head = " ".join(messages[-1].content.split()[:4])
    return f"answer {index} to {head}"


class RecordedRequest(msgspec.Struct, frozen=True):
    request_id: str
    messages: tuple[ChatMessage, ...]
    params: SamplingParams


class ScriptedEngine:
    """Plays a scripted reply for every request and records what it was asked."""

    def __init__(
        self,
        model: str,
        reply: Reply = echo_reply,
        *,
        first_token_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        failures: int = 0,
        slots: int | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self._model = model
        self._reply = reply
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self.failures_left = failures
        self.requests: list[RecordedRequest] = []
        self.in_flight: set[str] = set()
        self.aborted: list[str] = []
        self.started: list[str] = []  # request ids in the order they got a slot
        self.slots = slots
        self.gate = gate
        self._running = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def model(self) -> str:
        return self._model

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.in_flight.clear()

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) for m in messages)

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return sum(not future.done() for _, _, future in self._waiting)

    async def _acquire(self, priority: int) -> None:
        if self.slots is not None and (self._running >= self.slots or self.waiting):
            future = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._arrivals), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # handed a slot as it was cancelled
                    self._release()
                raise
            return  # `_release` counted it as running
        self._running += 1

    def _release(self) -> None:
        self._running -= 1
        while self._waiting:
            *_, future = heapq.heappop(self._waiting)
            if not future.done():
                self._running += 1
                future.set_result(None)
                return

    async def abort(self, request_id: str) -> None:
        if request_id in self.in_flight:
            self.in_flight.discard(request_id)
            self.aborted.append(request_id)

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        self.requests.append(RecordedRequest(request_id, tuple(messages), params))
        if params.n > 1 and params.temperature == 0:  # as vLLM and OpenAI servers answer
            raise EngineError("n > 1 needs sampling (temperature > 0)")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise EngineError(f"scripted failure of {self._model} for {request_id}")
        prompt_tokens = await self.count_tokens(messages)
        self.in_flight.add(request_id)
        finished = False
        try:
            await self._acquire(params.priority)
        except asyncio.CancelledError:
            await self.abort(request_id)
            raise
        self.started.append(request_id)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.first_token_delay_s:
                await asyncio.sleep(self.first_token_delay_s)
            words = [self._reply(messages, i).split() for i in range(params.n)]
            words = [w[: params.max_tokens] for w in words]
            for step in range(max(len(w) for w in words)):
                if step and self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                for index, sample in enumerate(words):
                    if step >= len(sample):
                        continue
                    last = step == len(sample) - 1
                    reason = None
                    if last:
                        reason = "length" if len(sample) == params.max_tokens else "stop"
                    text = sample[step] if step == 0 else " " + sample[step]
                    yield SampleDelta(index, text, prompt_tokens, step + 1, reason)
            finished = True
        finally:
            self._release()
            if not finished:
                await self.abort(request_id)
            self.in_flight.discard(request_id)
