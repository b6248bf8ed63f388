"""`tts-opt optimize` and `tts-opt compare`: search graphs for a task and budget.

Mount with `app.command("optimize")(optimize_command)` and
`app.command("compare")(compare_command)`.
The graph scorer comes from `SCORERS` by name: `real` runs graphs on engines through
`tts_opt.evaluation`; `synthetic` is the test double (its numbers are not real results and its
artifacts say so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from tts_opt.cli.display import console
from tts_opt.engines.specs import model_spec
from tts_opt.errors import UserError
from tts_opt.graph import (
    PAPER_TASK_LENGTHS,
    Budget,
    ModelSpec,
    TaskLengths,
    save_artifact,
)
from tts_opt.graph.io import write_atomic
from tts_opt.graph.schema import BudgetUnit, Decoding
from tts_opt.optimizer import (
    METHODS,
    Limits,
    Objective,
    OptimizeSettings,
    ProgressEvent,
    SearchResult,
    SearchSpace,
    SyntheticScorer,
    optimize,
)
from tts_opt.optimizer.agents import Agent, LLMAgent, RuleBasedAgent, openai_chat
from tts_opt.optimizer.budget import RepairRule
from tts_opt.optimizer.context import ProgressFn
from tts_opt.optimizer.objective import GraphScorer, ObjectiveKind
from tts_opt.optimizer.report import compare_table, plot_curves, run_report
from tts_opt.tasks import Task, get_task, measure_lengths

ScorerFactory = Callable[[Task, SearchSpace, Path | None, bool], GraphScorer]


def real_scorer(task: Task, space: SearchSpace, engines: Path | None, cache: bool) -> GraphScorer:
    """Engines from the pool config (default: the embedded models), node cache on request."""
    from tts_opt.engines.pool import EnginePool, load_pool_config
    from tts_opt.evaluation import NodeCache
    from tts_opt.optimizer.evaluation_scorer import EvaluationScorer

    pool = EnginePool(load_pool_config(engines))
    models = [m.name for m in space.pool]
    return EvaluationScorer(
        task,
        lambda: pool.start(models),
        pool.close,
        cache=NodeCache() if cache else None,
    )


SCORERS: dict[str, ScorerFactory] = {
    "real": real_scorer,
    "synthetic": lambda task, space, engines, cache: SyntheticScorer(),
}
DEFAULT_MODELS = ["gemma-3-270m", "qwen2.5-coder-1.5b"]
DEFAULT_MAX_TOKENS = Decoding().max_tokens

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
ValOpt = Annotated[int, typer.Option(help="Validation questions per search evaluation.")]
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
        help="Chat model of the LLM agent; without it the rule-based agent runs (offline)."
    ),
]
AgentUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible base URL of the agent.")]
AgentKeyOpt = Annotated[str, typer.Option(help="Environment variable holding the agent's key.")]
PromptTokOpt = Annotated[float | None, typer.Option(help="Average prompt tokens A (cost model).")]
OutputTokOpt = Annotated[float | None, typer.Option(help="Average output tokens B (cost model).")]
ScorerOpt = Annotated[str, typer.Option(help="Graph scorer: real, or synthetic (test double).")]
EnginesOpt = Annotated[
    Path | None,
    typer.Option(
        help="Engine pool config (JSON/TOML) for the real scorer; default: embedded models."
    ),
]
CacheOpt = Annotated[
    bool,
    typer.Option(
        help="Reuse node outputs across evaluations (always off with --objective "
        "accuracy-latency: a replayed node has no latency to measure)."
    ),
]
OutOpt = Annotated[Path, typer.Option(help="Output directory.")]
FreshOpt = Annotated[bool, typer.Option(help="Discard an existing archive instead of resuming.")]


class CliError(UserError):
    """A bad option or setup; printed without a traceback."""


def _with_price(spec: ModelSpec, prices: dict[str, tuple[float, float]]) -> ModelSpec:
    if spec.name not in prices:
        return spec
    usd_in, usd_out = prices[spec.name]
    return msgspec.structs.replace(spec, usd_per_input_token=usd_in, usd_per_output_token=usd_out)


def _prices(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        name, _, pair = item.partition("=")
        usd_in, _, usd_out = pair.partition("/")
        try:
            out[name] = (float(usd_in), float(usd_out))
        except ValueError as exc:
            raise CliError(f"--price {item!r}: expected MODEL=IN/OUT") from exc
    return out


def task_lengths(
    task: Task, prompt_tokens: float | None, output_tokens: float | None
) -> TaskLengths:
    """Given lengths, else the paper's, else an estimate from the data (4 characters a token)."""
    base = task.name.split(":")[0]
    if prompt_tokens is None and output_tokens is None and base in PAPER_TASK_LENGTHS:
        return PAPER_TASK_LENGTHS[base]
    estimate = measure_lengths(task, lambda text: max(1, len(text) // 4))
    return TaskLengths(
        prompt_tokens=prompt_tokens or estimate.prompt_tokens,
        output_tokens=output_tokens or estimate.output_tokens,
    )


def _agent(model: str | None, base_url: str | None, key_env: str) -> Agent:
    if model is None:
        return RuleBasedAgent()
    chat = openai_chat(model, base_url=base_url, api_key_env=key_env)
    return LLMAgent(chat, RuleBasedAgent(), model=model)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise CliError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return value


class SearchOptions(msgspec.Struct, frozen=True):
    """The options `optimize` and `compare` share, gathered from the command's parameters."""

    task: str
    budget: float
    out: Path
    budget_unit: str
    models: list[str] | None
    price: list[str] | None
    objective: str
    latency_weight: float
    latency_limit: float | None
    iterations: int
    patience: int
    time_limit: float | None
    val_questions: int
    pretest_questions: int
    reeval_questions: int
    reeval_top_k: int
    test_questions: int
    repair: str
    max_nodes: int
    max_tokens: int
    agent_model: str | None
    agent_base_url: str | None
    agent_api_key_env: str
    prompt_tokens: float | None
    output_tokens: float | None
    scorer: str
    engines: Path | None
    cache: bool
    fresh: bool

    @classmethod
    def of(cls, params: dict[str, object]) -> SearchOptions:
        return cls(**{k: v for k, v in params.items() if k in cls.__struct_fields__})  # type: ignore[arg-type]


def _setup(o: SearchOptions) -> tuple[Task, SearchSpace, GraphScorer]:
    task = get_task(o.task)
    price = _prices(o.price or [])
    pool = tuple(_with_price(model_spec(m), price) for m in o.models or DEFAULT_MODELS)
    unit: BudgetUnit = _choice(o.budget_unit, ("flops", "usd"), "--budget-unit")  # type: ignore[assignment]
    space = SearchSpace(
        task=task.name,
        budget=Budget(value=o.budget, unit=unit),
        lengths=task_lengths(task, o.prompt_tokens, o.output_tokens),
        pool=pool,
        templates=task.templates,
        decoding=Decoding(max_tokens=o.max_tokens),
        max_nodes=o.max_nodes,
    )
    if o.scorer not in SCORERS:
        raise CliError(f"--scorer {o.scorer!r}: available: {', '.join(SCORERS)}")
    # A replayed node takes no time: a latency objective must measure every run.
    cache = o.cache and o.objective != "accuracy-latency"
    return task, space, SCORERS[o.scorer](task, space, o.engines, cache)


def _settings(o: SearchOptions, method: str, seed: int) -> OptimizeSettings:
    kind: ObjectiveKind = _choice(o.objective, ("accuracy", "accuracy-latency"), "--objective")  # type: ignore[assignment]
    rule: RepairRule = _choice(o.repair, ("value", "reference"), "--repair")  # type: ignore[assignment]
    return OptimizeSettings(
        method=_choice(method, METHODS, "--method"),
        objective=Objective(
            kind=kind, latency_weight=o.latency_weight, latency_limit_s=o.latency_limit
        ),
        seed=seed,
        limits=Limits(o.iterations, o.patience, o.time_limit),
        val_questions=o.val_questions,
        pretest_questions=o.pretest_questions,
        reeval_questions=o.reeval_questions,
        reeval_top_k=o.reeval_top_k,
        test_questions=o.test_questions,
        repair=rule,
    )


def artifact_stem(task: str, budget: float) -> str:
    return f"{task.replace('/', '_')}@{budget:g}"


class Written(msgspec.Struct, frozen=True):
    result: SearchResult
    artifact_path: Path
    report_path: Path


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
                info=f"{e.stage} | last {e.last_accuracy:.1%} | best {best} | {e.tokens:,} tokens",
            )

        return on_progress


async def with_progress(label: str, iterations: int, run: Callable) -> SearchResult:
    """`run(on_progress)` under a display with one bar."""
    with SearchProgress() as display:
        return await run(display.bar(label, iterations))


async def run_searches(
    o: SearchOptions, runs: list[tuple[str, int, str]], parallel: int = 1
) -> list[Written]:
    """Each (method, seed, artifact file name with `{stem}` for <task>@<budget>) on one scorer
    (engines start once), up to `parallel` at a time, with a live display; writes each artifact
    and report and keeps each archive under OUT/.archive. Searches running at once share the
    engines' batches: more throughput in total, and each one's search time includes the sharing."""
    task, space, scorer = _setup(o)
    agent = _agent(o.agent_model, o.agent_base_url, o.agent_api_key_env)
    stem = artifact_stem(space.task, space.budget.value)
    note = (
        "SYNTHETIC SCORER (test double): accuracies are not real results. "
        if o.scorer == "synthetic"
        else ""
    )
    slots = asyncio.Semaphore(parallel)

    async def search(display: SearchProgress, method: str, seed: int, name: str) -> Written:
        async with slots:
            result = await optimize(
                task,
                space,
                _settings(o, method, seed),
                scorer,
                o.out / ".archive" / f"{stem}-{method}-s{seed}.jsonl",
                agent=agent,
                fresh=o.fresh,
                on_progress=display.bar(f"{method} s{seed}", o.iterations),
                description=f"{note}Found by {method}, seed {seed}.",
            )
        artifact_path = save_artifact(result.artifact, o.out / name.format(stem=stem))
        report_path = o.out / f"{stem}.{method}.s{seed}.report.md"
        write_atomic(report_path, run_report(result).encode())
        return Written(result, artifact_path, report_path)

    try:
        with SearchProgress() as display:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(search(display, *run)) for run in runs]
    except BaseExceptionGroup as errors:  # the first failure, as a sequential run would raise it
        raise errors.exceptions[0] from None
    finally:
        await scorer.close()
    return [t.result() for t in tasks]


