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
(c) is bench/long_prompts.py; (e), vLLM's own load tool, bench/vllm_serve_compare.py.

    python bench/server.py overhead [--requests 2000] [--concurrency 1 16 128]
    python bench/server.py vllm [--model gemma-3-270m] [--requests 16] [--max-tokens 64]
        [--concurrency 8] [--rounds 8]
    python bench/server.py load [--engine scripted|vllm] [--model gemma-3-270m]
        [--profiles bench bench-graph] [--load 0.5 0.9 1.2] [--requests 200] [--duration 60]
        [--burst ON_S OFF_S MULTIPLE] [--seed 0] [--timeout 120]
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
    Budget,
    Decoding,
    GraphArtifact,
    ModelSpec,
    Node,
    TaskLengths,
)
from tts_opt.server.app import create_app
from tts_opt.server.config import Limits, ServerConfig
from tts_opt.server.profiles import ProfileRegistry

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


def write_graphs(directory: Path, spec: ModelSpec) -> Path:
    directory.mkdir()
    for graph in (one_node_graph(spec), fan_in_graph(spec)):
        save_artifact(graph, directory / f"{graph.task}.json")
    return directory


def serve_uvicorn(app, port: int) -> None:
    """uvicorn as `tts-opt serve` runs it (uvloop and httptools when installed), access log off."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run()


def serve_scripted(port: int, graphs: Path) -> None:
    # Limit above the highest concurrency: measure serving, not 429s.
    config = ServerConfig(limits=Limits(max_concurrent_requests=1024), log_level="warning")
    registry = ProfileRegistry(graphs, config.default_budgets)
    registry.activate({SCRIPTED: ScriptedEngine(SCRIPTED)})
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


def tts_config(directory: Path, port: int, engine: str, keepalive_s: float | None = None) -> Path:
    path = directory / f"server-{port}.toml"
    keepalive = "" if keepalive_s is None else f"keepalive_s = {keepalive_s}\n"
    path.write_text(
        f'host = "127.0.0.1"\nport = {port}\nlog_level = "warning"\n{keepalive}'
        "[limits]\nmax_concurrent_requests = 256\n" + engine
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
    """The same for every profile of (d)."""

    multiples: tuple[float, ...]  # of the profile's measured capacity
    requests: int  # per load level (the schedule's bound in count)
    duration_s: float  # per load level (its bound in time)
    timeout_s: float  # per request, then it counts as a timeout
    seed: int
    burst: Burst | None
    capacity_concurrency: int  # closed-loop clients that keep the server saturated
    capacity_requests: int
    max_tokens: int


def load_body(profile: str, i: int, max_tokens: int) -> bytes:
    """Distinct prompts (no request is served from vLLM's prefix cache alone), the profile's
    own sampling: a graph's n=2 assistants need it."""
    return msgspec.json.encode(
        {"model": profile, "messages": prompt(i), "max_tokens": max_tokens, "stream": True}
    )


@contextlib.contextmanager
def load_server(engine: str, model: str, directory: Path) -> Iterator[str]:
    """tts-opt serving both bench profiles on the scripted engine or in-process vLLM; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if engine == SCRIPTED:
        graphs = write_graphs(directory / "graphs", ModelSpec(SCRIPTED, 1e9, 16, 2048))
        command = [sys.executable, str(HERE), "serve-scripted", str(port), str(graphs)]
        timeout_s: float = 60
    else:
        from tts_opt.engines.specs import model_spec
        from tts_opt.models import pull

        graphs = write_graphs(directory / "graphs", model_spec(model))
        engine_toml = inprocess_engine(model, pull([model])[model], EngineSettings())
        config = tts_config(directory, port, engine_toml)
        tts_opt = str(Path(sys.executable).with_name("tts-opt"))
        command = [tts_opt, "serve", "--graphs", str(graphs), "--config", str(config)]
        timeout_s = START_TIMEOUT_S
    print(f"    server: {shlex.join(command)}")
    with process(command) as server:
        wait_ready(server, f"{url}/ready", timeout_s)
        yield url


async def under_load(engine: str, model: str, profiles: list[str], plan: LoadPlan) -> None:
    print(
        f"(d) open-loop load, {'scripted engine (a test double)' if engine == SCRIPTED else model}"
        f": up to {plan.requests} requests or {plan.duration_s:g} s per level, seed {plan.seed}, "
        f"timeout {plan.timeout_s:g} s, max_tokens {plan.max_tokens}"
        + (f", bursts {msgspec.structs.asdict(plan.burst)}" if plan.burst else ", Poisson")
    )
    with tempfile.TemporaryDirectory() as tmp, load_server(engine, model, Path(tmp)) as url:
        session = aiohttp.ClientSession(
            url,
            # No connection limit: an open loop sends whenever its schedule says.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        async with session:
            for profile in profiles:
                await load_profile(session, profile, plan)


async def load_profile(session: aiohttp.ClientSession, profile: str, plan: LoadPlan) -> None:
    def attempt(i: int) -> Awaitable[Reply]:
        return stream_reply(session, load_body(profile, i, plan.max_tokens))

    async def must_succeed(i: int) -> None:
        reply = await attempt(i)
        if reply.failed:
            raise RuntimeError(f"{profile}: status {reply.status} in the closed loop")

    concurrency = plan.capacity_concurrency
    await closed_loop(must_succeed, concurrency, concurrency, Sample())  # warm-up
    capacity = Sample()
    await closed_loop(must_succeed, plan.capacity_requests, concurrency, capacity)
    print(
        f"    {profile}: capacity {capacity.rps:.2f} req/s ({plan.capacity_requests} requests, "
        f"closed loop of {concurrency} clients, e2e p50 {percentile(capacity.latencies, 50):.3f} s)"
    )
    for multiple in plan.multiples:
        schedule = Schedule(
            multiple * capacity.rps, plan.requests, plan.duration_s, plan.seed, plan.burst
        )
        outcomes, wall_s = await open_loop(attempt, arrival_times(schedule), plan.timeout_s)
        print(
            f"      {multiple:4.2f}x capacity, offered {schedule.mean_rate:7.2f} req/s: "
            + format_summary(summarize(outcomes, wall_s))
        )


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
    c.add_argument("--engine", choices=[SCRIPTED, "vllm"], default=SCRIPTED)
    c.add_argument("--model", default="gemma-3-270m", help="with --engine vllm: an embedded model")
    c.add_argument("--profiles", nargs="+", choices=[PROFILE, GRAPH_PROFILE])
    c.add_argument("--load", type=float, nargs="+", default=[0.5, 0.9, 1.2], help="x capacity")
    c.add_argument("--requests", type=int, default=200, help="per load level, at most")
    c.add_argument("--duration", type=float, default=60.0, help="s per load level, at most")
    c.add_argument("--burst", type=float, nargs=3, metavar=("ON_S", "OFF_S", "MULTIPLE"))
    c.add_argument("--seed", type=int, default=0, help="of the arrival schedule")
    c.add_argument("--timeout", type=float, default=120.0, help="s per request")
    c.add_argument("--capacity-concurrency", type=int, default=16)
    c.add_argument("--capacity-requests", type=int, default=64)
    c.add_argument("--max-tokens", type=int, default=64)
    for name in ("serve-scripted", "serve-bare"):  # the server processes of (a)
        sub = commands.add_parser(name)
        sub.add_argument("port", type=int)
        sub.add_argument("directory", type=Path)
    args = parser.parse_args()
    if args.command == "serve-scripted":
        serve_scripted(args.port, args.directory)
    elif args.command == "serve-bare":
        serve_bare(args.port, args.directory)
    else:
        print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
        if args.command == "overhead":
            asyncio.run(overhead(args.requests, args.concurrency, args.rounds))
        elif args.command == "load":
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
            profiles = args.profiles or [PROFILE, GRAPH_PROFILE]
            try:  # before any server starts; the rates are measured later (any is fine here)
                check_schedule(Schedule(1.0, plan.requests, plan.duration_s, 0, plan.burst))
            except UserError as error:
                parser.error(str(error))
            asyncio.run(under_load(args.engine, args.model, profiles, plan))
        else:
            load = Load(args.requests, args.max_tokens, args.concurrency, args.rounds)
            asyncio.run(against_vllm(args.model, load))


if __name__ == "__main__":
    main()
