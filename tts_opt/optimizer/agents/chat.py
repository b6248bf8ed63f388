"""How the LLM agent reaches its chat model: an OpenAI-compatible endpoint or an engine of the
pool (the embedded models in-process), each reply constrained to the request's JSON schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from tts_opt.engines.base import ChatMessage, Engine, SamplingParams, collect
from tts_opt.optimizer.agents.base import ChatTurn
from tts_opt.optimizer.agents.reply_schema import ReplyFormat

# A graph reply of 5 nodes with its full table is ~450 tokens; a cut reply is invalid JSON.
REPLY_TOKENS = 1024
TEMPERATURE = 0.7


class ChatRequest(msgspec.Struct, frozen=True):
    """One chat call: the conversation, the schema the reply must match, and a seed for the
    model's sampling (replays of a search ask the same)."""

    messages: tuple[ChatTurn, ...]
    format: ReplyFormat
    seed: int | None = None


class ChatReply(msgspec.Struct, frozen=True):
    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


ChatFn = Callable[[ChatRequest], Awaitable[ChatReply]]


def openai_chat(
    model: str,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    temperature: float = TEMPERATURE,
) -> ChatFn:
    """A ChatFn on an OpenAI-compatible endpoint; the key comes from the env var `api_key_env`.
    The schema goes as a strict `json_schema` response format (guided decoding on vLLM)."""
    from openai import AsyncOpenAI

    from tts_opt.engines.openai_engine import message_param

    client = AsyncOpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none")

    async def chat(request: ChatRequest) -> ChatReply:
        response = await client.chat.completions.create(
            model=model,
            messages=[message_param(m.role, m.content) for m in request.messages],
            temperature=temperature,
            seed=request.seed,
            max_tokens=REPLY_TOKENS,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": request.format.name,
                    "schema": request.format.schema,
                    "strict": True,
                },
            },
        )
        usage = response.usage
        return ChatReply(
            content=response.choices[0].message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    return chat


def engine_chat(
    engine: Callable[[], Awaitable[Engine]], *, temperature: float = TEMPERATURE
) -> ChatFn:
    """A ChatFn on the engine `engine()` provides (started on the first call), its output held
    to the schema by the engine's structured outputs."""

    async def chat(request: ChatRequest) -> ChatReply:
        params = SamplingParams(
            max_tokens=REPLY_TOKENS,
            temperature=temperature,
            seed=request.seed,
            json_schema=msgspec.json.encode(request.format.schema).decode(),
        )
        messages = [ChatMessage(m.role, m.content) for m in request.messages]
        result = await collect(await engine(), f"agent-{uuid.uuid4().hex}", messages, params)
        sample = result.samples[0]
        return ChatReply(sample.text, result.prompt_tokens, sample.output_tokens)

    return chat
