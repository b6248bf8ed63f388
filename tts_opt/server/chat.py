"""POST /v1/chat/completions: resolve the target, admit it, run it, answer as JSON or SSE.

Checks that can fail run before admission (404, 400); admission can refuse (429) or, under
load, hand the request to its profile's fallback; from then on the request holds its share
(one request, its node calls) until its run ends by any path (done, error, timeout, disconnect).
Its engine calls carry its admission order as their priority when the server schedules by
request.
A streamed request sends its headers at once, keep-alive comments while upstream nodes run and
its first chunk with the first token; a non-streamed one is cancelled if its client disconnects.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing

from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.types import Guard

from tts_opt.server.context import ServerContext
from tts_opt.server.errors import from_exception
from tts_opt.server.protocol import ChatCompletion, ChatCompletionRequest
from tts_opt.server.responses import (
    DONE,
    KEEPALIVE,
    ChunkWriter,
    completion,
    error_frame,
    run_info,
)
from tts_opt.server.streaming import paced, unless_disconnected
from tts_opt.server.targets import Completed, Target, TextDelta, check_prompt_tokens, resolve


def chat_routes(ctx: ServerContext, guards: list[Guard]) -> list[HTTPRouteHandler]:
    @post("/v1/chat/completions", status_code=200, guards=guards)
    async def chat_completions(request: Request, data: JSONBody[ChatCompletionRequest]) -> Response:
        target = resolve(ctx.registry, data, ctx.config.limits)
        try:
            await check_prompt_tokens(target, ctx.config.limits.max_prompt_tokens)
            run = _ChatRun(ctx, target, data)
            if data.stream:
                return run.stream()  # the stream ends the run, whichever way it stops
            try:
                return await unless_disconnected(run.respond(), request.receive)
            finally:
                run.end()  # also when `respond` was cancelled before it started
        except Exception as exc:
            error = from_exception(exc)
            error.profile = target.label
            raise error from exc

    return [chat_completions]


class _ChatRun:
    """One admitted request: its share, its timings and metrics, and its target's events (the
    fallback's when admission degraded it)."""

    def __init__(self, ctx: ServerContext, target: Target, request: ChatCompletionRequest):
        fallback = target.fallback()
        fallback_calls = None if fallback is None else fallback.node_calls
        self.permit = ctx.admission.admit(target.node_calls, fallback_calls)
        self.degraded_from: str | None = None
        if self.permit.degraded and fallback is not None:
            ctx.metrics.degraded.labels(target.label, fallback.label).inc()
            self.degraded_from, target = target.label, fallback
        self.priority = self.permit.sequence if ctx.config.scheduling == "request" else 0
        self.ctx = ctx
        self.target = target
        self.request = request
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.deadline = asyncio.get_running_loop().time() + ctx.config.limits.request_timeout_s
        self.first_token = False
        self.ended = False
        self.metrics = ctx.metrics.profile(target.label)
        self.metrics.in_flight.inc()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Request-Id": self.id}

    @property
    def wants_trace(self) -> bool:
        return self.request.tts_opt is not None and self.request.tts_opt.trace

    def observe(self, event: TextDelta | Completed) -> None:
        if isinstance(event, Completed):
            elapsed = time.perf_counter() - self.started
            self.ctx.metrics.completed(self.target.label, elapsed, event.usage, event.trace)
        elif not self.first_token:
            self.first_token = True
            self.metrics.first_token.observe(time.perf_counter() - self.started)

    def end(self) -> None:
        """Give the share back; idempotent, as several exit paths lead here."""
        if not self.ended:
            self.ended = True
            self.permit.release()
            self.metrics.in_flight.dec()

    async def respond(self) -> Response[ChatCompletion]:
        texts: list[list[str]] = [[] for _ in range(self.target.n)]
        completed: Completed | None = None
        # No keep-alive to send: the deadline may cancel the run wherever it is (as a disconnect
        # does), so the events need no pump task of their own (`paced`).
        events = self.target.events(self.id, self.priority)
        async with asyncio.timeout_at(self.deadline), aclosing(events):
            async for event in events:
                self.observe(event)
                if isinstance(event, TextDelta):
                    texts[event.index].append(event.text)
                else:
                    completed = event
        assert completed is not None  # a target's events end with Completed
        body = completion(
            self.id,
            self.created,
            self.target.label,
            ["".join(t) for t in texts],
            completed,
            run_info(self.target.label, completed, self.wants_trace, self.degraded_from),
        )
        return Response(body, headers=self.headers)

    def stream(self) -> Stream:
        body = self.frames()

        async def close() -> None:
            # Litestar does not close the iterator when the client disconnects while a frame
            # is being sent; closing it here ends the run (and its engine requests) on every path.
            await body.aclose()
            self.end()

        headers = {**self.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Stream(
            body, media_type="text/event-stream", headers=headers, background=BackgroundTask(close)
        )

    async def frames(self) -> AsyncGenerator[bytes]:
        options = self.request.stream_options
        writer = ChunkWriter(
            self.id,
            self.created,
            self.target.label,
            self.target.n,
            options is not None and options.include_usage,
        )
        finished = False
        try:
            events = paced(
                self.target.events(self.id, self.priority),
                deadline=self.deadline,
                heartbeat_s=self.ctx.config.keepalive_s,
            )
            async with aclosing(events):
                async for event in events:
                    if event is None:
                        yield KEEPALIVE
                        continue
                    self.observe(event)
                    if isinstance(event, TextDelta):
                        yield writer.text(event)
                        continue
                    info = run_info(self.target.label, event, self.wants_trace, self.degraded_from)
                    yield writer.finish(event, info)
                    if writer.include_usage:
                        yield writer.usage(event.usage)
            finished = True
            yield DONE
        except Exception as exc:
            finished = True
            error = from_exception(exc)
            self.ctx.metrics.errors.labels(self.target.label, error.kind).inc()
            yield error_frame(error)
            yield DONE
        finally:
            if not finished:
                self.ctx.metrics.errors.labels(self.target.label, "client_disconnected").inc()
            self.end()
