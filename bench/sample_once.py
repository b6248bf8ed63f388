"""Sample once, measured: the same search with and without drawing the shared source samples up
front (see bench/README.md for results and the machine they ran on).

One set of engines, two searches with identical settings and seeds, each on its own empty node
cache (so neither replays the other's samples): with `sample_once` (the source samples of every
pool model drawn for every validation question in full batches first) and without (each graph's
nodes drawn as its evaluation asks for them). Printed per run: wall time of the whole `optimize`
(search, final and test), node calls, tokens, engine samples drawn and the graph shipped, then the
ratio. The run with sample-once goes first, so engine warmth (prefix cache) favours the other.

    python bench/sample_once.py [--task gsm8k] [--budget 4] [--models qwen2.5-coder-1.5b]
        [--iterations 6] [--val-questions 6] [--reeval-questions 6] [--test-questions 6]
        [--max-tokens 256] [--engines FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from tts_opt.engines.pool import EnginePool, PoolConfig, load_pool_config
from tts_opt.evaluation import NodeCache
from tts_opt.optimizer import optimize
from tts_opt.optimizer.evaluation_scorer import EvaluationScorer
from tts_opt.optimizer.service import SearchRequest, search_settings, search_space
from tts_opt.tasks import get_task


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--budget", type=float, default=4.0)
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b"])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--val-questions", type=int, default=6)
    parser.add_argument("--reeval-questions", type=int, default=6)
    parser.add_argument("--test-questions", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--engines", type=Path, help="engine pool config (default: embedded)")
    args = parser.parse_args()
    print("command: python bench/sample_once.py " + shlex.join(sys.argv[1:]))
    request = SearchRequest(
        task=args.task,
        budget=args.budget,
        models=tuple(args.models),
        iterations=args.iterations,
        patience=args.iterations,
        val_questions=args.val_questions,
        pretest_questions=min(5, args.val_questions),
        reeval_questions=args.reeval_questions,
        test_questions=args.test_questions,
        max_tokens=args.max_tokens,
        sample_seed=0,
    )
    task = get_task(request.task)
    space = search_space(request, task)
    pool = EnginePool(PoolConfig() if args.engines is None else load_pool_config(args.engines))
    started = time.perf_counter()
    engines = await pool.start(list(args.models))
    print(f"engines up in {time.perf_counter() - started:.0f} s")

    async def ready():
        return engines

    rows = []
    try:
        for sample_once in (True, False):
            settings = msgspec.structs.replace(
                search_settings(request, "agent-reinforce", 0), sample_once=sample_once
            )
            with tempfile.TemporaryDirectory() as tmp:
                cache = NodeCache(Path(tmp) / "cache.sqlite3")
                scorer = EvaluationScorer(task, ready, cache=cache)
                t0 = time.perf_counter()
                result = await optimize(task, space, settings, scorer, Path(tmp) / "a.jsonl")
                wall = time.perf_counter() - t0
                drawn = cache.count()
                cache.close()
            label = "sample once" if sample_once else "per graph"
            rows.append((label, wall, result, drawn))
            print(f"{label}: {wall:.0f} s", flush=True)
    finally:
        await pool.close()
    print(f"{'run':<14}{'wall s':>8}{'node calls':>12}{'tokens':>10}{'samples drawn':>15}  shipped")
    for label, wall, result, drawn in rows:
        print(
            f"{label:<14}{wall:>8.0f}{result.node_calls:>12}{result.tokens:>10}{drawn:>15}  "
            f"{result.selection.winner.candidate.summary()}"
        )
    once, per_graph = rows[0][1], rows[1][1]
    print(f"wall time per graph / sample once: {per_graph / once:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
