"""An engine behind any OpenAI-compatible chat endpoint: a remote `vllm serve`, another tts-opt,
or a provider. This is also how engines on other machines join a deployment."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING

import httpx
import msgspec
import openai

from tts_opt.engines.base import (
    ChatMessage,
    EngineError,
    MessageRole,
    SampleDelta,
    SamplingParams,
)

if TYPE_CHECKING:
    from openai._response import AsyncAPIResponse
    from openai.types.chat import ChatCompletionMessageParam


class OpenAIEngineConfig(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="openai", tag_field="kind"
):
    """`model` is the pool name; `served_model` the name the endpoint knows (default: `model`).
    `send_priority` sends each request's `priority` as the extra body field vLLM's server reads
    (with `--scheduling-policy priority`); off by default, as other servers reject the field."""

    model: str
    base_url: str
    served_model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = 600.0
    max_retries: int = 2
    send_priority: bool = False


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int


class _Error(msgspec.Struct):
    message: str = ""


class StreamChunk(msgspec.Struct):
    """The fields of a `chat.completion.chunk` (or a mid-stream error event) the engine reads."""

    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: _Error | None = None


_decode_chunk = msgspec.json.Decoder(StreamChunk).decode


def parse_event(line: str) -> StreamChunk | None:
    """One SSE line: a chunk, or None for `[DONE]`, comments and non-data fields.

    Decoded with msgspec instead of the `openai` client's stream reader, which builds pydantic
    models per chunk: ~10 ms of CPU per 64-token answer against ~1 ms (bench/README.md, Server).
    Raises `ValueError` for an error event or a chunk that is not one.
    """
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        chunk = _decode_chunk(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"malformed stream chunk ({exc}): {payload[:200]}") from exc
    if chunk.error is not None:
        raise ValueError(f"error event in the stream: {chunk.error.message}")
    return chunk


class OpenAIEngine:
    """Streams chat completions from an OpenAI-compatible server.

    The `openai` client makes the request (auth, retries, error statuses); its response body is
    read as raw SSE lines. Closing the response closes the HTTP connection, which is how vLLM's
    server learns to abort.
    """

    def __init__(self, config: OpenAIEngineConfig) -> None:
        self.config = config
        self._client: openai.AsyncOpenAI | None = None
        self._streams: dict[str, AsyncAPIResponse] = {}

    @property
    def model(self) -> str:
        return self.config.model

    def _api_key(self) -> str:
        if self.config.api_key_env is None:
            return "none"
        key = os.environ.get(self.config.api_key_env)
        if not key:
            raise EngineError(
                f"engine {self.model!r}: environment variable {self.config.api_key_env} is not set"
            )
        return key

    async def start(self) -> None:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self._api_key(),
                timeout=self.config.timeout_s,
                max_retries=self.config.max_retries,
            )

    async def close(self) -> None:
        for stream in list(self._streams.values()):
            await stream.close()
        self._streams.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Approximation: remote endpoints have no standard tokenize route; usage is exact."""
        return sum(len(m.content) for m in messages) // 4

    async def abort(self, request_id: str) -> None:
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            await stream.close()

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        await self.start()
        assert self._client is not None
        request = self._client.chat.completions.with_streaming_response.create(
            model=self.config.served_model or self.config.model,
            messages=[message_param(m.role, m.content) for m in messages],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            n=params.n,
            response_format=openai.omit
            if params.json_schema is None
            else {
                "type": "json_schema",
                "json_schema": {
                    "name": "reply",
                    "schema": msgspec.json.decode(params.json_schema),
                    "strict": True,
                },
            },
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"priority": params.priority} if self.config.send_priority else None,
        )
        # Servers report token usage only at the end; counts per sample until then are chunk counts.
        chunks = dict.fromkeys(range(params.n), 0)
        finished: dict[int, str] = {}
        try:
            async with request as response:
                self._streams[request_id] = response
                async for line in response.iter_lines():
                    chunk = parse_event(line)
                    if chunk is None:
                        continue
                    for choice in chunk.choices:
                        text = choice.delta.content or ""
                        if text:
                            chunks[choice.index] += 1
                            yield SampleDelta(choice.index, text, 0, chunks[choice.index])
                        if choice.finish_reason:
                            finished[choice.index] = choice.finish_reason
                    if chunk.usage is not None:
                        per_sample = _split_evenly(chunk.usage.completion_tokens, params.n)
                        for index in range(params.n):
                            yield SampleDelta(
                                index,
                                "",
                                chunk.usage.prompt_tokens,
                                per_sample[index],
                                finished.get(index, "stop"),
                            )
                        return
                for index in range(params.n):  # the server sent no usage chunk
                    yield SampleDelta(index, "", 0, chunks[index], finished.get(index, "stop"))
        except (openai.OpenAIError, httpx.HTTPError, ValueError) as exc:
            raise EngineError(f"engine {self.model!r}: {exc}") from exc
        finally:
            self._streams.pop(request_id, None)


def message_param(role: MessageRole, content: str) -> ChatCompletionMessageParam:
    """The openai client's message type for a plain-text turn: a TypedDict per role."""
    match role:
        case "system":
            return {"role": "system", "content": content}
        case "user":
            return {"role": "user", "content": content}
        case "assistant":
            return {"role": "assistant", "content": content}


def _split_evenly(total: int, parts: int) -> list[int]:
    """The usage chunk sums all samples; attribute it evenly (exact for n=1)."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]
