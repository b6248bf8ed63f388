"""`tts-opt serve`: every artifact in a directory as an OpenAI-compatible profile, on uvicorn.

Order of events: the config, every artifact and where each model comes from are checked first (a
problem stops the command with its cause named, before minutes of engine loading); then uvicorn
listens, `/health` answers, and the engines the artifacts need (plus any the config names) start
in the background; `/ready` turns 200 when they are up. SIGHUP reloads the artifacts. SIGINT and
SIGTERM stop accepting connections, let the requests in flight finish (up to `drain_timeout_s`),
then close the engines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from pathlib import Path

import uvicorn

from tts_opt.engines.pool import EnginePool, PoolConfig
from tts_opt.server.app import create_app
from tts_opt.server.config import load_config
from tts_opt.server.errors import SetupError
from tts_opt.server.profiles import ProfileError, ProfileRegistry

log = logging.getLogger("tts_opt.serve")


def serve(
    graphs: Path,
    config: Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Serve until stopped. Raises SetupError (config, artifacts, engine start) with a message
    naming the problem; `host`/`port` override the config."""
    overrides = {key: v for key, v in (("host", host), ("port", port)) if v is not None}
    settings = load_config(config, overrides=overrides)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # others: warnings
    logging.getLogger("tts_opt").setLevel(settings.log_level.upper())
    registry = ProfileRegistry.from_config(graphs, settings)
    listening = _listen(settings.host, settings.port)  # a port in use fails before any loading
    pool = EnginePool(PoolConfig(engines=settings.engines))
    models = sorted(registry.models | {engine.model for engine in settings.engines})
    try:  # where each model comes from, checked before the server starts (e.g. not pulled)
        pool.engine_configs(models)
    except Exception as exc:
        raise SetupError(f"cannot serve the models {', '.join(models)}: {exc}") from exc
    failure: list[BaseException] = []

    async def start_engines() -> None:
        try:
            await pool.start(models, on_start=lambda model: log.info("starting engine %s", model))
            profiles = registry.activate(pool.engines)
        except Exception as exc:
            log.exception("the engines did not start; shutting down")
            failure.append(exc)
            server.should_exit = True
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload, registry)
        log.info("ready: profiles %s; models %s", ", ".join(profiles.profiles), ", ".join(models))

    app = create_app(settings, registry, startup=start_engines, shutdown=pool.close)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),  # whole seconds
        )
    )
    server.run(sockets=[listening])
    if failure:
        raise SetupError(f"the engines did not start: {failure[0]}") from failure[0]


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now so that a port in use is reported at once, in one line."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _reload(registry: ProfileRegistry) -> None:
    try:
        registry.reload()
    except ProfileError as exc:
        log.error("reload failed, still serving the previous profiles: %s", exc)
