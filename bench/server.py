"""Server benchmarks (see bench/README.md, "Server", for results and the machine they ran on).

(a) overhead: tts-opt serving a one-node profile and a pool model on the zero-latency scripted
    engine (a test double), against a bare Litestar endpoint that replays the same response
    bytes without looking at the request. Both run on uvicorn as `tts-opt serve` runs it, on
    loopback, each in a process of its own; requests/s and p50/p99 latency at 1, 16 and 128
    concurrent clients, rounds interleaved; the added latency is tts-opt minus the baseline.
    The clients are aiohttp's: httpx's cost 2-5 ms of CPU per request on a 2-core box, more than
    the servers they would measure.
(b) vllm: one-node profile through `tts-opt serve` against vLLM's own OpenAI server on the same
    model, same requests and concurrency, rounds interleaved: tts-opt with its in-process engine
    set up like the vLLM server, and tts-opt in front of that vLLM server (remote `openai` engine:
    the proxy overhead). Throughput and latency ratios over vLLM.

(d) load: open-loop load (bench/open_loop.py) on a one-node profile and a graph profile, at
    multiples of each profile's capacity, measured first in the same run by a closed loop that
    saturates the server; the scripted engine (a test double: the server's own capacity) or
    tts-opt's in-process vLLM engine. Per load level: outcomes and e2e and TTFT percentiles.
(f) scheduling: a graph profile under open-loop load at multiples of its capacity, served with
    every node call ranked equal (`scheduling = "call"`, the engines' first come, first served)
    and ranked by its request's admission (`"request"`), one server after the other on the same
    arrivals: e2e and TTFT percentiles per level.
(g) degradation: the graph profile at a multiple of its capacity (2x for 2 minutes by default),
    without and with a fallback (a one-node budget of its task), same arrivals: e2e and TTFT of
    what its clients got, the share of answers a fallback served and the accuracy the artifacts
    promise for that mix.
(c) is bench/long_prompts.py; (e), vLLM's own load tool, bench/vllm_serve_compare.py.

    python bench/server.py overhead [--requests 2000] [--concurrency 1 16 128]
    python bench/server.py vllm [--model gemma-3-270m] [--requests 16] [--max-tokens 64]
        [--concurrency 8] [--rounds 8]
    python bench/server.py load [--engine scripted|vllm] [--model gemma-3-270m]
        [--profiles bench bench-graph] [--load 0.5 0.9 1.2] [--requests 200] [--duration 60]
        [--burst ON_S OFF_S MULTIPLE] [--seed 0] [--timeout 120]
    python bench/server.py scheduling [--engine scripted|vllm] [--load 0.8 1.0 1.3] [...]
    python bench/server.py degradation [--engine scripted|vllm] [--load 2] [--duration 120]
        [--above 16 --below 8] [--graphs DIR --profile P --fallback F] [...]
The load options of `load` apply to `scheduling` and `degradation` too; on the scripted engine
these two run each engine with `--scripted-slots` sequences at once and `--scripted-token-delay`
per token (a test double of a batch-limited engine), so that calls queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import msgspec
import openai
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream
from open_loop import (
    Burst,
    Outcome,
    Reply,
    Schedule,
    arrival_times,
    check_schedule,
    format_summary,
    open_loop,
    stream_reply,
    summarize,
)
from prometheus_client.parser import text_string_to_metric_families
from server_load import (
    Sample,
    closed_loop,
    cpu_seconds,
    descendants_cpu_seconds,
    free_port,
    process,
    wait_ready,
)

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.errors import UserError
from tts_opt.evaluation.stats import percentile
from tts_opt.graph.io import save_artifact
from tts_opt.graph.schema import (
    SCHEMA_VERSION,
    Accuracy,
    Budget,
    Decoding,
    GraphArtifact,
    ModelSpec,
    Node,
    TaskLengths,
)
from tts_opt.server.app import create_app
from tts_opt.server.config import Limits, ServerConfig, load_config
from tts_opt.server.profiles import ProfileRegistry, profile_name, read_artifacts

HERE = Path(__file__).resolve()
SCRIPTED = "scripted"
PROFILE = "bench"  # the task of the one-node artifact: profile `bench`
GRAPH_PROFILE = "bench-graph"  # two assistants and a fuser
JSON = {"content-type": "application/json"}


def one_node_graph(spec: ModelSpec) -> GraphArtifact:
    """One assistant on `spec.name`: the request's messages go to the engine as they are."""
    return GraphArtifact(
        schema_version=SCHEMA_VERSION,
        task=PROFILE,
        budget=Budget(1e9),
        task_lengths=TaskLengths(100, 100),
        models=(spec,),
        nodes=(Node("a", spec.name, "assistant"),),
        edges=(),
        sink="a",
        decoding=Decoding(max_tokens=64, seed=0),
    )


def fan_in_graph(spec: ModelSpec) -> GraphArtifact:
    """Two assistants (one n=2 request) feed a fuser, all on `spec.name`: a graph request is
    two engine calls, the second waiting for the first."""
    return msgspec.structs.replace(
        one_node_graph(spec),
        task=GRAPH_PROFILE,
        nodes=(
            Node("a", spec.name, "assistant"),
            Node("b", spec.name, "assistant"),
            Node("f", spec.name, "fuser"),
        ),
        edges=(("a", "f"), ("b", "f")),
        sink="f",
    )


