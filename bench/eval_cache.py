"""Node-output cache benchmark (see bench/README.md for results and the machine they ran on).

Two graphs that share nodes, as an optimizer meets them: A = K assistants into a fuser, B = the
same plus one more assistant. B's first K assistant samples are A's (same prompt, same sample
seeds), its extra assistant and its fuser (which reads K+1 answers) are new. Measured on real
engines, on the same GSM8K val questions:

    B, no cache                  the baseline: every node of B computed
    B after A, cache             only B's new nodes computed
    B again, cache               everything replayed (the upper bound)

Each is the wall time of `evaluate` over the questions; ratios are against the baseline measured
in the same run. A warm-up evaluation on other questions runs first, so no row pays for start-up.

    python bench/eval_cache.py [--questions 8] [--max-tokens 64] [--assistant MODEL]
                               [--fuser MODEL] [--width 3] [--concurrency 8] [--engines FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

from tts_opt.engines.pool import EnginePool, PoolConfig, load_pool_config
from tts_opt.evaluation import EvalReport, NodeCache, evaluate, model_spec, parallel_graph
from tts_opt.tasks import get_task

WARMUP = 2  # questions of the warm-up evaluation (not among the measured ones)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--assistant", default="gemma-3-270m")
    parser.add_argument("--fuser", default="qwen2.5-coder-1.5b")
    parser.add_argument("--width", type=int, default=3, help="assistants of A (B has one more)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--engines", type=Path, help="engine pool config (default: embedded)")
    args = parser.parse_args()
    print("command: python bench/eval_cache.py " + shlex.join(sys.argv[1:]))

    task = get_task("gsm8k")
    picked = task.split("val", WARMUP + args.questions)
    warmup, questions = picked[:WARMUP], picked[WARMUP:]
    assistant, fuser = model_spec(args.assistant), model_spec(args.fuser)
    graph_a = parallel_graph(task, [assistant] * args.width, fuser)
    graph_b = parallel_graph(task, [assistant] * (args.width + 1), fuser)
    print(
        f"task gsm8k val, {len(questions)} questions, max_tokens {args.max_tokens}, "
        f"concurrency {args.concurrency}; A = {args.width} x {assistant.name} -> {fuser.name} "
        f"fuser, B = {args.width + 1} x {assistant.name} -> {fuser.name} fuser"
    )

    pool = EnginePool(PoolConfig() if args.engines is None else load_pool_config(args.engines))
    started = time.perf_counter()
    engines = await pool.start([assistant.name, fuser.name])
    print(f"engines up in {time.perf_counter() - started:.0f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp, NodeCache(Path(tmp) / "cache.sqlite3") as cache:

            async def run(graph, use_cache: bool, on=questions) -> EvalReport:
                return await evaluate(
                    graph,
                    task,
                    on,
                    engines,
                    concurrency=args.concurrency,
                    cache=cache if use_cache else None,
                    max_tokens=args.max_tokens,
                )

            await run(graph_b, use_cache=False, on=warmup)
            rows = [("B, no cache", await run(graph_b, use_cache=False))]
            rows.append(("A, cache (fills it)", await run(graph_a, use_cache=True)))
            rows.append(("B after A, cache", await run(graph_b, use_cache=True)))
            rows.append(("B again, cache", await run(graph_b, use_cache=True)))
    finally:
        await pool.close()

    base = rows[0][1].wall_s
    print(f"{'run':<22}{'wall s':>9}{'vs B no cache':>15}{'hits':>7}{'misses':>8}{'acc':>7}")
    for label, report in rows:
        print(
            f"{label:<22}{report.wall_s:>9.1f}{base / report.wall_s:>14.2f}x"
            f"{report.cache.hits:>7}{report.cache.misses:>8}{report.accuracy.value:>7.0%}"
        )


if __name__ == "__main__":
    asyncio.run(main())
