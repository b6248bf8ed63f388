"""Evaluation at the engine's best batch (see bench/README.md for results and the machine).

One graph on the same GSM8K validation questions with the same sample seeds, evaluated with 8
questions in flight (the earlier default) and with 32 (the engines' `max_num_seqs`, today's
default), in one run on one set of engines, node cache off. The samples are the same draws in
both (up to the engine's batch-dependent arithmetic), so accuracy is compared paired. The run at
32 goes first: whatever the engines keep from it (prefix cache) favours the run at 8, so the
speed-up is not overstated. A warm-up evaluation on other questions runs before both.

    python bench/eval_batch.py [--questions 30] [--width 3] [--model qwen2.5-coder-1.5b]
        [--max-tokens N] [--concurrency 8 32] [--engines FILE] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

from paired import print_paired, print_rows

from tts_opt.engines.pool import EnginePool, PoolConfig, load_pool_config
from tts_opt.evaluation import EvalReport, evaluate, model_spec, parallel_graph, save_report
from tts_opt.tasks import get_task

WARMUP = 2  # questions of the warm-up evaluation (not among the measured ones)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--width", type=int, default=3, help="assistants into the fuser")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="every node's model")
    parser.add_argument("--max-tokens", type=int, help="per node (default: the graph's, 512)")
    parser.add_argument("--concurrency", type=int, nargs=2, default=[8, 32], metavar=("OLD", "NEW"))
    parser.add_argument("--engines", type=Path, help="engine pool config (default: embedded)")
    parser.add_argument("--out", type=Path, help="also write both evaluation reports here")
    args = parser.parse_args()
    print("command: python bench/eval_batch.py " + shlex.join(sys.argv[1:]))

    task = get_task("gsm8k")
    picked = task.split("val", WARMUP + args.questions)
    warmup, questions = picked[:WARMUP], picked[WARMUP:]
    pool_config = PoolConfig() if args.engines is None else load_pool_config(args.engines)
    spec = model_spec(args.model, pool_config)
    graph = parallel_graph(task, [spec] * args.width, spec)
    old, new = args.concurrency
    print(
        f"task gsm8k val, {len(questions)} questions, {args.width} x {spec.name} -> {spec.name} "
        f"fuser, {old} vs {new} questions in flight, cache off"
    )

    pool = EnginePool(pool_config)
    started = time.perf_counter()
    engines = await pool.start([spec.name])
    print(f"engines up in {time.perf_counter() - started:.0f} s")

    async def run(concurrency: int, on=questions) -> EvalReport:
        return await evaluate(
            graph,
            task,
            on,
            engines,
            concurrency=concurrency,
            max_tokens=args.max_tokens,
            seed=0,
            label=f"{concurrency} in flight",
        )

    try:
        await run(old, on=warmup)
        batched = await run(new)
        print(f"{new} in flight: {batched.wall_s:.0f} s", flush=True)
        baseline = await run(old)
    finally:
        await pool.close()
    print_rows(baseline, batched)
    print_paired(baseline, batched)
    if args.out is not None:
        for report in (baseline, batched):
            name = f"concurrency_{report.concurrency}.json"
            print(f"wrote {save_report(report, args.out / name)}")


if __name__ == "__main__":
    asyncio.run(main())
