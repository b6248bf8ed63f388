"""`tts-opt optimize` and `tts-opt compare`: parse the options, run the search service
(`tts_opt.optimizer.service`) under a live display, print what was written.

Mount with `app.command("optimize")(optimize_command)` and
`app.command("compare")(compare_command)`. Their shared options are declared once in
`tts_opt.cli.search_options`; the graph scorer is `real` (graphs run on engines) or `synthetic`
(the test double: its numbers are not real results and its artifacts say so).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from tts_opt.cli.display import console
from tts_opt.cli.search_options import (
    BudgetOpt,
    D,
    OutOpt,
    ParallelOpt,
    TaskOpt,
    pool_options,
    question_options,
    run_options,
    search_options,
    with_options,
)
from tts_opt.graph.render import baseline_lines
from tts_opt.optimizer import METHODS, ProgressEvent
from tts_opt.optimizer.context import ProgressFn
from tts_opt.optimizer.replay import replay_request
from tts_opt.optimizer.service import (
    COMPARED_METHODS,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    SearchRequest,
    SearchRequestError,
    SearchRun,
    Written,
    compare_runs,
    run_searches,
    write_comparison,
)


class SearchProgress:
    """One live display for the searches of a command: a bar per search with its stage, last and
    best accuracy, tokens and elapsed time; searches running at once each keep their own bar."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )

    def __enter__(self) -> SearchProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def bar(self, label: str, iterations: int) -> ProgressFn:
        """A new bar; the returned callback moves it."""
        bar = self._progress.add_task(label, total=iterations, info="starting")

        def on_progress(e: ProgressEvent) -> None:
            best = "-" if e.best_accuracy is None else f"{e.best_accuracy:.1%}"
            self._progress.update(
                bar,
                completed=e.evaluations,
                info=f"{e.stage} | last {e.last_accuracy:.1%} | best {best} | "
                f"{e.node_calls:,} node calls | {e.tokens:,} tokens",
            )

        return on_progress


def _run(request: SearchRequest, runs: list[SearchRun], parallel: int = 1) -> list[Written]:
    with SearchProgress() as display:
        return asyncio.run(run_searches(request, runs, parallel=parallel, bar=display.bar))


@with_options(pool_options, question_options, search_options, run_options)
def optimize_command(
    task: TaskOpt,
    budget: BudgetOpt,
    out: OutOpt = D["out"],
    method: Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")] = DEFAULT_METHOD,
    seed: Annotated[int, typer.Option(help="Seed of the search.")] = DEFAULT_SEED,
    **options: Any,
) -> None:
    """Search the best graph for TASK within BUDGET; write OUT/<task>@<budget>.json and a
    report. A killed run resumes from its archive when started again with the same options."""
    (written,) = _run(SearchRequest.of(locals() | options), [SearchRun(method, seed)])
    console.print(
        f"[green]wrote[/] {written.artifact_path}: test accuracy "
        f"{written.result.selection.test.measurement.accuracy:.1%}, report {written.report_path}"
    )
    if (baseline := written.result.artifact.baseline) is not None:
        for line in baseline_lines(baseline):
            console.print(line, highlight=False)


@with_options(pool_options, question_options, search_options, run_options)
def compare_command(
    task: Annotated[str | None, typer.Option(help="Task (required unless --replay).")] = None,
    budget: Annotated[float | None, typer.Option(help="Budget (required unless --replay).")] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Replay table (tts-opt bench record): task, pool, budget from it."),
    ] = None,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method", help=f"Methods to compare (repeat); default: {', '.join(COMPARED_METHODS)}."
        ),
    ] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Seeds (repeat).")] = None,
    parallel: ParallelOpt = 1,
    out: OutOpt = Path("graphs/compare"),
    **options: Any,
) -> None:
    """Run several methods with equal evaluation budgets and seeds; write a markdown table and a
    PNG of best validation utility against evaluations."""
    if replay is None and (task is None or budget is None):
        raise SearchRequestError("--task and --budget are required (or --replay TABLE)")
    params = locals() | options
    request = SearchRequest.of(params) if replay is None else replay_request(replay, params)
    runs = compare_runs(methods or COMPARED_METHODS, seeds or [0, 1, 2])
    results = [w.result for w in _run(request, runs, parallel)]
    table_path, plot, table = write_comparison(results, out, request.budget)
    console.print(table, markup=False, highlight=False)
    console.print(f"[green]wrote[/] {table_path} and {plot}")
