"""What a chat-completion request runs: a graph profile or one pool model, with its parameters.

On a profile, `max_tokens` caps the answer of every node (each LLM call of the graph),
`temperature` and `top_p` replace the artifact's decoding for every node, and `seed` makes the run
reproducible (each engine call gets its own seed derived from it); unset ones keep the artifact's
decoding. `n > 1` and `stop` are refused on a profile: a run yields one answer, and a stop
sequence would cut every node's answer, not only the final one. On a pool model everything is
honoured as on any OpenAI server, unset parameters taking the engine defaults (`SamplingParams`).
Both kinds of target stream the same events, so the response code does not care which it runs.
A target knows what admission counts (`node_calls`) and, for a profile with a fallback, the same
request on the fallback (`fallback`); `events` takes the priority of the run's engine calls.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import msgspec

from tts_opt.engines.base import ChatMessage, Engine, MessageRole, SampleTally, SamplingParams
from tts_opt.graph.schema import Decoding
from tts_opt.runtime.executor import RunFinished, SinkDelta
from tts_opt.runtime.prompts import split_conversation
from tts_opt.runtime.trace import RunTrace, Usage
from tts_opt.server.config import Limits
from tts_opt.server.errors import invalid, model_not_found, not_ready
from tts_opt.server.profiles import Profile, ProfileRegistry
from tts_opt.server.protocol import ChatCompletionRequest, RequestMessage


class TextDelta(msgspec.Struct, frozen=True):
    index: int
    text: str


class Completed(msgspec.Struct, frozen=True):
    finish_reasons: tuple[str, ...]
    usage: Usage
    trace: RunTrace | None = None


CompletionEvent = TextDelta | Completed


class GraphTarget:
    """One run of a profile's graph; `overrides` are the request's decoding parameters.
    `engines` are those the request may run on, its fallback's included."""

    n = 1

    def __init__(
        self,
        profile: Profile,
        messages: Sequence[ChatMessage],
        overrides: Mapping[str, Any],
        fallback_profile: Profile | None = None,
    ) -> None:
        self.profile = profile
        self.label = profile.name
        self.messages = messages
        self.overrides = overrides
        self.decoding: Decoding = msgspec.structs.replace(profile.artifact.decoding, **overrides)
        self.node_calls = profile.node_calls
        self.fallback_profile = fallback_profile
        runners = [p.runner for p in (profile, fallback_profile) if p is not None]
        self.engines = tuple({r.engines[g.model]: None for r in runners for g in r.plan.groups})

    def fallback(self) -> GraphTarget | None:
        """The same request on the profile's fallback, if it has one."""
        if self.fallback_profile is None:
            return None
        return GraphTarget(self.fallback_profile, self.messages, self.overrides)

    async def events(self, request_id: str, priority: int = 0) -> AsyncGenerator[CompletionEvent]:
        stream = self.profile.runner.stream(
            self.messages, request_id=request_id, decoding=self.decoding, priority=priority
        )
        async with aclosing(stream):
            async for event in stream:
                if isinstance(event, SinkDelta):
                    yield TextDelta(0, event.text)
                elif isinstance(event, RunFinished):
                    yield Completed((event.finish_reason,), event.trace.usage, event.trace)