def fallback_graph(spec: ModelSpec) -> GraphArtifact:
    """The one-node graph as a lower budget of the graph profile's task: its fallback."""
    return msgspec.structs.replace(one_node_graph(spec), task=GRAPH_PROFILE, budget=Budget(1e8))


FALLBACK_PROFILE = profile_name(fallback_graph(ModelSpec(SCRIPTED, 1e9, 16, 2048)))


def write_graphs(directory: Path, spec: ModelSpec) -> Path:
    """The bench profiles: `bench`, `bench-graph` and its fallback (the bare task name stands
    for its largest budget, the graph)."""
    directory.mkdir()
    for graph in (one_node_graph(spec), fan_in_graph(spec), fallback_graph(spec)):
        save_artifact(graph, directory / f"{profile_name(graph)}.json")
    return directory


def serve_uvicorn(app, port: int) -> None:
    """uvicorn as `tts-opt serve` runs it (uvloop and httptools when installed), access log off."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run()


class ScriptedKnobs(msgspec.Struct, frozen=True):
    """How each scripted engine (a test double) of a served set behaves; the default answers at
    once, whatever the load (the server's own capacity)."""

    slots: int | None = None  # sequences at once; the others wait (by priority)
    token_delay_s: float = 0.0


def serve_scripted(port: int, graphs: Path, config_path: Path | None, knobs: ScriptedKnobs) -> None:
    # Without settings: a limit above the highest concurrency, to measure serving, not 429s.
    config = (
        load_config(config_path)
        if config_path is not None
        else ServerConfig(limits=Limits(max_concurrent_requests=1024), log_level="warning")
    )
    registry = ProfileRegistry.from_config(graphs, config)
    engines = {
        model: ScriptedEngine(model, slots=knobs.slots, token_delay_s=knobs.token_delay_s)
        for model in registry.models
    }
    registry.activate(engines)
    serve_uvicorn(create_app(config, registry), port)


def serve_bare(port: int, canned: Path) -> None:
    """The baseline: a Litestar endpoint that answers with recorded tts-opt responses."""
    completion = (canned / "completion.json").read_bytes()
    frames = [f + b"\n\n" for f in (canned / "stream.sse").read_bytes().split(b"\n\n") if f]

    async def replay() -> AsyncIterator[bytes]:  # async: Litestar runs sync iterators in threads
        for frame in frames:
            yield frame

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request) -> Response | Stream:
        if b'"stream":true' in await request.body():
            return Stream(replay(), media_type="text/event-stream")
        return Response(completion, media_type="application/json")

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    serve_uvicorn(Litestar([chat, health], logging_config=None), port)


def chat_body(model: str, stream: bool) -> bytes:
    question = [{"role": "user", "content": "What is 2 + 2? Answer briefly."}]
    return msgspec.json.encode({"model": model, "messages": question, "stream": stream})


async def send_chat(session: aiohttp.ClientSession, body: bytes) -> None:
    async with session.post("/v1/chat/completions", data=body, headers=JSON) as reply:
        await reply.read()
    if reply.status != 200:
        raise RuntimeError(f"status {reply.status}")


async def record_canned(url: str, directory: Path) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for name, stream in (("completion.json", False), ("stream.sse", True)):
            reply = await client.post(
                "/v1/chat/completions", content=chat_body(PROFILE, stream), headers=JSON
            )
            reply.raise_for_status()
            (directory / name).write_bytes(reply.content)


async def overhead(requests: int, levels: list[int], rounds: int) -> None:
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        graphs = write_graphs(directory / "graphs", ModelSpec(SCRIPTED, 1e9, 16, 2048))
        tts_port, bare_port = free_port(), free_port()
        tts_url, bare_url = f"http://127.0.0.1:{tts_port}", f"http://127.0.0.1:{bare_port}"
        with contextlib.ExitStack() as stack:
            tts = stack.enter_context(
                process([python, str(HERE), "serve-scripted", str(tts_port), str(graphs)])
            )
            wait_ready(tts, f"{tts_url}/ready", 60)
            await record_canned(tts_url, directory)
            bare = stack.enter_context(
                process([python, str(HERE), "serve-bare", str(bare_port), str(directory)])
            )
            wait_ready(bare, f"{bare_url}/health", 60)
            tts_target = (tts_url, tts.proc.pid)
            bare_target = (bare_url, bare.proc.pid)
            targets = {
                "baseline JSON": (*bare_target, chat_body(PROFILE, False)),
                "profile JSON": (*tts_target, chat_body(PROFILE, False)),
                "pool model JSON": (*tts_target, chat_body(SCRIPTED, False)),
                "baseline SSE": (*bare_target, chat_body(PROFILE, True)),
                "profile SSE": (*tts_target, chat_body(PROFILE, True)),
            }
            print("(a) zero-latency scripted engine (a test double); tts-opt vs a bare endpoint")
            print(f"    {requests} requests per target and concurrency, {rounds} rounds")
            for concurrency in levels:
                samples = await measure_overhead(targets, requests, concurrency, rounds)
                report_overhead(concurrency, samples)


