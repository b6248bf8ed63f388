"""`tts-opt eval`: evaluate graphs (artifact files or fixed-topology probes) on a task's questions
on real engines, with a progress bar, a JSON report per graph and a summary table.

Several `--graph` options evaluate several graphs on the same questions, one after another, on
engines started once and sharing the node-output cache: the way to compare a single model with a
wider or deeper graph (the paper's pilot questions).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tts_opt.cli.display import console
from tts_opt.cli.errors import fail
from tts_opt.cli.tasks_commands import SplitName
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.evaluation import (
    PROBE_SYNTAX,
    EvalReport,
    NodeCache,
    QuestionResult,
    ResultCallback,
    evaluate,
    is_probe,
    model_spec,
    probe_graph,
    save_report,
    with_measurements,
)
from tts_opt.evaluation.probes import SpecResolver
from tts_opt.graph.io import load_artifact, save_artifact
from tts_opt.graph.schema import GraphArtifact
from tts_opt.tasks import Question, Task, get_task

if TYPE_CHECKING:  # the pool module imports every engine client: only when engines start
    from tts_opt.engines.pool import PoolConfig

DEFAULT_OUT = Path("eval-reports")


def eval_command(
    graph: Annotated[
        list[str],
        typer.Option(
            "--graph",
            "-g",
            help=f"Graph artifact FILE, or a probe: {PROBE_SYNTAX}. Repeat to compare graphs.",
        ),
    ],
    task: Annotated[str, typer.Option(help="Task: a built-in, `mmlu:<subject>,...`, a spec path.")],
    split: Annotated[SplitName, typer.Option(help="Split (search uses val only).")] = (
        SplitName.val
    ),
    limit: Annotated[
        int | None, typer.Option(min=0, help="First N of the split's fixed shuffled order.")
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="Questions in flight at once (default: enough to fill the engines' batches).",
        ),
    ] = MAX_NUM_SEQS,
    engines: Annotated[
        Path | None, typer.Option(help="Engine pool config (JSON/TOML); default: embedded models.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="A .json report file (one graph), else a directory of <graph>.json."),
    ] = DEFAULT_OUT,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse and store node outputs.")
    ] = True,
    cache_path: Annotated[
        Path | None, typer.Option(help="Node-output cache file; default: in the tts-opt cache.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Decoding seed (reproducible, cacheable samples).")] = 0,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Override the graphs' max_tokens.")
    ] = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            help="Also write each graph as evaluated, with its measured accuracy and latency, "
            "as DIR/<task>@<budget>.json (servable: tts-opt serve --graphs DIR)."
        ),
    ] = None,
) -> None:
    """Evaluate graphs on a task: accuracy with its 95% CI, latency, tokens and FLOPs."""
    targets = _report_paths(graph, out)
    from tts_opt.engines.pool import load_pool_config

    task_obj = get_task(task)
    questions = task_obj.split(split.value, limit)
    pool_config = load_pool_config(engines)
    graphs = [_graph(spec, task_obj, lambda name: model_spec(name, pool_config)) for spec in graph]
    for spec, artifact in zip(graph, graphs, strict=True):
        if artifact.task.partition(":")[0] != task_obj.name.partition(":")[0]:
            console.print(f"[yellow]note:[/] graph {spec} was made for task {artifact.task!r}")
    servable = _artifact_paths(graph, graphs, task_obj, artifacts)
    reports = asyncio.run(
        _evaluate_all(
            list(zip(graph, graphs, targets, servable, strict=True)),
            task_obj,
            questions,
            pool_config,
            split=split.value,
            concurrency=concurrency,
            cache=NodeCache(cache_path) if cache else None,
            seed=seed,
            max_tokens=max_tokens,
        )
    )
    console.print(report_table(reports))


def _graph(spec: str, task: Task, spec_of: SpecResolver) -> GraphArtifact:
    if is_probe(spec):
        return probe_graph(spec, task, spec_of)
    return load_artifact(spec)


def _report_paths(specs: Sequence[str], out: Path) -> list[Path]:
    """`out` itself for one graph and a .json `out`; else `out/<slug of the graph>.json`."""
    if out.suffix == ".json":
        if len(specs) > 1:
            raise fail(f"--out {out} is one file, but {len(specs)} graphs are evaluated")
        return [out]
    slugs = [
        re.sub(r"[^A-Za-z0-9._+-]+", "_", Path(s).stem if not is_probe(s) else s) for s in specs
    ]
    return [out / f"{slug}.json" for slug in slugs]


def _artifact_paths(
    specs: Sequence[str], graphs: Sequence[GraphArtifact], task: Task, folder: Path | None
) -> Sequence[Path | None]:
    """Where `--artifacts` writes each graph: one new file per task and budget. Everything that
    would lose or mislabel an artifact is refused before the engines start: an existing file,
    two graphs of one budget, a graph made for another task (it would be served as that task
    with this task's accuracy)."""
    if folder is None:
        return [None] * len(graphs)
    from tts_opt.optimizer.service import artifact_stem

    paths = [folder / f"{artifact_stem(a.task, a.budget.value)}.json" for a in graphs]
    for i, (spec, artifact, path) in enumerate(zip(specs, graphs, paths, strict=True)):
        if artifact.task != task.name:
            raise fail(
                f"--artifacts: {spec} is a graph for task {artifact.task!r}, not {task.name}"
            )
        if path in paths[:i]:
            raise fail(f"--artifacts: {specs[paths.index(path)]} and {spec} would both be {path}")
        if path.exists():
            raise fail(f"--artifacts: {path} exists; remove it or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    return paths


def _measured(artifact: GraphArtifact, report: EvalReport) -> GraphArtifact:
    """The graph as evaluated with what the evaluation measured. Measurements it carried from
    another decoding (max_tokens, seed) no longer describe it and are dropped."""
    evaluated = report.artifact
    if evaluated.decoding != artifact.decoding:
        evaluated = msgspec.structs.replace(evaluated, accuracy=(), latency=None, baseline=None)
    return with_measurements(evaluated, report)


async def _evaluate_all(
    jobs: list[tuple[str, GraphArtifact, Path, Path | None]],
    task: Task,
    questions: Sequence[Question],
    pool_config: PoolConfig,
    *,
    split: str,
    concurrency: int,
    cache: NodeCache | None,
    seed: int,
    max_tokens: int | None,
) -> list[EvalReport]:
    """Start the engines all graphs need once, then evaluate the graphs one after another,
    saving each report (and, where asked, the measured artifact) as soon as it is done."""
    from tts_opt.cli.run_command import start_engines
    from tts_opt.engines.pool import EnginePool

    pool = EnginePool(pool_config)
    reports: list[EvalReport] = []
    try:
        engines = await start_engines(pool, [n.model for _, a, _, _ in jobs for n in a.nodes])
        for label, artifact, target, servable in jobs:
            with _progress() as bar:
                report = await evaluate(
                    artifact,
                    task,
                    questions,
                    engines,
                    split=split,
                    concurrency=concurrency,
                    cache=cache,
                    progress=_advance(
                        bar, bar.add_task(label, total=len(questions), acc="-", errors=0)
                    ),
                    seed=seed,
                    max_tokens=max_tokens,
                    label=label,
                )
            save_report(report, target)
            console.print(f"wrote {target}")
            if servable is not None:
                save_artifact(_measured(artifact, report), servable)
                console.print(f"wrote {servable}")
            reports.append(report)
    finally:
        await pool.close()
        if cache is not None:
            cache.close()
    return reports


def _advance(bar: Progress, row: TaskID) -> ResultCallback:
    """A progress callback showing the running accuracy and error count on `row`."""
    done = correct = errors = 0

    def advance(result: QuestionResult) -> None:
        nonlocal done, correct, errors
        done += 1
        correct += result.correct
        errors += result.error is not None
        bar.update(row, advance=1, acc=f"{correct}/{done} = {correct / done:.0%}", errors=errors)

    return advance


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]}"),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        console=console,
    )


