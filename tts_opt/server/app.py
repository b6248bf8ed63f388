"""The Litestar app: routes, OpenAI-shaped errors, body limit, and the engines' lifecycle.

`startup` (e.g. starting the engine pool, then `registry.activate`) runs in the background once
the server listens, so `/health` answers while engines load and `/ready` turns 200 when they are
up; `shutdown` runs after the ASGI server has drained the requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from tts_opt import __version__
from tts_opt.server.auth import api_key_guards
from tts_opt.server.chat import chat_routes
from tts_opt.server.config import ServerConfig
from tts_opt.server.context import ServerContext
from tts_opt.server.errors import APIError, exception_handlers
from tts_opt.server.models import model_routes
from tts_opt.server.ops import ops_routes
from tts_opt.server.profiles import ProfileRegistry

Hook = Callable[[], Coroutine[Any, Any, None]]  # startup runs as a task: a coroutine


def create_app(
    config: ServerConfig,
    registry: ProfileRegistry,
    *,
    startup: Hook | None = None,
    shutdown: Hook | None = None,
) -> Litestar:
    ctx = ServerContext(config, registry)
    guards = api_key_guards(config.api_keys)

    def count_error(error: APIError) -> None:
        ctx.metrics.errors.labels(error.profile, error.kind).inc()

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        starting = asyncio.create_task(startup()) if startup is not None else None
        try:
            yield
        finally:
            if starting is not None and not starting.done():
                starting.cancel()
                await asyncio.wait((starting,))
            if shutdown is not None:
                await shutdown()

    return Litestar(
        route_handlers=[
            *chat_routes(ctx, guards),
            *model_routes(ctx, guards),
            *ops_routes(ctx, guards),
        ],
        # Litestar's handler map is typed per exception class; ours handles subclasses too.
        exception_handlers=exception_handlers(count_error),  # type: ignore[arg-type]
        request_max_body_size=config.limits.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="tts-opt", version=__version__),
        logging_config=None,
    )
