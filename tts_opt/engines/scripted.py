"""A deterministic test double: scripted replies with controllable latency.

For unit tests and overhead benchmarks only; never a default and never reported as a real result.
Tokens are whitespace-separated words, streamed one per `token_delay_s` after `first_token_delay_s`.
"""

from __future__ import annotations

import asyncio
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
    ) -> None:
        self._model = model
        self._reply = reply
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self.failures_left = failures
        self.requests: list[RecordedRequest] = []
        self.in_flight: set[str] = set()
        self.aborted: list[str] = []

    @property
    def model(self) -> str:
        return self._model

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.in_flight.clear()

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) for m in messages)

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
            if not finished:
                await self.abort(request_id)
            self.in_flight.discard(request_id)
