"""Early exit on agreement, paired (see bench/README.md for results and the machine they ran on).

The GSM8K graph of `results/eval/`, K assistants (one n=K request) into a fuser, all one model,
evaluated on the same validation questions with the same sample seeds without and with the
artifact's `early_exit` rule (numeric answers, quorum Q). Until a quorum forms the rule changes
nothing, so the assistants' samples are the same in both runs (up to the engine's batch-dependent
arithmetic) and the pairs differ where the rule returned an agreeing assistant's answer instead
of the fuser's. Printed: accuracy, tokens and FLOPs per query, p50/p95 latency and wall time of
each run, their ratios, how often the rule fired, and the paired accuracy difference (with minus
without) with its 95% interval and the exact McNemar p-value.

The node-output cache is off, so every latency is a real run (a replayed sample would return at
once). A warm-up evaluation on other questions runs first. The run with the rule goes first: any
warmth the engines keep from it (prefix cache) favours the run without, so the latency saving is
not overstated.

    python bench/early_exit.py [--questions 60] [--quorum 2] [--width 3]
        [--model qwen2.5-coder-1.5b] [--max-tokens 512] [--concurrency 32] [--engines FILE]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Mapping, Sequence

import msgspec
from paired import add_graph_arguments, graph_setup, print_paired, print_rows, start_engines

from tts_opt.engines.base import Engine
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.evaluation import EvalReport, evaluate, save_report
from tts_opt.graph.schema import AnswerExtractor, EarlyExit, GraphArtifact
from tts_opt.graph.validate import validate
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task


def with_rule(graph: GraphArtifact, quorum: int) -> GraphArtifact:
    rule = EarlyExit(AnswerExtractor("numeric"), quorum)
    return msgspec.structs.replace(
        graph, early_exit=rule, description=f"{graph.description}, early exit quorum {quorum}"
    )


async def paired_runs(
    graph: GraphArtifact,
    quorum: int,
    task: Task,
    questions: Sequence[Question],
    engines: Mapping[str, Engine],
    *,
    concurrency: int,
    max_tokens: int | None,
) -> tuple[EvalReport, EvalReport]:
    """(without, with) the rule, on the same questions and seeds, cache off; the rule first."""

    async def run(artifact: GraphArtifact, label: str) -> EvalReport:
        return await evaluate(
            artifact,
            task,
            questions,
            engines,
            concurrency=concurrency,
            max_tokens=max_tokens,
            seed=0,
            label=label,
        )

    ruled = await run(with_rule(graph, quorum), f"early exit, quorum {quorum}")
    plain = await run(graph, "no early exit")
    return plain, ruled


def print_comparison(plain: EvalReport, ruled: EvalReport) -> None:
    print_rows(plain, ruled)
    print(f"early exits: {sum(r.early_exit for r in ruled.results)} of {ruled.n} questions")
    print_paired(plain, ruled)
    pairs = list(zip(ruled.results, plain.results, strict=True))
    exited = [(r, p) for r, p in pairs if r.early_exit]
    if exited:
        print(
            f"on the {len(exited)} early-exited questions: agreeing answer right "
            f"{sum(r.correct for r, _ in exited)}, fuser right {sum(p.correct for _, p in exited)}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_graph_arguments(parser, questions=60)
    parser.add_argument("--quorum", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=MAX_NUM_SEQS)
    args = parser.parse_args()
    print("command: python bench/early_exit.py " + shlex.join(sys.argv[1:]))
    setup = graph_setup(args)
    task, questions, graph = setup.task, setup.questions, setup.graph
    validate(with_rule(graph, args.quorum))  # a bad quorum fails here, before any engine starts
    print(
        f"task gsm8k val, {len(questions)} questions, {args.width} x {setup.model} -> "
        f"{setup.model} fuser, quorum {args.quorum}, concurrency {args.concurrency}, cache off"
    )
    pool, engines = await start_engines(setup)
    try:
        await evaluate(
            graph,
            task,
            setup.warmup,
            engines,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
        )
        plain, ruled = await paired_runs(
            graph,
            args.quorum,
            task,
            questions,
            engines,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
        )
    finally:
        await pool.close()
    print_comparison(plain, ruled)
    if args.out is not None:
        for name, report in (("no_early_exit", plain), (f"early_exit_q{args.quorum}", ruled)):
            print(f"wrote {save_report(report, args.out / f'{name}.json')}")


if __name__ == "__main__":
    asyncio.run(main())