class ModelTarget:
    """Ordinary serving: the request as it is, on the engine of one pool model."""

    def __init__(
        self, name: str, engine: Engine, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> None:
        self.label = name
        self.engine = engine
        self.engines = (engine,)
        self.messages = messages
        self.params = params
        self.n = self.node_calls = params.n

    def fallback(self) -> None:
        """A pool model has none."""
        return None

    async def events(self, request_id: str, priority: int = 0) -> AsyncGenerator[CompletionEvent]:
        tally = SampleTally(self.n)
        params = msgspec.structs.replace(self.params, priority=priority)
        deltas = self.engine.generate(request_id, self.messages, params)
        async with aclosing(deltas):
            async for delta in deltas:
                if delta.text:
                    yield TextDelta(delta.index, delta.text)
                tally.add(delta)
        yield Completed(tally.finish_reasons, Usage(tally.prompt_tokens, tally.output_tokens))


Target = GraphTarget | ModelTarget


def resolve(registry: ProfileRegistry, request: ChatCompletionRequest, limits: Limits) -> Target:
    """The target a request names, its parameters checked; raises APIError (400/404/503)."""
    profiles = registry.current
    if profiles is None:
        raise not_ready()
    options = request.tts_opt
    name = options.profile if options is not None and options.profile else request.model
    _refuse_unsupported(request)
    max_tokens = request.max_completion_tokens or request.max_tokens
    limit = limits.max_completion_tokens
    if max_tokens is not None and max_tokens > limit:
        raise invalid(f"max_tokens is {max_tokens}, over the limit of {limit}", "max_tokens")
    messages = conversation(request.messages)
    sampling: dict[str, Any] = {  # the request's decoding overrides, each checked by its schema
        key: value
        for key, value in (
            ("max_tokens", max_tokens),
            ("temperature", request.temperature),
            ("top_p", request.top_p),
            ("seed", request.seed),
        )
        if value is not None
    }
    profile = profiles.get(name)
    if profile is not None:
        if request.n > 1:
            raise invalid("n > 1 is not supported on a graph profile: send n requests", param="n")
        if request.stop:
            raise invalid(
                "stop is not supported on a graph profile: it would cut every node's answer",
                param="stop",
            )
        split_conversation(messages)  # a graph answers the last user turn: refuse early
        return GraphTarget(profile, messages, sampling, profiles.fallback(profile))
    engine = registry.engines.get(name)
    if engine is None:
        raise model_not_found(name)
    if options is not None and options.trace:
        raise invalid("a trace is only available for graph profiles", param="tts_opt.trace")
    if request.n > limits.max_n:
        raise invalid(f"n is {request.n}, over the limit of {limits.max_n}", param="n")
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    params = SamplingParams(n=request.n, stop=stop, **sampling)
    return ModelTarget(name, engine, messages, params)


async def check_prompt_tokens(target: Target, limit: int) -> None:
    """Refuse a conversation longer than `limit` tokens on any engine the target uses."""
    for engine in target.engines:
        count = await engine.count_tokens(target.messages)
        if count > limit:
            raise invalid(
                f"the prompt has {count} tokens, over the server's limit of {limit}",
                param="messages",
                code="context_length_exceeded",
            )


_ROLES: dict[str, MessageRole] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


def conversation(messages: Sequence[RequestMessage]) -> list[ChatMessage]:
    """OpenAI messages as engine messages: text only; `developer` is a system message."""
    result = []
    for i, message in enumerate(messages):
        role = _ROLES.get(message.role)
        if role is None:
            raise invalid(
                f"role {message.role!r} is not supported (system, developer, user, assistant)",
                param=f"messages[{i}].role",
            )
        content = message.content
        if content is None:
            raise invalid("content is required", param=f"messages[{i}].content")
        if not isinstance(content, str):
            texts = []
            for j, part in enumerate(content):
                if part.type != "text" or part.text is None:
                    raise invalid(
                        f"content part of type {part.type!r} is not supported (text only)",
                        param=f"messages[{i}].content[{j}]",
                    )
                texts.append(part.text)
            content = "\n".join(texts)
        result.append(ChatMessage(role, content))
    return result


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    """Features that would change the answer and that no engine here implements."""
    response_format = request.response_format
    used = (
        ("tools", bool(request.tools), "tool calling"),
        ("functions", bool(request.functions), "function calling"),
        ("logprobs", bool(request.logprobs), "log probabilities"),
        ("logit_bias", bool(request.logit_bias), "logit bias"),
        ("presence_penalty", bool(request.presence_penalty), "a presence penalty"),
        ("frequency_penalty", bool(request.frequency_penalty), "a frequency penalty"),
        (
            "response_format",
            response_format is not None and response_format.type != "text",
            "structured output",
        ),
    )
    for param, is_used, feature in used:
        if is_used:
            raise invalid(f"{feature} (`{param}`) is not supported by tts-opt", param=param)
