"""OpenAI response bodies from a run's events: one JSON completion, or server-sent event frames.

The stream is OpenAI's sequence: content chunks as tokens come, the first of each choice also
carrying its role (a choice without any content gets a role chunk of its own before it
finishes), a chunk with each choice's `finish_reason`, a usage chunk (empty `choices`) when
`stream_options.include_usage` is set, then `data: [DONE]`. The role goes with the first token,
not ahead of it, because load tools (vLLM's `bench serve`) time the first token as the first
chunk with choices. Keep-alive frames are SSE comments, which clients skip. An error after the
stream has started is sent as an `error` data frame (what vLLM does, and what the `openai`
client raises as APIError).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from tts_opt.runtime.trace import Usage
from tts_opt.server.errors import APIError
from tts_opt.server.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    ChunkDelta,
    ErrorResponse,
    ResponseMessage,
    RunInfo,
    UsageInfo,
)
from tts_opt.server.targets import Completed, TextDelta

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.Encoder().encode


def usage_info(usage: Usage) -> UsageInfo:
    return UsageInfo(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


def run_info(
    label: str, completed: Completed, trace_wanted: bool, degraded_from: str | None
) -> RunInfo | UnsetType:
    """The response's `tts_opt` object: only with a trace that was asked for, or a degradation."""
    trace = completed.trace if trace_wanted else None
    if trace is None and degraded_from is None:
        return UNSET
    return RunInfo(
        profile=label,
        degraded_from=UNSET if degraded_from is None else degraded_from,
        overhead_s=UNSET if trace is None else trace.overhead_s,
        trace=UNSET if trace is None else trace,
    )


def completion(
    completion_id: str,
    created: int,
    model: str,
    texts: Sequence[str],
    completed: Completed,
    info: RunInfo | UnsetType,
) -> ChatCompletion:
    choices = [
        Choice(index=i, message=ResponseMessage(text), finish_reason=reason)
        for i, (text, reason) in enumerate(zip(texts, completed.finish_reasons, strict=True))
    ]
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=choices,
        usage=usage_info(completed.usage),
        tts_opt=info,
    )


def error_frame(error: APIError) -> bytes:
    return b"data: " + _encode(ErrorResponse(error.body)) + b"\n\n"


class ChunkWriter:
    """Frames of one streamed completion (they share id, creation time and model)."""

    def __init__(
        self, completion_id: str, created: int, model: str, n: int, include_usage: bool
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        # With include_usage every chunk has a `usage` key: null until the last.
        self.usage_field: UnsetType | None = None if include_usage else UNSET
        self.unannounced = set(range(n))  # choices whose role has not been sent yet

    def _frame(
        self,
        choices: list[ChunkChoice],
        usage: UsageInfo | UnsetType | None,
        info: RunInfo | UnsetType = UNSET,
    ) -> bytes:
        chunk = ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=usage,
            tts_opt=info,
        )
        return b"data: " + _encode(chunk) + b"\n\n"

    def _role(self, index: int) -> Literal["assistant"] | None:
        """The role on a choice's first chunk only."""
        if index not in self.unannounced:
            return None
        self.unannounced.discard(index)
        return "assistant"

    def text(self, delta: TextDelta) -> bytes:
        content = ChunkDelta(role=self._role(delta.index), content=delta.text)
        return self._frame([ChunkChoice(delta.index, content)], self.usage_field)

    def finish(self, completed: Completed, info: RunInfo | UnsetType) -> bytes:
        """One frame per choice, after a role chunk for a choice that had no content; the `tts_opt`
        object rides on the last."""
        announce = ChunkDelta(role="assistant", content="")
        roles = b"".join(
            self._frame([ChunkChoice(i, announce)], self.usage_field)
            for i in sorted(self.unannounced)
        )
        self.unannounced.clear()
        last = len(completed.finish_reasons) - 1
        return roles + b"".join(
            self._frame(
                [ChunkChoice(i, ChunkDelta(), finish_reason=reason)],
                self.usage_field,
                info if i == last else UNSET,
            )
            for i, reason in enumerate(completed.finish_reasons)
        )

    def usage(self, usage: Usage) -> bytes:
        return self._frame([], usage_info(usage))