def _run(o: SearchOptions, runs: list[tuple[str, int, str]], parallel: int = 1) -> list[Written]:
    return asyncio.run(run_searches(o, runs, parallel))


def optimize_command(
    task: TaskOpt,
    budget: BudgetOpt,
    out: OutOpt = Path("graphs"),
    budget_unit: UnitOpt = "flops",
    models: ModelsOpt = None,
    price: PriceOpt = None,
    method: Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")] = "agent-reinforce",
    objective: ObjectiveOpt = "accuracy",
    latency_weight: LatencyWeightOpt = 0.01,
    latency_limit: LatencyLimitOpt = None,
    iterations: IterationsOpt = 30,
    patience: PatienceOpt = 10,
    time_limit: TimeOpt = None,
    val_questions: ValOpt = 20,
    pretest_questions: PretestOpt = 5,
    reeval_questions: ReevalOpt = 60,
    reeval_top_k: TopKOpt = 3,
    test_questions: TestOpt = 100,
    seed: Annotated[int, typer.Option(help="Seed of the search.")] = 0,
    repair: RepairOpt = "value",
    max_nodes: MaxNodesOpt = 10,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    agent_model: AgentModelOpt = None,
    agent_base_url: AgentUrlOpt = None,
    agent_api_key_env: AgentKeyOpt = "OPENAI_API_KEY",
    prompt_tokens: PromptTokOpt = None,
    output_tokens: OutputTokOpt = None,
    scorer: ScorerOpt = "real",
    engines: EnginesOpt = None,
    cache: CacheOpt = True,
    fresh: FreshOpt = False,
) -> None:
    """Search the best graph for TASK within BUDGET; write OUT/<task>@<budget>.json and a
    report. A killed run resumes from its archive when started again with the same options."""
    options = SearchOptions.of(locals())
    (written,) = _run(options, [(method, seed, "{stem}.json")])
    console.print(
        f"[green]wrote[/] {written.artifact_path}: test accuracy "
        f"{written.result.selection.test.measurement.accuracy:.1%}, report {written.report_path}"
    )