def report_table(reports: Sequence[EvalReport]) -> Table:
    """One row per report: the comparison a user reads after `tts-opt eval`."""
    table = Table(title="evaluation", title_justify="left")
    table.add_column("graph")
    for column in ("n", "accuracy", "95% CI", "errors", "p50 s", "p95 s", "tokens/q"):
        table.add_column(column, justify="right")
    for column in ("GFLOPs/q", "cache hit/miss", "wall s"):
        table.add_column(column, justify="right")
    for r in reports:
        acc = r.accuracy
        latency = r.latency
        table.add_row(
            r.graph,
            str(acc.n),
            f"{acc.value:.1%}",
            f"[{acc.ci_low:.1%}, {acc.ci_high:.1%}]",
            str(r.errors),
            "-" if latency is None else f"{latency.p50_s:.1f}",
            "-" if latency is None else f"{latency.p95_s:.1f}",
            f"{r.mean_tokens:.0f}",
            f"{r.mean_flops / 1e9:.0f}",
            f"{r.cache.hits}/{r.cache.misses}" if r.cache.enabled else "off",
            f"{r.wall_s:.1f}",
        )
    if reports:
        table.caption = (
            f"task {reports[0].task}, split {reports[0].split}; a run with cache hits is timed "
            "by its critical path over the replayed nodes' recorded times (--no-cache measures "
            "every run)"
        )
    return table
