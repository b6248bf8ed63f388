"""`tts-opt bench`: a tabular benchmark of the search methods.

`record` scores every graph of a small search space once on fixed questions and writes the table
(resumable); `replay` runs the search methods against it with many seeds, answering every
evaluation from the table, and writes a report of what they return against the table's best.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.progress import Progress

from tts_opt.cli.display import console
from tts_opt.cli.search_options import (
    BudgetOpt,
    ParallelOpt,
    TaskOpt,
    pool_options,
    question_options,
    search_options,
    with_options,
)
from tts_opt.optimizer import METHODS, SearchResult
from tts_opt.optimizer.replay import replay_request
from tts_opt.optimizer.replay_report import write_replay_report
from tts_opt.optimizer.service import (
    COMPARED_METHODS,
    SearchRequest,
    compare_runs,
    run_searches,
)
from tts_opt.optimizer.table import read_table, record_request

bench_app = typer.Typer(
    help="Tabular benchmark of search methods: score every graph once, replay searches on it."
)
TableArg = Annotated[Path, typer.Argument(help="The replay table (JSONL).")]


@bench_app.command("record")
@with_options(pool_options, question_options)
def record(
    table: TableArg,
    task: TaskOpt,
    budget: BudgetOpt,
    fresh: Annotated[bool, typer.Option(help="Start the table over instead of resuming.")] = False,
    **options: Any,
) -> None:
    """Score every graph of up to MAX_NODES nodes within BUDGET (one per isomorphism class) on
    max(val, reeval) validation and the test questions, into TABLE. A killed recording resumes
    from TABLE when started again with the same options."""
    request = SearchRequest.of(locals() | options)
    with Progress(*Progress.get_default_columns(), console=console) as progress:
        bar = progress.add_task("graphs", total=None)
        done = asyncio.run(
            record_request(
                table,
                request,
                on_progress=lambda n, total: progress.update(bar, completed=n, total=total),
            )
        )
    console.print(f"[green]wrote[/] {table}: {len(done.rows)} graphs")


@bench_app.command("replay")
@with_options(pool_options, question_options, search_options)
def replay(
    table: TableArg,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per method (0, 1, ...).")] = 20,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help=f"Methods (repeat; {', '.join(METHODS)}); default: {', '.join(COMPARED_METHODS)}.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory of the report.")] = Path(
        "graphs/bench"
    ),
    parallel: ParallelOpt = 1,
    stop_at: Annotated[
        list[int] | None,
        typer.Option(
            "--stop-at",
            min=1,
            help="Also replay every search limited to N evaluations (repeat): the report's "
            "returned graph by search budget, its final included.",
        ),
    ] = None,
    **options: Any,
) -> None:
    """Replay each method with each seed against TABLE (task, pool, budget and questions as
    recorded; question counts may be lowered); write OUT/replay-<table>.md and .png.

    With --agent-model, the Agent-REINFORCE methods and TextGrad (which needs one) ask that chat
    model: an embedded model (or one of --engines) runs in this process, its replies held to the
    reply schema by structured outputs; the report counts how its replies came about."""
    params = locals() | options
    runs = compare_runs(methods or COMPARED_METHODS, range(seeds))
    with (
        tempfile.TemporaryDirectory() as scratch,
        console.status(f"replaying {len(runs)} searches"),
    ):
        request = replay_request(table, params | {"out": Path(scratch)})

        def replayed(limit: int | None) -> list[SearchResult]:
            limited = (
                request
                if limit is None
                else msgspec.structs.replace(
                    request, iterations=limit, out=Path(scratch) / f"stop-at-{limit}"
                )
            )
            return [w.result for w in asyncio.run(run_searches(limited, runs, parallel=parallel))]

        results = replayed(None)
        by_limit = {n: replayed(n) for n in sorted(set(stop_at or ()))}
    rows = read_table(table).rows
    md, png, markdown = write_replay_report(table, rows, results, out, by_limit)
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    console.print(f"[green]wrote[/] {md} and {png}")
