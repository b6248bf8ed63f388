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

from paired import add_graph_arguments, graph_setup, print_paired, print_rows, start_engines

from tts_opt.evaluation import EvalReport, evaluate, save_report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_graph_arguments(parser, questions=30)
    parser.add_argument("--concurrency", type=int, nargs=2, default=[8, 32], metavar=("OLD", "NEW"))
    args = parser.parse_args()
    print("command: python bench/eval_batch.py " + shlex.join(sys.argv[1:]))
    setup = graph_setup(args)
    old, new = args.concurrency
    print(
        f"task gsm8k val, {len(setup.questions)} questions, {args.width} x {setup.model} -> "
        f"{setup.model} fuser, {old} vs {new} questions in flight, cache off"
    )
    pool, engines = await start_engines(setup)

    async def run(concurrency: int, on=setup.questions) -> EvalReport:
        return await evaluate(
            setup.graph,
            setup.task,
            on,
            engines,
            concurrency=concurrency,
            max_tokens=args.max_tokens,
            seed=0,
            label=f"{concurrency} in flight",
        )

    try:
        await run(old, on=setup.warmup)
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
