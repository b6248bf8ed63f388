"""The one async interface of every engine: in-process vLLM, remote OpenAI-compatible, scripted.

An engine serves one model. `generate` streams `SampleDelta`s for the `n` samples of one request;
the last delta of each sample carries its `finish_reason`. Cancelling the consuming task, or closing
the iterator, aborts the request on the engine: callers never have to call `abort` themselves for
that, it exists for out-of-band cancellation (e.g. a server shutting down).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Literal, Protocol, runtime_checkable

import msgspec

from tts_opt.errors import UserError

MessageRole = Literal["system", "user", "assistant"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: MessageRole
    content: str


class SamplingParams(msgspec.Struct, frozen=True):
    """Decoding parameters of one request; `n` samples share the prompt (one prefill).

    `priority` ranks the request on an engine that schedules by priority (lower runs first, ties
    in arrival order): a server gives every node call of a graph request its request's rank, so
    that programs admitted earlier finish first. It never changes the answer (no cache key has it).
    """

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    # A JSON Schema (as JSON text) every sample must match: structured outputs (guided
    # decoding on vLLM, a `json_schema` response format on OpenAI-compatible servers).
    json_schema: str | None = None
    priority: int = 0


class SampleDelta(msgspec.Struct, frozen=True):
    """New text of sample `index`. Token counts are cumulative for the sample so far.

    `replayed` marks a sample that was not generated now but replayed from a store of earlier
    ones (the node-output cache); `recorded_s` is then how long its generation took when it was
    recorded (None: not recorded), the time it stands for in a latency."""

    index: int
    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    replayed: bool = False
    recorded_s: float | None = None


class Sample(msgspec.Struct, frozen=True):
    index: int
    text: str
    output_tokens: int
    finish_reason: str


class GenerationResult(msgspec.Struct, frozen=True):
    samples: tuple[Sample, ...]
    prompt_tokens: int

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.samples)


class EngineError(UserError, RuntimeError):
    """An engine could not serve a request (bad request, engine dead, remote error)."""


@runtime_checkable
class Engine(Protocol):
    """An LLM engine for one model."""

    @property
    def model(self) -> str:
        """The pool name of the model this engine serves."""
        ...

    async def start(self) -> None:
        """Load the model / open connections. Idempotent."""
        ...

    async def close(self) -> None:
        """Release everything; in-flight requests are aborted."""
        ...

    def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        """Stream the samples of one request."""
        ...

    async def abort(self, request_id: str) -> None:
        """Abort a request that is in flight; unknown ids are ignored."""
        ...

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens these messages take once templated for this model."""
        ...


class SampleTally:
    """The samples of one request folded from its deltas as they arrive: the one reduction every
    consumer of `generate` uses. A sample whose stream ended without a finish reason was cut
    short, so its reason is "abort"."""

    def __init__(self, n: int) -> None:
        self._texts: list[list[str]] = [[] for _ in range(n)]
        self._tokens = [0] * n
        self._reasons: list[str | None] = [None] * n
        self.prompt_tokens = 0

    def add(self, delta: SampleDelta) -> None:
        self._texts[delta.index].append(delta.text)
        self._tokens[delta.index] = delta.output_tokens
        self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens
        if delta.finish_reason is not None:
            self._reasons[delta.index] = delta.finish_reason

    @property
    def output_tokens(self) -> int:
        return sum(self._tokens)

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        return tuple(reason or "abort" for reason in self._reasons)

    def sample(self, index: int) -> Sample:
        """Sample `index` as it stands (complete once it has its finish reason)."""
        reason = self._reasons[index] or "abort"
        return Sample(index, "".join(self._texts[index]), self._tokens[index], reason)

    def result(self) -> GenerationResult:
        return GenerationResult(
            samples=tuple(self.sample(i) for i in range(len(self._texts))),
            prompt_tokens=self.prompt_tokens,
        )


async def collect(
    engine: Engine, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
) -> GenerationResult:
    """Run a request to completion and assemble its samples."""
    tally = SampleTally(params.n)
    async for delta in engine.generate(request_id, messages, params):
        tally.add(delta)
    return tally.result()
