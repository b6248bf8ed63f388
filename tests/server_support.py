"""A real tts-opt server on loopback for tests: uvicorn in the test's event loop, scripted engines.

The server runs in the session loop (where engine fixtures live, too); synchronous clients are
driven from a worker thread (`asyncio.to_thread`) so that the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import msgspec
import uvicorn
from graph_factory import make_artifact
from litestar import Litestar

from tts_opt.engines.base import Engine
from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.graph.io import save_artifact
from tts_opt.graph.schema import Accuracy, GraphArtifact, Latency, RoleTemplates
from tts_opt.server.app import create_app
from tts_opt.server.config import Degradation, Limits, ServerConfig
from tts_opt.server.profiles import ProfileRegistry

SMALL, LARGE = "llama-3.2-1b", "llama-3.2-3b"
TEMPLATES = RoleTemplates(
    assistant="Q: {question}",
    assistant_with_references="Q: {question}\nRefs:\n{references}\nImprove.",
    fuser="Q: {question}\nCandidates:\n{references}\nFuse.",
)
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def fan_in_artifact(budget: float = 100.0) -> GraphArtifact:
    """Two small assistants feed a large fuser (the sink): profile `math@<budget>`."""
    return make_artifact(
        budget=budget,
        templates=TEMPLATES,
        accuracy=(Accuracy("test", 0.6, 500, 0.56, 0.64),),
        latency=Latency(p50_s=1.5, p95_s=3.0, n=500),
    )


def single_artifact(budget: float = 2.0) -> GraphArtifact:
    """One small assistant: profile `math@<budget>`."""
    return make_artifact([("s", SMALL, "assistant")], [], "s", budget=budget, templates=TEMPLATES)


def write_artifacts(directory: Path, *artifacts: GraphArtifact) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        save_artifact(artifact, directory / f"{artifact.task}-{artifact.budget.value:g}.json")
    return directory


def scripted_engines(**knobs: float) -> dict[str, ScriptedEngine]:
    return {model: ScriptedEngine(model, **knobs) for model in (SMALL, LARGE)}  # type: ignore[arg-type]


def config(**fields: object) -> ServerConfig:
    """Test defaults: short keep-alive; `limits` and `degradation` may be given as dicts of
    overrides."""
    limits = msgspec.structs.replace(Limits(), **fields.pop("limits", {}))  # type: ignore[arg-type]
    degradation = Degradation(**fields.pop("degradation", {}))  # type: ignore[arg-type]
    return ServerConfig(keepalive_s=0.1, limits=limits, degradation=degradation, **fields)  # type: ignore[arg-type]


def make_app(
    graphs: Path, engines: Mapping[str, Engine], settings: ServerConfig | None = None
) -> tuple[Litestar, ProfileRegistry]:
    settings = settings or config()
    registry = ProfileRegistry.from_config(graphs, settings)
    registry.activate(engines)
    return create_app(settings, registry), registry


def _server(app: Litestar) -> tuple[uvicorn.Server, socket.socket, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    return server, sock, url


@asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port in this event loop; yields the base URL."""
    server, sock, url = _server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextmanager
def serving_in_thread(app: Litestar) -> Iterator[str]:
    """Serve `app` from a thread with its own event loop, for synchronous tests."""
    server, sock, url = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def eventually(condition, timeout_s: float = 3.0) -> bool:
    """Poll `condition()` until it holds or `timeout_s` passes."""

    async def check() -> bool:
        return condition()

    return await eventually_async(check, bool, timeout_s)


async def eventually_async(probe, holds, timeout_s: float = 3.0) -> bool:
    """Await `probe()` until `holds(result)` or `timeout_s` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not holds(await probe()):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
