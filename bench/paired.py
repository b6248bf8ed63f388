"""Paired evaluation benchmarks: one same-model GSM8K graph (K assistants into a fuser) on
validation questions, two ways, on one set of engines. Here: the shared options and set-up, and
the comparison of two evaluations on the same questions and sample seeds (a row per run, the
ratios of the second to the first, the paired accuracy difference with its 95% interval and the
exact McNemar p-value)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tts_opt.engines.base import Engine
from tts_opt.engines.pool import EnginePool, PoolConfig, load_pool_config
from tts_opt.evaluation import EvalReport, model_spec, parallel_graph
from tts_opt.evaluation.stats import mcnemar_exact, paired_difference_interval
from tts_opt.graph.schema import GraphArtifact
from tts_opt.tasks import get_task
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

WARMUP = 2  # questions of the warm-up evaluation (not among the measured ones)


class Setup(NamedTuple):
    task: Task
    warmup: Sequence[Question]
    questions: Sequence[Question]
    pool_config: PoolConfig
    graph: GraphArtifact
    model: str


def add_graph_arguments(parser: argparse.ArgumentParser, questions: int) -> None:
    parser.add_argument("--questions", type=int, default=questions)
    parser.add_argument("--width", type=int, default=3, help="assistants into the fuser")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="every node's model")
    parser.add_argument("--max-tokens", type=int, help="per node (default: the graph's, 512)")
    parser.add_argument("--engines", type=Path, help="engine pool config (default: embedded)")
    parser.add_argument("--out", type=Path, help="also write both evaluation reports here")


def graph_setup(args: argparse.Namespace) -> Setup:
    """The task, the warm-up and measured questions, the pool config and the graph."""
    task = get_task("gsm8k")
    picked = task.split("val", WARMUP + args.questions)
    pool_config = PoolConfig() if args.engines is None else load_pool_config(args.engines)
    spec = model_spec(args.model, pool_config)
    graph = parallel_graph(task, [spec] * args.width, spec)
    return Setup(task, picked[:WARMUP], picked[WARMUP:], pool_config, graph, spec.name)


async def start_engines(setup: Setup) -> tuple[EnginePool, Mapping[str, Engine]]:
    pool = EnginePool(setup.pool_config)
    started = time.perf_counter()
    engines = await pool.start([setup.model])
    print(f"engines up in {time.perf_counter() - started:.0f} s", flush=True)
    return pool, engines


def print_rows(*reports: EvalReport) -> None:
    print(
        f"{'run':<28}{'acc':>7}{'tokens/q':>10}{'GFLOPs/q':>10}{'p50 s':>8}{'p95 s':>8}"
        f"{'wall s':>8}{'errors':>7}"
    )
    for report in reports:
        latency = report.latency
        p50, p95 = (latency.p50_s, latency.p95_s) if latency else (float("nan"),) * 2
        print(
            f"{report.graph:<28}{report.accuracy.value:>7.1%}{report.mean_tokens:>10.0f}"
            f"{report.mean_flops / 1e9:>10.0f}{p50:>8.1f}{p95:>8.1f}{report.wall_s:>8.0f}"
            f"{report.errors:>7}"
        )


def print_paired(first: EvalReport, second: EvalReport) -> None:
    """Ratios and the paired difference of `second` against `first`."""
    if first.latency and second.latency:
        print(
            f"{second.graph} / {first.graph}: tokens {second.mean_tokens / first.mean_tokens:.2f}"
            f", FLOPs {second.mean_flops / first.mean_flops:.2f}, p50 "
            f"{second.latency.p50_s / first.latency.p50_s:.2f}, p95 "
            f"{second.latency.p95_s / first.latency.p95_s:.2f}, wall "
            f"{second.wall_s / first.wall_s:.2f} (speed-up {first.wall_s / second.wall_s:.2f}x)"
        )
    pairs = list(zip(second.results, first.results, strict=True))
    assert all(s.id == f.id for s, f in pairs), "the runs must answer the same questions"
    wins = sum(s.correct and not f.correct for s, f in pairs)
    losses = sum(f.correct and not s.correct for s, f in pairs)
    low, high = paired_difference_interval(wins, losses, len(pairs))
    print(
        f"accuracy {second.graph} - {first.graph}: {(wins - losses) / len(pairs):+.1%} (95% CI "
        f"{low:+.1%} to {high:+.1%}), McNemar p = {mcnemar_exact(wins, losses):.3g}; {wins} "
        f"questions right only in the second, {losses} only in the first, n = {len(pairs)}"
    )
