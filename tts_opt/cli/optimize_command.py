"""`tts-opt optimize` and `tts-opt compare`: parse the options, run the search service
(`tts_opt.optimizer.service`) under a live display, print what was written.

Mount with `app.command("optimize")(optimize_command)` and
`app.command("compare")(compare_command)`. Every option's default is the search request's
(`SearchRequest`); the graph scorer is `real` (graphs run on engines) or `synthetic` (the test
double: its numbers are not real results and its artifacts say so).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from tts_opt.cli.display import console
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
    request_defaults,
    run_searches,
    write_comparison,
)

D = request_defaults()

TaskOpt = Annotated[
    str,
    typer.Option(help="Task name (math, gsm8k, mmlu, humaneval, a:subject) or a task spec path."),
]
BudgetOpt = Annotated[float, typer.Option(help="Budget in budget units (flops) or $ per query.")]
UnitOpt = Annotated[str, typer.Option("--budget-unit", help="flops or usd.")]
ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--models", help="Pool models (repeat): paper names, embedded models or HF config paths."
    ),
]
PriceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--price", help="For usd budgets: MODEL=IN/OUT dollars per input/output token (repeat)."
    ),
]
ObjectiveOpt = Annotated[str, typer.Option(help="accuracy or accuracy-latency.")]
LatencyWeightOpt = Annotated[float, typer.Option(help="Accuracy lost per second of p50 latency.")]
LatencyLimitOpt = Annotated[float | None, typer.Option(help="p50 latency limit in seconds.")]
IterationsOpt = Annotated[int, typer.Option(help="Graph evaluations of the search.", min=1)]
PatienceOpt = Annotated[int, typer.Option(help="Stop after this many without improvement.")]
TimeOpt = Annotated[float | None, typer.Option(help="Stop the search after this many seconds.")]
NodeCallsOpt = Annotated[
    int | None,
    typer.Option(help="Stop the search after this many node calls (a node on a question).", min=1),
]
ValOpt = Annotated[int, typer.Option(help="Validation questions per search evaluation.")]
RaceOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Race evaluations: first score a graph on this many validation questions, more "
        "only while it can beat the best so far (0: every graph on all of them).",
    ),
]
PretestOpt = Annotated[int, typer.Option(help="Questions per Agent-REINFORCE pre-test.")]
ReevalOpt = Annotated[int, typer.Option(help="Validation questions to re-evaluate finalists.")]
TopKOpt = Annotated[int, typer.Option(help="Finalists re-evaluated.")]
TestOpt = Annotated[int, typer.Option(help="Test questions for the winner.")]
RepairOpt = Annotated[str, typer.Option(help="Over-budget repair: value or reference.")]
MaxNodesOpt = Annotated[int, typer.Option(help="Largest graph considered.")]
MaxTokensOpt = Annotated[
    int, typer.Option(min=1, help="Tokens each node may generate (shorter: cheaper search).")
]
AgentModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Chat model of the LLM agent (an embedded model, or one of --engines, runs in "
        "this process); without it the rule-based agent runs (offline)."
    ),
]
AgentUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="OpenAI-compatible base URL of the agent (default: the pool's engine for a model "
        "it runs, else the OpenAI API)."
    ),
]
AgentKeyOpt = Annotated[str, typer.Option(help="Environment variable holding the agent's key.")]
ParallelOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Searches run at once: their evaluations and an in-process agent's calls share the "
        "engines' batches (more throughput on one machine; each search time then includes the "
        "sharing).",
    ),
]
PromptTokOpt = Annotated[float | None, typer.Option(help="Average prompt tokens A (cost model).")]
OutputTokOpt = Annotated[float | None, typer.Option(help="Average output tokens B (cost model).")]
SampleSeedOpt = Annotated[
    int | None,
    typer.Option(help="Seed of the node samples (reproducible, cacheable); default: unseeded."),
]
ScorerOpt = Annotated[str, typer.Option(help="Graph scorer: real, or synthetic (test double).")]
EnginesOpt = Annotated[
    Path | None,
    typer.Option(
        help="Engine pool config (JSON/TOML) for the real scorer and an in-process agent; "
        "default: embedded models."
    ),
]
CacheOpt = Annotated[
    bool,
    typer.Option(
        help="Reuse node outputs across evaluations (a replayed node counts its recorded time "
        "in latency)."
    ),
]
SampleOnceOpt = Annotated[
    bool,
    typer.Option(
        help="Before the search, draw the source samples graphs share in full batches (with "
        "the node cache)."
    ),
]
OutOpt = Annotated[Path, typer.Option(help="Output directory.")]
FreshOpt = Annotated[bool, typer.Option(help="Discard an existing archive instead of resuming.")]


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


def optimize_command(
    task: TaskOpt,
    budget: BudgetOpt,
    out: OutOpt = D["out"],
    budget_unit: UnitOpt = D["budget_unit"],
    models: ModelsOpt = None,
    price: PriceOpt = None,
    method: Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")] = DEFAULT_METHOD,
    objective: ObjectiveOpt = D["objective"],
    latency_weight: LatencyWeightOpt = D["latency_weight"],
    latency_limit: LatencyLimitOpt = D["latency_limit"],
    iterations: IterationsOpt = D["iterations"],
    patience: PatienceOpt = D["patience"],
    time_limit: TimeOpt = D["time_limit"],
    node_calls: NodeCallsOpt = D["node_calls"],
    val_questions: ValOpt = D["val_questions"],
    race_first: RaceOpt = D["race_first"],
    pretest_questions: PretestOpt = D["pretest_questions"],
    reeval_questions: ReevalOpt = D["reeval_questions"],
    reeval_top_k: TopKOpt = D["reeval_top_k"],
    test_questions: TestOpt = D["test_questions"],
    seed: Annotated[int, typer.Option(help="Seed of the search.")] = DEFAULT_SEED,
    repair: RepairOpt = D["repair"],
    max_nodes: MaxNodesOpt = D["max_nodes"],
    max_tokens: MaxTokensOpt = D["max_tokens"],
    sample_seed: SampleSeedOpt = D["sample_seed"],
    agent_model: AgentModelOpt = D["agent_model"],
    agent_base_url: AgentUrlOpt = D["agent_base_url"],
    agent_api_key_env: AgentKeyOpt = D["agent_api_key_env"],
    prompt_tokens: PromptTokOpt = D["prompt_tokens"],
    output_tokens: OutputTokOpt = D["output_tokens"],
    scorer: ScorerOpt = D["scorer"],
    engines: EnginesOpt = D["engines"],
    cache: CacheOpt = D["cache"],
    sample_once: SampleOnceOpt = D["sample_once"],
    fresh: FreshOpt = D["fresh"],
) -> None:
    """Search the best graph for TASK within BUDGET; write OUT/<task>@<budget>.json and a
    report. A killed run resumes from its archive when started again with the same options."""
    (written,) = _run(SearchRequest.of(locals()), [SearchRun(method, seed)])
    console.print(
        f"[green]wrote[/] {written.artifact_path}: test accuracy "
        f"{written.result.selection.test.measurement.accuracy:.1%}, report {written.report_path}"
    )
    if (baseline := written.result.artifact.baseline) is not None:
        console.print(f"against the single model: {baseline.summary}", highlight=False)


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
    budget_unit: UnitOpt = D["budget_unit"],
    models: ModelsOpt = None,
    price: PriceOpt = None,
    objective: ObjectiveOpt = D["objective"],
    latency_weight: LatencyWeightOpt = D["latency_weight"],
    latency_limit: LatencyLimitOpt = D["latency_limit"],
    iterations: IterationsOpt = D["iterations"],
    patience: PatienceOpt = D["patience"],
    time_limit: TimeOpt = D["time_limit"],
    node_calls: NodeCallsOpt = D["node_calls"],
    val_questions: ValOpt = D["val_questions"],
    race_first: RaceOpt = D["race_first"],
    pretest_questions: PretestOpt = D["pretest_questions"],
    reeval_questions: ReevalOpt = D["reeval_questions"],
    reeval_top_k: TopKOpt = D["reeval_top_k"],
    test_questions: TestOpt = D["test_questions"],
    repair: RepairOpt = D["repair"],
    max_nodes: MaxNodesOpt = D["max_nodes"],
    max_tokens: MaxTokensOpt = D["max_tokens"],
    sample_seed: SampleSeedOpt = D["sample_seed"],
    agent_model: AgentModelOpt = D["agent_model"],
    agent_base_url: AgentUrlOpt = D["agent_base_url"],
    agent_api_key_env: AgentKeyOpt = D["agent_api_key_env"],
    prompt_tokens: PromptTokOpt = D["prompt_tokens"],
    output_tokens: OutputTokOpt = D["output_tokens"],
    scorer: ScorerOpt = D["scorer"],
    engines: EnginesOpt = D["engines"],
    cache: CacheOpt = D["cache"],
    sample_once: SampleOnceOpt = D["sample_once"],
    fresh: FreshOpt = D["fresh"],
) -> None:
    """Run several methods with equal evaluation budgets and seeds; write a markdown table and a
    PNG of best validation utility against evaluations."""
    if replay is None and (task is None or budget is None):
        raise SearchRequestError("--task and --budget are required (or --replay TABLE)")
    request = SearchRequest.of(locals()) if replay is None else replay_request(replay, locals())
    runs = compare_runs(methods or COMPARED_METHODS, seeds or [0, 1, 2])
    results = [w.result for w in _run(request, runs, parallel)]
    table_path, plot, table = write_comparison(results, out, request.budget)
    console.print(table, markup=False, highlight=False)
    console.print(f"[green]wrote[/] {table_path} and {plot}")
