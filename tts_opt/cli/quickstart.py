"""`tts-opt quickstart`: the main job on the embedded default, end to end, in one process.

1. pull the embedded models; 2. start their engines (once); 3. optimize a tiny graph for GSM8K
with Agent-REINFORCE on those engines (really: every score runs the graph on the task's
questions), writing `OUT/graphs/gsm8k@<budget>.json`; 4. serve OUT/graphs with the real server on
a loopback port, on the same engines; 5. ask profile `gsm8k` one question with the official
`openai` client, streaming the answer; then stop the server and close the engines.

The settings are deliberately tiny (a few evaluations on a few questions, short answers) so the
whole run takes minutes on a CPU; `tts-opt optimize` is the command for real searches.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import msgspec
import uvicorn

from tts_opt.cli.display import console
from tts_opt.cli.optimize_command import SearchProgress
from tts_opt.cli.run_command import start_engines
from tts_opt.engines.base import Engine
from tts_opt.engines.pool import EnginePool
from tts_opt.evaluation import NodeCache
from tts_opt.graph.io import load_artifact
from tts_opt.graph.render import baseline_lines
from tts_opt.optimizer.evaluation_scorer import EvaluationScorer
from tts_opt.optimizer.service import (
    DEFAULT_METHOD,
    DEFAULT_SEED,
    SearchRequest,
    SearchRun,
    run_searches,
)
from tts_opt.server.app import create_app
from tts_opt.server.config import ServerConfig
from tts_opt.server.profiles import ProfileRegistry
from tts_opt.tasks import get_task

TASK = "gsm8k"
# Qwen2.5-Coder-1.5B-Instruct only: one engine start, and a chat model that answers (the Gemma
# 270M base model often ends a fuser's answer at once, which makes a poor demonstration). The
# budget, in units of one Qwen call, fits a few Qwen nodes. Answers need ~200 tokens to reach
# GSM8K's "The answer is N" line; shorter ones are cut before it and always score 0.
POOL = ("qwen2.5-coder-1.5b",)
SEARCH = SearchRequest(
    task=TASK,
    budget=4.0,
    models=POOL,
    iterations=4,
    patience=4,
    val_questions=3,
    pretest_questions=2,
    reeval_questions=3,
    reeval_top_k=2,
    test_questions=3,
    max_tokens=256,
    sample_seed=0,
    fresh=True,
)


def quickstart(
    prompt: str, *, pull: Callable[[list[str]], None], out: Path = Path("quickstart-out")
) -> None:
    """The five steps; `pull(models)` provisions the models (the `models pull` command)."""
    with _step(1, f"pull the models ({', '.join(POOL)})"):
        pull(list(POOL))
    asyncio.run(_main(prompt, out))


@contextmanager
def _step(number: int, title: str) -> Iterator[None]:
    console.rule(f"{number}/5 {title}")
    started = time.perf_counter()
    yield
    console.print(f"[dim]step {number} took {time.perf_counter() - started:.1f}s[/]")


async def _main(prompt: str, out: Path) -> None:
    pool = EnginePool()
    try:
        with _step(2, f"start the engines ({', '.join(POOL)})"):
            engines = await start_engines(pool, POOL)
        with _step(3, f"optimize a graph for {TASK} at budget {SEARCH.budget:g} (Agent-REINFORCE)"):
            artifact_path = await _optimize(engines, out)
        async with _serving(engines, artifact_path.parent) as url:
            with _step(5, f"answer a request on profile {TASK!r} (openai client, streaming)"):
                await _ask(url, prompt)
    finally:
        with console.status("closing the engines"):
            await pool.close()
    _summary(artifact_path)


CLIENT_EXAMPLE = """\
from openai import OpenAI

client = OpenAI(base_url="{url}", api_key="unused")  # no keys configured
reply = client.chat.completions.create(
    model="{model}", messages=[{{"role": "user", "content": "What is 12 * 7 - 5?"}}]
)
print(reply.choices[0].message.content)"""


def _summary(artifact: Path) -> None:
    """What the run produced and how to use it beyond the quickstart: serve it, ask it."""
    server = ServerConfig()  # what `tts-opt serve` listens on without a config
    url = f"http://{server.host}:{server.port}/v1"
    console.rule("done")
    # `out`: no markup, no wrapping; the command and the code are copied as printed.
    console.out(f"graph artifact: {artifact}", highlight=False)
    if (baseline := load_artifact(artifact).baseline) is not None:
        for line in baseline_lines(baseline):
            console.out(line, highlight=False)
    console.print("serve it (engines start in the background; GET /ready is 200 once they are up):")
    console.out(f"tts-opt serve --graphs {artifact.parent}", highlight=False)
    console.print(f"ask profile {TASK!r} ({artifact.stem}) with the openai client:")
    console.out(CLIENT_EXAMPLE.format(url=url, model=TASK), highlight=False)


async def _optimize(engines: Mapping[str, Engine], out: Path) -> Path:
    request = msgspec.structs.replace(SEARCH, out=out / "graphs")
    # The engines are already up: the scorer's `start` hands them over; closing them is ours.
    scorer = EvaluationScorer(get_task(TASK), lambda: _ready(engines), cache=NodeCache())
    with SearchProgress() as display:
        (written,) = await run_searches(
            request,
            [SearchRun(DEFAULT_METHOD, DEFAULT_SEED)],
            bar=display.bar,
            scorer=scorer,
            description="Found by tts-opt quickstart (tiny search: few questions, short answers).",
        )
    result = written.result
    test = result.selection.test.measurement
    nodes = ", ".join(f"{n.id}:{n.model}:{n.role}" for n in result.artifact.nodes)
    console.print(f"graph: {nodes} -> sink {result.artifact.sink}")
    console.print(
        f"[green]wrote[/] {written.artifact_path}: test accuracy {test.accuracy:.0%} on "
        f"{test.n} questions, {result.tokens:,} tokens, {len(result.records)} evaluations"
    )
    return written.artifact_path


async def _ready(engines: Mapping[str, Engine]) -> Mapping[str, Engine]:
    return engines


@asynccontextmanager
async def _serving(engines: Mapping[str, Engine], graphs: Path) -> AsyncIterator[str]:
    """Step 4: the server on a free loopback port in this event loop; yields its /v1 URL."""
    with _step(4, f"serve {graphs} on loopback"):
        registry = ProfileRegistry(graphs)
        profiles = registry.activate(engines)
        app = create_app(ServerConfig(log_level="warning"), registry)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                sock.close()
                serving.result()  # raises why it did not start
            await asyncio.sleep(0.05)
        console.print(f"serving profiles {', '.join(profiles.profiles)} at {url}")
    try:
        yield url
    finally:
        server.should_exit = True
        await serving
        sock.close()
        console.print("server stopped")


async def _ask(url: str, prompt: str) -> None:
    from openai import AsyncOpenAI

    console.print(f"[bold]question[/] (model={TASK!r}): {prompt}")
    console.print("[bold]answer[/]:")
    async with AsyncOpenAI(base_url=url, api_key="unused") as client:
        stream = await client.chat.completions.create(
            model=TASK,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage, answer, finish = None, "", None
        async for chunk in stream:
            for choice in chunk.choices:
                answer += choice.delta.content or ""
                sys.stdout.write(choice.delta.content or "")
                sys.stdout.flush()
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
    sys.stdout.write("\n")
    if not answer.strip():
        console.print(
            f"[yellow](empty answer, finish reason {finish!r}: the sink model stopped at once; "
            "tiny base models often do)[/]"
        )
    if usage is not None:
        console.print(
            f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion "
            f"= {usage.total_tokens} tokens"
        )