def compare_command(
    task: TaskOpt,
    budget: BudgetOpt,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="Methods to compare (repeat); default: agent-reinforce, random, bo, reinforce.",
        ),
    ] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Seeds (repeat).")] = None,
    parallel: Annotated[
        int,
        typer.Option(
            min=1,
            help="Searches run at once: their evaluations share the engines' batches (more "
            "throughput on one machine; each search time then includes the sharing).",
        ),
    ] = 1,
    out: OutOpt = Path("graphs/compare"),
    budget_unit: UnitOpt = "flops",
    models: ModelsOpt = None,
    price: PriceOpt = None,
    objective: ObjectiveOpt = "accuracy",
    latency_weight: LatencyWeightOpt = 0.01,
    latency_limit: LatencyLimitOpt = None,
    iterations: IterationsOpt = 30,
    patience: PatienceOpt = 10,
    time_limit: TimeOpt = None,
    val_questions: ValOpt = 20,
    pretest_questions: PretestOpt = 5,
    reeval_questions: ReevalOpt = 60,
    reeval_top_k: TopKOpt = 3,
    test_questions: TestOpt = 100,
    repair: RepairOpt = "value",
    max_nodes: MaxNodesOpt = 10,
    max_tokens: MaxTokensOpt = DEFAULT_MAX_TOKENS,
    agent_model: AgentModelOpt = None,
    agent_base_url: AgentUrlOpt = None,
    agent_api_key_env: AgentKeyOpt = "OPENAI_API_KEY",
    prompt_tokens: PromptTokOpt = None,
    output_tokens: OutputTokOpt = None,
    scorer: ScorerOpt = "real",
    engines: EnginesOpt = None,
    cache: CacheOpt = True,
    fresh: FreshOpt = False,
) -> None:
    """Run several methods with equal evaluation budgets and seeds; write a markdown table and a
    PNG of best validation utility against evaluations."""
    options = SearchOptions.of(locals())
    runs = [
        (method, seed, f"{{stem}}.{method}.s{seed}.json")
        for method in methods or ["agent-reinforce", "random", "bo", "reinforce"]
        for seed in seeds or [0, 1, 2]
    ]
    results = [w.result for w in _run(options, runs, parallel)]
    stem = artifact_stem(results[0].artifact.task, budget)
    table = compare_table(results)
    table_path = out / f"compare-{stem}.md"
    write_atomic(table_path, table.encode())
    plot = plot_curves(results, out / f"compare-{stem}.png")
    console.print(table, markup=False, highlight=False)
    console.print(f"[green]wrote[/] {table_path} and {plot}")