async def measure_overhead(
    targets: dict[str, tuple[str, int, bytes]], requests: int, concurrency: int, rounds: int
) -> dict[str, Sample]:
    """Latencies, wall time and the serving process's CPU time of each target (url, pid, body)."""
    samples = {name: Sample() for name in targets}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            url: await stack.enter_async_context(
                aiohttp.ClientSession(
                    url,
                    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes
                    # them under a request (rounds of other targets run in between).
                    connector=aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=2),
                    timeout=aiohttp.ClientTimeout(total=60),
                )
            )
            for url in {url for url, _, _ in targets.values()}
        }

        def sender(name: str) -> Callable[[int], Awaitable[None]]:
            url, _, body = targets[name]
            return lambda _: send_chat(clients[url], body)

        for name in targets:  # warm-up: connections open, code paths hot
            await closed_loop(sender(name), 2 * concurrency, concurrency, Sample())
        names = list(targets)
        for r in range(rounds):  # interleaved, each round in another order
            for name in names[r % len(names) :] + names[: r % len(names)]:
                pid, sample = targets[name][1], samples[name]
                cpu = cpu_seconds(pid)
                await closed_loop(sender(name), requests // rounds, concurrency, sample)
                sample.cpu_s += cpu_seconds(pid) - cpu
    return samples


def report_overhead(concurrency: int, samples: dict[str, Sample]) -> None:
    print(f"    {concurrency} concurrent clients")
    for name, sample in samples.items():
        p50, p99 = (percentile(sample.latencies, q) * 1e3 for q in (50, 99))
        cpu_ms = sample.cpu_s / sample.requests * 1e3
        line = (
            f"      {name:16} {sample.rps:6.0f} req/s  p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  "
            f"server CPU {cpu_ms:.3f} ms/req"
        )
        base = samples["baseline SSE" if "SSE" in name else "baseline JSON"]
        if sample is not base:
            added = [
                (percentile(sample.latencies, q) - percentile(base.latencies, q)) * 1e3
                for q in (50, 99)
            ]
            line += f"  added p50 {added[0]:+.3f} ms  p99 {added[1]:+.3f} ms"
        print(line)


# (b) against vLLM's own OpenAI server -----------------------------------------------------------

START_TIMEOUT_S = 1800  # engines load slowly on a small, busy CPU box
TOPICS = ("the sea", "a city at night", "a lost key", "the first snow", "an old map", "a robot")


class Load(msgspec.Struct, frozen=True):
    """The same for every target of (b)."""

    requests: int  # per target and round
    max_tokens: int
    concurrency: int
    rounds: int


class EngineSettings(msgspec.Struct, frozen=True):
    """What both vLLM and tts-opt's in-process engine are given."""

    max_model_len: int = 2048
    max_num_seqs: int = 8
    kv_cache_gib: float = 1.0


def vllm_command(model: str, path: Path, port: int, settings: EngineSettings) -> list[str]:
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(path), "--served-model-name", model,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "bfloat16", "--enforce-eager", "--seed", "0",
        "--max-model-len", str(settings.max_model_len),
        "--max-num-seqs", str(settings.max_num_seqs),
        "--kv-cache-memory-bytes", str(int(settings.kv_cache_gib * (1 << 30))),
        # whole prefills, as tts-opt's CPU engines run (tts_opt/engines/vllm_engine.py)
        "--no-enable-chunked-prefill", "--max-num-batched-tokens", "4096",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if not has_chat_template(path):  # a base model: tts-opt's plain rendering, so prompts match
        template = HERE.parents[1] / "tts_opt" / "data" / "chat_templates" / "plain.jinja"
        command += ["--chat-template", str(template)]
    return command


def has_chat_template(path: Path) -> bool:
    config = path / "tokenizer_config.json"
    return (path / "chat_template.jinja").exists() or (
        config.exists() and "chat_template" in msgspec.json.decode(config.read_bytes())
    )


def vllm_env() -> dict[str, str]:
    """The CPU binding tts-opt's engine uses (`cpu_threads_bind = "all"`)."""
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    return {
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_OMP_THREADS_BIND": cpus,
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


class Serving(msgspec.Struct, frozen=True):
    """The server settings a load run varies: how node calls rank, and a profile's fallback
    (primary, fallback) with its thresholds in node calls in flight."""

    scheduling: str = "request"
    fallback: tuple[str, str] | None = None
    above_node_calls: int | None = None
    below_node_calls: int | None = None

    def degradation(self) -> str:
        """The `[degradation]` table, or nothing."""
        if self.fallback is None:
            return ""
        primary, fallback = self.fallback
        table = f'[degradation]\nfallbacks = {{ "{primary}" = "{fallback}" }}\n'
        if self.above_node_calls is not None:
            table += f"above_node_calls = {self.above_node_calls}\n"
            table += f"below_node_calls = {self.below_node_calls}\n"
        return table


def tts_config(
    directory: Path,
    port: int,
    engine: str,
    keepalive_s: float | None = None,
    serving: Serving | None = None,
    request_timeout_s: float | None = None,
) -> Path:
    serving = serving or Serving()
    path = directory / f"server-{port}.toml"
    keepalive = "" if keepalive_s is None else f"keepalive_s = {keepalive_s}\n"
    timeout = "" if request_timeout_s is None else f"request_timeout_s = {request_timeout_s}\n"
    path.write_text(
        f'host = "127.0.0.1"\nport = {port}\nlog_level = "warning"\n{keepalive}'
        f'scheduling = "{serving.scheduling}"\n'
        f"[limits]\nmax_concurrent_requests = 256\n{timeout}" + serving.degradation() + engine
    )
    return path


def inprocess_engine(model: str, path: Path, settings: EngineSettings) -> str:
    return (
        f'[[engines]]\nkind = "vllm"\nmodel = "{model}"\npath = "{path}"\ndtype = "bfloat16"\n'
        f"max_model_len = {settings.max_model_len}\nmax_num_seqs = {settings.max_num_seqs}\n"
        f'kv_cache_gib = {settings.kv_cache_gib}\nenforce_eager = true\ncpu_threads_bind = "all"\n'
    )


def remote_engine(model: str, base_url: str) -> str:
    return f'[[engines]]\nkind = "openai"\nmodel = "{model}"\nbase_url = "{base_url}"\n'


# Engine-side series (vLLM's own metrics), summed over every engine a target's /metrics shows.
ENGINE_SERIES = {
    "steps": "vllm:iteration_tokens_total_count",
    "step_tokens": "vllm:iteration_tokens_total_sum",
    "queue_s": "vllm:request_queue_time_seconds_sum",
    "decode_s": "vllm:request_decode_time_seconds_sum",
    "preemptions": "vllm:num_preemptions_total",
}


class EngineView(msgspec.Struct):
    """What the engine behind a target did in its rounds: its cores' CPU and vLLM's counters."""

    cpu_s: float = 0.0
    counters: dict[str, float] = msgspec.field(default_factory=dict)

    def add(self, before: dict[str, float], after: dict[str, float], cpu_s: float) -> None:
        self.cpu_s += cpu_s
        for key in ENGINE_SERIES:
            self.counters[key] = self.counters.get(key, 0.0) + after[key] - before[key]


async def engine_counters(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    wanted = {series: key for key, series in ENGINE_SERIES.items()}
    counters = dict.fromkeys(ENGINE_SERIES, 0.0)
    text = (await client.get(f"{url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                counters[wanted[sample.name]] += sample.value
    return counters


def prompt(i: int) -> list[dict[str, str]]:
    topic = TOPICS[i % len(TOPICS)]
    return [{"role": "user", "content": f"Story {i}. Write a long, detailed story about {topic}."}]


async def stream_one(
    client: openai.AsyncOpenAI, model: str, i: int, max_tokens: int, sample: Sample
) -> None:
    start = time.perf_counter()
    first = None
    stream = await client.chat.completions.create(
        model=model,
        messages=prompt(i),  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            sample.tokens += chunk.usage.completion_tokens
    sample.first_tokens.append(first if first is not None else time.perf_counter() - start)


async def against_vllm(model: str, load: Load) -> None:
    from tts_opt.engines.specs import model_spec
    from tts_opt.models import pull

    path = pull([model])[model]
    settings = EngineSettings(max_num_seqs=load.concurrency)
    ports = {"vllm": free_port(), "inproc": free_port(), "proxy": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    tts_opt = str(Path(sys.executable).with_name("tts-opt"))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        graphs = write_graphs(directory / "graphs", model_spec(model))
        inproc = tts_config(directory, ports["inproc"], inprocess_engine(model, path, settings))
        proxy = tts_config(directory, ports["proxy"], remote_engine(model, f"{urls['vllm']}/v1"))
        commands = {
            "vllm": vllm_command(model, path, ports["vllm"], settings),
            "inproc": [tts_opt, "serve", "--graphs", str(graphs), "--config", str(inproc)],
            "proxy": [tts_opt, "serve", "--graphs", str(graphs), "--config", str(proxy)],
        }
        print(
            f"(b) one-node profile on {model}: {load.requests} requests x {load.rounds} rounds "
            f"per target, max_tokens {load.max_tokens}, {load.concurrency} concurrent "
            "streaming clients, greedy"
        )
        for name, command in commands.items():
            print(f"    {name}: {shlex.join(command)}")
        started = time.perf_counter()
        vllm = stack.enter_context(process(commands["vllm"], **vllm_env()))
        inproc_server = stack.enter_context(process(commands["inproc"]))
        wait_ready(vllm, f"{urls['vllm']}/health", START_TIMEOUT_S)
        proxy_server = stack.enter_context(process(commands["proxy"]))
        wait_ready(inproc_server, f"{urls['inproc']}/ready", START_TIMEOUT_S)
        wait_ready(proxy_server, f"{urls['proxy']}/ready", START_TIMEOUT_S)
        print(f"    servers up in {time.perf_counter() - started:.0f} s")
        vllm_pid, inproc_pid = vllm.proc.pid, inproc_server.proc.pid
        targets = {
            "vLLM OpenAI server": Target(urls["vllm"], model, vllm_pid, urls["vllm"], vllm_pid),
            "tts-opt, in-process engine": Target(
                urls["inproc"], PROFILE, inproc_pid, urls["inproc"], inproc_pid
            ),
            "tts-opt -> vLLM server": Target(
                urls["proxy"], PROFILE, proxy_server.proc.pid, urls["vllm"], vllm_pid
            ),
        }
        samples, engines = await measure_vllm(targets, load)
    report_vllm(samples, engines)


class Target(msgspec.Struct, frozen=True):
    url: str
    model: str  # what requests name: the model, or tts-opt's profile
    pid: int  # the front end, whose CPU time is measured
    engine_url: str  # where the engine's `vllm:` metrics are (the proxy's engine is vLLM's)
    engine_pid: int  # the engine cores are this process's children


async def measure_vllm(
    targets: dict[str, Target], load: Load
) -> tuple[dict[str, Sample], dict[str, EngineView]]:
    samples = {name: Sample() for name in targets}
    engines = {name: EngineView() for name in targets}
    clients = {
        name: openai.AsyncOpenAI(
            base_url=f"{target.url}/v1", api_key="none", max_retries=0, timeout=900
        )
        for name, target in targets.items()
    }
    scraper = httpx.AsyncClient(timeout=10)

    def sender(name: str, tokens: int, sample: Sample) -> Callable[[int], Awaitable[None]]:
        model = targets[name].model
        return lambda i: stream_one(clients[name], model, i, tokens, sample)

    for name in targets:  # warm-up: one short batch each
        await closed_loop(sender(name, 8, Sample()), load.concurrency, load.concurrency, Sample())
    names = list(targets)
    for r in range(load.rounds):  # interleaved, each round in another order
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sample, target = samples[name], targets[name]
            send = sender(name, load.max_tokens, sample)
            counters = await engine_counters(scraper, target.engine_url)
            cpu = cpu_seconds(target.pid)  # the front end only: engine cores are children
            engine_cpu = descendants_cpu_seconds(target.engine_pid)
            tokens, wall = sample.tokens, sample.wall_s
            await closed_loop(send, load.requests, load.concurrency, sample)
            sample.round_rates.append((sample.tokens - tokens) / (sample.wall_s - wall))
            sample.cpu_s += cpu_seconds(target.pid) - cpu
            engine_cpu = descendants_cpu_seconds(target.engine_pid) - engine_cpu
            after = await engine_counters(scraper, target.engine_url)
            engines[name].add(counters, after, engine_cpu)
    for client in clients.values():
        await client.close()
    await scraper.aclose()
    return samples, engines


def report_vllm(samples: dict[str, Sample], engines: dict[str, EngineView]) -> None:
    base = next(iter(samples.values()))
    for name, s in samples.items():
        p50, p99, ttft = (
            percentile(s.latencies, 50),
            percentile(s.latencies, 99),
            percentile(s.first_tokens, 50),
        )
        print(
            f"    {name:27} {s.rps:6.2f} req/s {s.tokens_per_s:7.1f} tok/s ({s.tokens} tokens)  "
            f"e2e p50 {p50:6.2f} s p99 {p99:6.2f} s  TTFT p50 {ttft:5.2f} s  "
            f"front-end CPU {s.cpu_s / s.requests * 1e3:5.1f} ms/request"
        )
    print("    engine side (vLLM's counters over the measured rounds; engine-core CPU):")
    for name, e in engines.items():
        s, c = samples[name], e.counters
        print(
            f"    {name:27} steps {c['steps']:6.0f}  "
            f"tokens/step {c['step_tokens'] / c['steps']:5.2f}"
            f"  step wall {s.wall_s / c['steps'] * 1e3:6.1f} ms  step CPU "
            f"{e.cpu_s / c['steps'] * 1e3:6.1f} ms  queue {c['queue_s'] / s.requests:5.2f} s/req"
            f"  decode {c['decode_s'] / s.requests:5.2f} s/req  preemptions {c['preemptions']:.0f}"
        )
    for name, s in list(samples.items())[1:]:
        ratios = (
            s.tokens_per_s / base.tokens_per_s,
            s.rps / base.rps,
            percentile(s.latencies, 50) / percentile(base.latencies, 50),
            percentile(s.first_tokens, 50) / percentile(base.first_tokens, 50),
        )
        # Each round runs the targets back to back: a ratio within a round shares the machine's
        # state of the moment, and the median over rounds discards phases when it swung.
        per_round = [x / y for x, y in zip(s.round_rates, base.round_rates, strict=True)]
        print(
            f"    {name} / vLLM: throughput {ratios[0]:.3f} (tok/s; target >= 0.95), "
            f"median per-round {statistics.median(per_round):.3f} "
            f"(rounds {' '.join(f'{r:.2f}' for r in per_round)}), "
            f"req/s {ratios[1]:.3f}, e2e p50 {ratios[2]:.3f}, TTFT p50 {ratios[3]:.3f}"
        )


# (d) open-loop load ---------------------------------------------------------------------------


class LoadPlan(msgspec.Struct, frozen=True):
    """The same for every profile of (d), (f) and (g)."""

    multiples: tuple[float, ...]  # of the profile's measured capacity
    requests: int  # per load level (the schedule's bound in count)
    duration_s: float  # per load level (its bound in time)
    timeout_s: float  # per request, then it counts as a timeout
    seed: int
    burst: Burst | None
    capacity_concurrency: int  # closed-loop clients that keep the server saturated
    capacity_requests: int
    max_tokens: int


class Engines(msgspec.Struct, frozen=True):
    """What a load server runs on: the scripted engine (a test double, with `knobs`) or
    in-process vLLM; `model` is the embedded model the bench profiles run on with vLLM."""

    engine: str
    model: str
    knobs: ScriptedKnobs = ScriptedKnobs()


def load_body(profile: str, i: int, max_tokens: int) -> bytes:
    """Distinct prompts (no request is served from vLLM's prefix cache alone), the profile's
    own sampling: a graph's n=2 assistants need it."""
    return msgspec.json.encode(
        {"model": profile, "messages": prompt(i), "max_tokens": max_tokens, "stream": True}
    )


def bench_graphs(engines: Engines, directory: Path) -> Path:
    """The bench profiles (`write_graphs`) on the scripted engine or the embedded model."""
    if engines.engine == SCRIPTED:
        return write_graphs(directory / "graphs", ModelSpec(SCRIPTED, 1e9, 16, 2048))
    from tts_opt.engines.specs import model_spec

    return write_graphs(directory / "graphs", model_spec(engines.model))


@contextlib.contextmanager
def load_server(
    engines: Engines, graphs: Path, directory: Path, plan: LoadPlan, serving: Serving | None = None
) -> Iterator[str]:
    """tts-opt serving the artifacts in `graphs` with these settings; its URL. With vLLM every
    model the artifacts use runs in-process, set up as in (b). The server's request timeout is
    the plan's, so a slow graph is timed out by the client's clock, not cut off earlier."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if engines.engine == SCRIPTED:
        config = tts_config(directory, port, "", serving=serving, request_timeout_s=plan.timeout_s)
        knobs = engines.knobs
        command = [sys.executable, str(HERE), "serve-scripted", str(port), str(graphs)]
        command += ["--config", str(config), "--token-delay", str(knobs.token_delay_s)]
        command += [] if knobs.slots is None else ["--slots", str(knobs.slots)]
        timeout_s: float = 60
    else:
        from tts_opt.models import pull

        models = sorted(ProfileRegistry(graphs).models)
        paths = pull(models)
        engine_toml = "".join(inprocess_engine(m, paths[m], EngineSettings()) for m in models)
        config = tts_config(
            directory, port, engine_toml, serving=serving, request_timeout_s=plan.timeout_s
        )
        tts_opt = str(Path(sys.executable).with_name("tts-opt"))
        command = [tts_opt, "serve", "--graphs", str(graphs), "--config", str(config)]
        timeout_s = START_TIMEOUT_S
    print(f"    server: {shlex.join(command)}")
    with process(command) as server:
        wait_ready(server, f"{url}/ready", timeout_s)
        yield url


def load_session(url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        url,
        # No connection limit: an open loop sends whenever its schedule says.
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def plan_line(what: str, engines: Engines, plan: LoadPlan) -> str:
    if engines.engine == SCRIPTED:
        knobs = engines.knobs
        engine = f"scripted engine (a test double, {knobs.slots or 'unlimited'} slots, "
        engine += f"{knobs.token_delay_s * 1e3:g} ms/token)"
    else:
        engine = engines.model
    return (
        f"{what}, {engine}: up to {plan.requests} requests or {plan.duration_s:g} s per level, "
        f"seed {plan.seed}, timeout {plan.timeout_s:g} s, max_tokens {plan.max_tokens}"
        + (f", bursts {msgspec.structs.asdict(plan.burst)}" if plan.burst else ", Poisson")
    )


async def under_load(engines: Engines, profiles: list[str], plan: LoadPlan) -> None:
    print(plan_line("(d) open-loop load", engines, plan))
    with tempfile.TemporaryDirectory() as tmp:
        graphs = bench_graphs(engines, Path(tmp))
        with load_server(engines, graphs, Path(tmp), plan) as url:
            async with load_session(url) as session:
                for profile in profiles:
                    capacity = await measure_capacity(session, profile, plan)
                    for multiple in plan.multiples:
                        await offer(session, profile, plan, multiple, capacity)


def attempt_on(session: aiohttp.ClientSession, profile: str, plan: LoadPlan):
    def attempt(i: int) -> Awaitable[Reply]:
        return stream_reply(session, load_body(profile, i, plan.max_tokens))

    return attempt


async def warm_up(
    session: aiohttp.ClientSession, profile: str, plan: LoadPlan, requests: int | None = None
) -> Sample:
    """A closed loop of `plan.capacity_concurrency` clients (`requests`: as many); every
    request must succeed."""
    attempt = attempt_on(session, profile, plan)

    async def must_succeed(i: int) -> None:
        reply = await attempt(i)
        if reply.failed:
            raise RuntimeError(f"{profile}: status {reply.status} in the closed loop")

    concurrency = plan.capacity_concurrency
    sample = Sample()
    await closed_loop(must_succeed, requests or concurrency, concurrency, sample)
    return sample


async def measure_capacity(session: aiohttp.ClientSession, profile: str, plan: LoadPlan) -> float:
    """Completed requests/s of a closed loop that keeps the server saturated."""
    await warm_up(session, profile, plan)
    capacity = await warm_up(session, profile, plan, plan.capacity_requests)
    print(
        f"    {profile}: capacity {capacity.rps:.2f} req/s ({plan.capacity_requests} requests, "
        f"closed loop of {plan.capacity_concurrency} clients, "
        f"e2e p50 {percentile(capacity.latencies, 50):.3f} s)"
    )
    return capacity.rps


async def capacity_once(
    session: aiohttp.ClientSession, profile: str, plan: LoadPlan, known: float | None
) -> float:
    """The capacity measured on the first server of a comparison; later servers only warm up,
    so that every server is offered the same arrivals."""
    if known is None:
        return await measure_capacity(session, profile, plan)
    await warm_up(session, profile, plan)
    return known


async def offer(
    session: aiohttp.ClientSession,
    profile: str,
    plan: LoadPlan,
    multiple: float,
    capacity_rps: float,
) -> list[Outcome]:
    """Open-loop load at `multiple` x capacity; prints its summary line."""
    schedule = Schedule(
        multiple * capacity_rps, plan.requests, plan.duration_s, plan.seed, plan.burst
    )
    attempt = attempt_on(session, profile, plan)
    outcomes, wall_s = await open_loop(attempt, arrival_times(schedule), plan.timeout_s)
    print(
        f"      {multiple:4.2f}x capacity, offered {schedule.mean_rate:7.2f} req/s: "
        + format_summary(summarize(outcomes, wall_s))
    )
    return outcomes


# (f) graph-aware scheduling --------------------------------------------------------------------


async def compare_scheduling(engines: Engines, profile: str, plan: LoadPlan) -> None:
    """The same arrivals on a server ranking node calls equal, then one ranking them by request;
    the capacity is measured once, on the first."""
    print(plan_line("(f) scheduling of node calls", engines, plan))
    capacity: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        graphs = bench_graphs(engines, Path(tmp))
        for scheduling in ("call", "request"):
            with load_server(engines, graphs, Path(tmp), plan, Serving(scheduling)) as url:
                async with load_session(url) as session:
                    capacity = await capacity_once(session, profile, plan, capacity)
                    print(f"    scheduling = {scheduling!r} ({profile}):")
                    for multiple in plan.multiples:
                        await offer(session, profile, plan, multiple, capacity)


# (g) degradation to a fallback -----------------------------------------------------------------


def promised_accuracy(graphs: Path) -> dict[str, Accuracy]:
    """Per profile, the accuracy its artifact records: on the test split where there is one
    (validation accuracies are biased upwards by the search that chose the graph)."""
    promised = {}
    for name, (_, artifact) in read_artifacts(graphs).items():
        by_split = {a.split: a for a in artifact.accuracy}
        if by_split:
            promised[name] = by_split.get("test") or artifact.accuracy[0]
    return promised


def report_mix(outcomes: list[Outcome], promised: dict[str, Accuracy]) -> None:
    """Who served the ok answers, and the accuracy the artifacts promise for that mix."""
    ok = [o for o in outcomes if o.result == "ok"]
    if not ok:
        return
    served = Counter(o.model for o in ok)
    degraded = sum(o.degraded_from is not None for o in ok)
    shares = ", ".join(f"{model} {count / len(ok):.1%}" for model, count in served.items())
    line = f"        degraded {degraded / len(ok):.1%} of {len(ok)} ok answers (served by {shares})"
    known = [promised[o.model] for o in ok if o.model in promised]
    if len(known) == len(ok):
        mix = statistics.fmean(a.value for a in known)
        each = ", ".join(
            f"{m} {promised[m].value:.3f} ({promised[m].split}, n={promised[m].n})"
            for m in served
            if m is not None
        )
        line += f"; expected accuracy {mix:.3f} ({each})"
    else:
        line += "; expected accuracy -: the artifacts record none"
    print(line)
    for model in served:
        subset = [o for o in ok if o.model == model]
        summary = summarize(subset, wall_s=1.0)  # per-profile latencies; rates are not its own
        assert summary.e2e_s is not None
        ttft = summary.ttft_s.p99 * 1e3 if summary.ttft_s is not None else float("nan")
        print(
            f"        served by {model}: e2e ms p50 {summary.e2e_s.p50 * 1e3:7.1f} "
            f"p99 {summary.e2e_s.p99 * 1e3:7.1f}  TTFT ms p99 {ttft:7.1f}"
        )


async def compare_degradation(
    engines: Engines,
    plan: LoadPlan,
    graphs: Path | None,
    profiles: tuple[str, str],
    thresholds: tuple[int, int],
) -> None:
    """The same arrivals at the primary profile on a server without, then with, its fallback;
    the primary's capacity is measured once, on the first."""
    primary, fallback = profiles
    # Given artifacts run on the models they name, not on the bench's `--model`.
    shown = (
        engines
        if graphs is None
        else msgspec.structs.replace(engines, model=f"artifacts of {graphs}")
    )
    print(plan_line(f"(g) degradation of {primary} to {fallback}", shown, plan))
    above, below = thresholds
    capacity: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        graphs = graphs or bench_graphs(engines, Path(tmp))
        promised = promised_accuracy(graphs)
        settings = {
            "without a fallback": Serving(),
            f"with fallback {fallback} (above {above} node calls, until below {below})": Serving(
                fallback=profiles, above_node_calls=above, below_node_calls=below
            ),
        }
        for label, serving in settings.items():
            with load_server(engines, graphs, Path(tmp), plan, serving) as url:
                async with load_session(url) as session:
                    capacity = await capacity_once(session, primary, plan, capacity)
                    print(f"    {label}:")
                    for multiple in plan.multiples:
                        outcomes = await offer(session, primary, plan, multiple, capacity)
                        report_mix(outcomes, promised)


def add_load_options(
    parser: argparse.ArgumentParser, load: list[float], requests: int, duration_s: float
) -> None:
    parser.add_argument("--engine", choices=[SCRIPTED, "vllm"], default=SCRIPTED)
    parser.add_argument("--model", default="gemma-3-270m", help="--engine vllm: the bench's model")
    parser.add_argument("--load", type=float, nargs="+", default=load, help="x capacity")
    parser.add_argument("--requests", type=int, default=requests, help="per load level, at most")
    parser.add_argument("--duration", type=float, default=duration_s, help="s per level, at most")
    parser.add_argument("--burst", type=float, nargs=3, metavar=("ON_S", "OFF_S", "MULTIPLE"))
    parser.add_argument("--seed", type=int, default=0, help="of the arrival schedule")
    parser.add_argument("--timeout", type=float, default=120.0, help="s per request")
    parser.add_argument("--capacity-concurrency", type=int, default=16)
    parser.add_argument("--capacity-requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)


def add_scripted_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scripted-slots", type=int, default=8, help="sequences at once")
    parser.add_argument("--scripted-token-delay", type=float, default=0.01, help="s per token")


def load_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LoadPlan:
    plan = LoadPlan(
        tuple(args.load),
        args.requests,
        args.duration,
        args.timeout,
        args.seed,
        Burst(*args.burst) if args.burst else None,
        args.capacity_concurrency,
        args.capacity_requests,
        args.max_tokens,
    )
    try:  # before any server starts; the rates are measured later (any is fine here)
        check_schedule(Schedule(1.0, plan.requests, plan.duration_s, 0, plan.burst))
    except UserError as error:
        parser.error(str(error))
    return plan


def engines_of(args: argparse.Namespace) -> Engines:
    knobs = ScriptedKnobs()
    if hasattr(args, "scripted_slots"):
        knobs = ScriptedKnobs(args.scripted_slots, args.scripted_token_delay)
    return Engines(args.engine, args.model, knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    a = commands.add_parser("overhead", help="(a) scripted engine vs a bare endpoint")
    a.add_argument("--requests", type=int, default=2000, help="per target and concurrency")
    a.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 128])
    a.add_argument("--rounds", type=int, default=4)
    b = commands.add_parser("vllm", help="(b) a one-node profile vs vLLM's OpenAI server")
    b.add_argument("--model", default="gemma-3-270m", help="an embedded model")
    b.add_argument("--requests", type=int, default=16, help="per target and round")
    b.add_argument("--max-tokens", type=int, default=64)
    b.add_argument("--concurrency", type=int, default=8, help="also the engines' max_num_seqs")
    b.add_argument("--rounds", type=int, default=8, help="short rounds: see report_vllm")
    c = commands.add_parser("load", help="(d) open-loop load at multiples of capacity")
    add_load_options(c, [0.5, 0.9, 1.2], 200, 60.0)
    c.add_argument("--profiles", nargs="+", choices=[PROFILE, GRAPH_PROFILE])
    f = commands.add_parser("scheduling", help="(f) node calls ranked equal vs by request")
    add_load_options(f, [0.8, 1.0, 1.3], 400, 120.0)
    add_scripted_options(f)
    f.add_argument("--profile", default=GRAPH_PROFILE, help="a multi-node graph profile")
    g = commands.add_parser("degradation", help="(g) overload without and with a fallback")
    add_load_options(g, [2.0], 100_000, 120.0)
    add_scripted_options(g)
    g.add_argument("--above", type=int, default=16, help="node calls in flight: degrade above")
    g.add_argument("--below", type=int, default=8, help="node calls in flight: recover below")
    g.add_argument("--graphs", type=Path, help="artifacts to serve instead of the bench's")
    g.add_argument("--profile", default=GRAPH_PROFILE, help="the primary")
    g.add_argument("--fallback", default=FALLBACK_PROFILE, help="a lower budget of its task")
    serve = commands.add_parser("serve-scripted")  # the server process of (a), (d), (f), (g)
    serve.add_argument("port", type=int)
    serve.add_argument("directory", type=Path)
    serve.add_argument("--config", type=Path)
    serve.add_argument("--slots", type=int)
    serve.add_argument("--token-delay", type=float, default=0.0)
    bare = commands.add_parser("serve-bare")  # the baseline of (a)
    bare.add_argument("port", type=int)
    bare.add_argument("directory", type=Path)
    args = parser.parse_args()
    if args.command == "serve-scripted":
        knobs = ScriptedKnobs(args.slots, args.token_delay)
        serve_scripted(args.port, args.directory, args.config, knobs)
        return
    if args.command == "serve-bare":
        serve_bare(args.port, args.directory)
        return
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    if args.command == "overhead":
        asyncio.run(overhead(args.requests, args.concurrency, args.rounds))
    elif args.command == "load":
        profiles = args.profiles or [PROFILE, GRAPH_PROFILE]
        asyncio.run(under_load(engines_of(args), profiles, load_plan(args, parser)))
    elif args.command == "scheduling":
        asyncio.run(compare_scheduling(engines_of(args), args.profile, load_plan(args, parser)))
    elif args.command == "degradation":
        if args.graphs is not None and args.fallback == FALLBACK_PROFILE:
            parser.error("--graphs needs --profile and --fallback: profiles of those artifacts")
        if not args.below <= args.above:
            parser.error("--below must not be over --above")
        plan = load_plan(args, parser)
        profiles = (args.profile, args.fallback)
        thresholds = (args.above, args.below)
        asyncio.run(compare_degradation(engines_of(args), plan, args.graphs, profiles, thresholds))
    else:
        load = Load(args.requests, args.max_tokens, args.concurrency, args.rounds)
        asyncio.run(against_vllm(args.model, load))


if __name__ == "__main__":
    main()
