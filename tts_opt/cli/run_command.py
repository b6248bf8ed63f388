"""`tts-opt run`: one graph, one prompt, on real engines; prints the answer and the trace."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from tts_opt.cli.display import console, node_line, trace_table
from tts_opt.engines.base import ChatMessage, Engine
from tts_opt.engines.pool import EnginePool, PoolConfig
from tts_opt.graph.schema import GraphArtifact
from tts_opt.runtime.executor import GraphRunner, NodeFinished, RunFinished, SinkDelta
from tts_opt.runtime.trace import RunTrace


async def run_once(
    artifact: GraphArtifact, prompt: str, pool_config: PoolConfig, *, show_trace: bool = True
) -> RunFinished:
    """Start the engines the artifact needs, run it once, stream the answer to stdout."""
    pool = EnginePool(pool_config)
    try:
        engines = await start_engines(pool, [node.model for node in artifact.nodes])
        runner = GraphRunner(artifact, engines)
        console.print(f"running graph {artifact.task}@{artifact.budget.value:g} ...")
        finished: RunFinished | None = None
        answer_started = False
        async for event in runner.stream([ChatMessage("user", prompt)]):
            if isinstance(event, NodeFinished) and event.trace.node != artifact.sink:
                console.print(node_line(event.trace))
            elif isinstance(event, SinkDelta):
                if not answer_started:
                    console.print(f"[bold]answer[/] (sink {artifact.sink}):")
                    answer_started = True
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, RunFinished):
                finished = event
        sys.stdout.write("\n")
        assert finished is not None
        if show_trace:
            console.print(trace_table(finished.trace))
        return finished
    finally:
        await pool.close()


async def start_engines(pool: EnginePool, models: Iterable[str]) -> dict[str, Engine]:
    """Start the engines for `models` with a status line that names the one loading."""
    started = time.perf_counter()
    with console.status("starting engines") as status:

        def starting(model: str) -> None:
            status.update(f"starting engine for {model} ({time.perf_counter() - started:.0f}s)")

        engines = await pool.start(models, on_start=starting)
    console.print(f"engines up in {time.perf_counter() - started:.0f}s: {', '.join(engines)}")
    return engines


def write_trace(trace: RunTrace, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(trace)))


def run_sync(artifact: GraphArtifact, prompt: str, pool_config: PoolConfig) -> RunFinished:
    return asyncio.run(run_once(artifact, prompt, pool_config))
