"""OpenAI's chat-completions wire format as msgspec Structs (what crosses the HTTP boundary).

Requests ignore fields they do not know (clients send `user`, `metadata`, `store`, ...), but the
fields that would change the answer and that tts-opt cannot honour are declared so that a request
using them is refused with a message instead of silently getting something else. Response Structs
keep OpenAI's `null`s (`logprobs`, `finish_reason`) and omit what OpenAI omits (UNSET fields).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from tts_opt.graph.schema import Accuracy, BaselineComparison, Budget, Latency
from tts_opt.runtime.trace import RunTrace


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


class RequestMessage(msgspec.Struct, frozen=True):
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class ResponseFormat(msgspec.Struct, frozen=True):
    type: str = "text"


class TtsOptOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """tts-opt's own request options, sent as `extra_body={"tts_opt": {...}}`.

    `profile` selects a profile when the client cannot set `model` freely; `trace` returns the
    per-node timings, tokens and FLOPs of the run with the response.
    """

    profile: str | None = None
    trace: bool = False


class ChatCompletionRequest(msgspec.Struct, frozen=True):
    model: str
    messages: Annotated[list[RequestMessage], Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(gt=0, le=1)] | None = None
    n: Annotated[int, Meta(ge=1)] = 1
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None  # int64, as OpenAI's
    stop: str | list[str] | None = None
    # Declared only to be refused when used: see `tts_opt.server.targets._refuse_unsupported`.
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: ResponseFormat | None = None
    tts_opt: TtsOptOptions | None = None


class UsageInfo(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RunInfo(msgspec.Struct, frozen=True):
    """The `tts_opt` object of a response, when there is something to say: the profile that
    served it; `degraded_from`, the profile the request named, when that profile's fallback
    served it under load; the opt-in trace (where the time, tokens and FLOPs of the run went)."""

    profile: str
    degraded_from: str | UnsetType = UNSET
    overhead_s: float | UnsetType = UNSET
    trace: RunTrace | UnsetType = UNSET


class ResponseMessage(msgspec.Struct, frozen=True):
    content: str
    role: Literal["assistant"] = "assistant"


class Choice(msgspec.Struct, frozen=True):
    index: int
    message: ResponseMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    object: Literal["chat.completion"] = "chat.completion"
    tts_opt: RunInfo | UnsetType = UNSET


class ChunkDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct, frozen=True):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, frozen=True):
    """With `stream_options.include_usage` every chunk carries `usage` (null but in the last)."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: UsageInfo | UnsetType | None = UNSET
    tts_opt: RunInfo | UnsetType = UNSET


class ErrorBody(msgspec.Struct, frozen=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct, frozen=True):
    error: ErrorBody


class GraphSummary(msgspec.Struct, frozen=True):
    nodes: int
    edges: int
    sink: str
    node_models: dict[str, int]  # pool model -> nodes that run on it
    text: str  # `tts_opt.graph.render.to_text`


class ProfileInfo(msgspec.Struct, frozen=True, tag="profile", tag_field="kind"):
    """What the artifact promises: measured accuracy, cost and latency, the graph's shape, and
    how it compared with the single model of its budget (`baseline`).
    `alias_of` is set on a bare task name that stands for its default budget."""

    task: str
    budget: Budget
    flops: float
    accuracy: tuple[Accuracy, ...]
    latency: Latency | None
    graph: GraphSummary
    baseline: BaselineComparison | None = None
    alias_of: str | None = None


class EngineInfo(msgspec.Struct, frozen=True, tag="model", tag_field="kind"):
    """A pool model served directly (ordinary serving on one engine)."""


class ModelCard(msgspec.Struct, frozen=True):
    id: str
    created: int
    tts_opt: ProfileInfo | EngineInfo
    owned_by: str = "tts-opt"
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelCard]
    object: Literal["list"] = "list"
