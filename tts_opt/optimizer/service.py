"""The search service: one or several searches for a task and budget, end to end, with what they
write (artifact, report, archive, comparison table and plot).

`SearchRequest` is the one source of a search's options and their defaults (drawn from
`OptimizeSettings`, `Limits`, `Objective` and `Decoding`); front ends build their options from it
(`request_defaults`). Searches started together share one scorer, so the engines start once and
the searches' evaluations batch together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

from tts_opt.engines.specs import model_spec
from tts_opt.errors import UserError
from tts_opt.graph import Budget, ModelSpec, save_artifact
from tts_opt.graph.io import write_atomic
from tts_opt.graph.schema import BudgetUnit, Decoding
from tts_opt.optimizer.agents import Agent, LLMAgent, RuleBasedAgent, engine_chat, openai_chat
from tts_opt.optimizer.budget import RepairRule
from tts_opt.optimizer.context import Limits, ProgressFn
from tts_opt.optimizer.methods import METHODS
from tts_opt.optimizer.objective import GraphScorer, Objective, ObjectiveKind
from tts_opt.optimizer.report import compare_table, plot_curves, run_report
from tts_opt.optimizer.runner import OptimizeSettings, SearchResult, optimize
from tts_opt.optimizer.space import MAX_NODES, SearchSpace
from tts_opt.optimizer.synthetic import SyntheticScorer
from tts_opt.tasks import Task, get_task, task_lengths

if TYPE_CHECKING:
    from tts_opt.engines.pool import EnginePool

DEFAULT_MODELS = ("gemma-3-270m", "qwen2.5-coder-1.5b")
COMPARED_METHODS = ("agent-reinforce", "random", "bo", "reinforce")
_SETTINGS = OptimizeSettings()
DEFAULT_METHOD, DEFAULT_SEED = _SETTINGS.method, _SETTINGS.seed


class SearchRequestError(UserError, ValueError):
    """An option of a search request that cannot be used; the message names it."""


class SearchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a search is asked to do, as `tts-opt optimize` and `compare` take it."""

    task: str
    budget: float
    out: Path = Path("graphs")
    budget_unit: str = "flops"
    models: tuple[str, ...] = DEFAULT_MODELS
    price: tuple[str, ...] = ()
    objective: str = _SETTINGS.objective.kind
    latency_weight: float = _SETTINGS.objective.latency_weight
    latency_limit: float | None = _SETTINGS.objective.latency_limit_s
    iterations: int = _SETTINGS.limits.iterations
    patience: int = _SETTINGS.limits.patience
    time_limit: float | None = _SETTINGS.limits.time_limit_s
    node_calls: int | None = _SETTINGS.limits.node_calls
    val_questions: int = _SETTINGS.val_questions
    race_first: int = _SETTINGS.race_first
    pretest_questions: int = _SETTINGS.pretest_questions
    reeval_questions: int = _SETTINGS.reeval_questions
    reeval_top_k: int = _SETTINGS.reeval_top_k
    test_questions: int = _SETTINGS.test_questions
    repair: str = _SETTINGS.repair
    max_nodes: int = MAX_NODES
    max_tokens: int = Decoding().max_tokens
    sample_seed: int | None = Decoding().seed
    agent_model: str | None = None
    agent_base_url: str | None = None
    agent_api_key_env: str = "OPENAI_API_KEY"
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    scorer: str = "real"
    replay: Path | None = None  # the table the "replay" scorer answers from
    engines: Path | None = None
    cache: bool = True
    sample_once: bool = _SETTINGS.sample_once
    fresh: bool = False

    @classmethod
    def of(cls, params: dict[str, Any]) -> SearchRequest:
        """The request from a front end's parameters (extra ones ignored, lists as tuples)."""
        fields = {f.name for f in msgspec.structs.fields(cls)}
        chosen: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in params.items()
        }
        return cls(**{k: v for k, v in chosen.items() if k in fields and v is not None})


def request_defaults() -> dict[str, Any]:
    """Every option's default, by name: what the command-line options are built from."""
    return {
        f.name: f.default
        for f in msgspec.structs.fields(SearchRequest)
        if f.default is not msgspec.NODEFAULT
    }


class Written(msgspec.Struct, frozen=True):
    result: SearchResult
    artifact_path: Path
    report_path: Path


class SearchRun(msgspec.Struct, frozen=True):
    """One search of a request: a method and seed, and the artifact's file name (`{stem}` is
    replaced by <task>@<budget>)."""

    method: str
    seed: int
    artifact_name: str = "{stem}.json"


BarFactory = Callable[[str, int], ProgressFn]
# A scorer for a search; the pool holds the engines, shared with an LLM agent on one of them.
ScorerFactory = Callable[[Task, SearchSpace, SearchRequest, "EnginePool"], GraphScorer]


def engine_pool(request: SearchRequest) -> EnginePool:
    """The engines of `request.engines` (default: the embedded models), none started yet."""
    from tts_opt.engines.pool import EnginePool, load_pool_config

    return EnginePool(load_pool_config(request.engines))


def real_scorer(
    task: Task, space: SearchSpace, request: SearchRequest, pool: EnginePool | None = None
) -> GraphScorer:
    """Engines from `pool` (default: `engine_pool(request)`), the node cache unless off; a
    latency objective replays only samples with a recorded time."""
    from tts_opt.evaluation import NodeCache
    from tts_opt.optimizer.evaluation_scorer import EvaluationScorer

    pool = pool or engine_pool(request)
    models = [m.name for m in space.pool]
    timed_only = request.objective == "accuracy-latency"
    return EvaluationScorer(
        task,
        lambda: pool.start(models),
        pool.close,
        cache=NodeCache(timed_only=timed_only) if request.cache else None,
    )


def replay_scorer(
    task: Task, space: SearchSpace, request: SearchRequest, pool: EnginePool
) -> GraphScorer:
    """Answers from the recorded table `request.replay` (`tts_opt.optimizer.replay`)."""
    from tts_opt.optimizer.replay import ReplayScorer

    if request.replay is None:
        raise SearchRequestError("scorer 'replay' needs a table: pass --replay TABLE")
    return ReplayScorer.for_search(request.replay, task, space)


SCORERS: dict[str, ScorerFactory] = {
    "real": real_scorer,
    "synthetic": lambda task, space, request, pool: SyntheticScorer(),
    "replay": replay_scorer,
}


def make_scorer(
    task: Task, space: SearchSpace, request: SearchRequest, pool: EnginePool | None = None
) -> GraphScorer:
    """The scorer `request.scorer` names, on `pool` (default: `engine_pool(request)`)."""
    if request.scorer not in SCORERS:
        raise SearchRequestError(f"scorer {request.scorer!r}: available: {', '.join(SCORERS)}")
    return SCORERS[request.scorer](task, space, request, pool or engine_pool(request))


def artifact_stem(task: str, budget: float) -> str:
    return f"{task.replace('/', '_')}@{budget:g}"


def search_space(request: SearchRequest, task: Task) -> SearchSpace:
    prices = _prices(request.price)
    return SearchSpace(
        task=task.name,
        budget=Budget(
            value=request.budget,
            unit=cast(BudgetUnit, _choice(request.budget_unit, ("flops", "usd"), "budget_unit")),
        ),
        lengths=task_lengths(task, request.prompt_tokens, request.output_tokens),
        pool=tuple(_with_price(model_spec(m), prices) for m in request.models),
        templates=task.templates,
        decoding=Decoding(max_tokens=request.max_tokens, seed=request.sample_seed),
        max_nodes=request.max_nodes,
    )


def search_settings(request: SearchRequest, method: str, seed: int) -> OptimizeSettings:
    kinds = ("accuracy", "accuracy-latency")
    return OptimizeSettings(
        method=_choice(method, METHODS, "method"),
        objective=Objective(
            kind=cast(ObjectiveKind, _choice(request.objective, kinds, "objective")),
            latency_weight=request.latency_weight,
            latency_limit_s=request.latency_limit,
        ),
        seed=seed,
        limits=Limits(request.iterations, request.patience, request.time_limit, request.node_calls),
        val_questions=request.val_questions,
        race_first=request.race_first,
        sample_once=request.sample_once,
        pretest_questions=request.pretest_questions,
        reeval_questions=request.reeval_questions,
        reeval_top_k=request.reeval_top_k,
        test_questions=request.test_questions,
        repair=cast(RepairRule, _choice(request.repair, ("value", "reference"), "repair")),
    )


async def run_searches(
    request: SearchRequest,
    runs: Sequence[SearchRun],
    *,
    parallel: int = 1,
    bar: BarFactory | None = None,
    scorer: GraphScorer | None = None,
    description: str | None = None,
) -> list[Written]:
    """Run each search on one scorer, up to `parallel` at a time; write each artifact and report
    to `request.out`, and keep each archive under `out/.archive` (a killed run resumes from it).

    `bar(label, iterations)` gives each search its progress callback. `scorer` (default: built
    from `request.scorer`) is closed at the end either way. Searches running at once share the
    engines' batches: more throughput in total, and each one's search time includes the sharing.
    """
    task = get_task(request.task)
    space = search_space(request, task)
    pool = engine_pool(request)
    if scorer is None:
        scorer = make_scorer(task, space, request, pool)
    agent = make_agent(request, pool)
    stem = artifact_stem(space.task, space.budget.value)
    note = "SYNTHETIC SCORER (test double): accuracies are not real results. "
    note = note if request.scorer == "synthetic" else ""
    slots = asyncio.Semaphore(parallel)

    async def search(run: SearchRun) -> Written:
        label = f"{run.method} s{run.seed}"
        async with slots:
            result = await optimize(
                task,
                space,
                search_settings(request, run.method, run.seed),
                scorer,
                request.out / ".archive" / f"{stem}-{run.method}-s{run.seed}.jsonl",
                agent=agent,
                fresh=request.fresh,
                on_progress=None if bar is None else bar(label, request.iterations),
                description=description or f"{note}Found by {run.method}, seed {run.seed}.",
            )
        artifact_path = save_artifact(
            result.artifact, request.out / run.artifact_name.format(stem=stem)
        )
        report_path = request.out / f"{stem}.{run.method}.s{run.seed}.report.md"
        write_atomic(report_path, run_report(result).encode())
        return Written(result, artifact_path, report_path)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(search(run)) for run in runs]
    except BaseExceptionGroup as errors:  # the first failure, as a sequential run would raise it
        raise errors.exceptions[0] from None
    finally:
        await scorer.close()
        await pool.close()  # the agent's engine, if the scorer did not use the pool
    return [t.result() for t in tasks]


def compare_runs(methods: Sequence[str], seeds: Sequence[int]) -> list[SearchRun]:
    """Every method with every seed, each artifact named after both."""
    return [
        SearchRun(method, seed, f"{{stem}}.{method}.s{seed}.json")
        for method in methods
        for seed in seeds
    ]


def write_comparison(
    results: Sequence[SearchResult], out: Path, budget: float
) -> tuple[Path, Path, str]:
    """The comparison table (markdown) and the plot of best validation utility against
    evaluations; returns their paths and the table."""
    stem = artifact_stem(results[0].artifact.task, budget)
    table = compare_table(results)
    table_path = write_atomic(out / f"compare-{stem}.md", table.encode())
    plot = plot_curves(results, out / f"compare-{stem}.png")
    return table_path, plot, table


def make_agent(request: SearchRequest, pool: EnginePool) -> Agent:
    """No agent model: the rule-based agent. A model at `agent_base_url`, or one the pool does
    not run (e.g. an OpenAI model): over the OpenAI API. Otherwise (an embedded model, or one of
    `--engines`) on the pool's engine of it, in this process and shared with the scorer."""
    model = request.agent_model
    if model is None:
        return RuleBasedAgent()
    if request.agent_base_url is None and pool.serves(model):
        chat = engine_chat(partial(pool.engine, model))
    else:
        chat = openai_chat(
            model, base_url=request.agent_base_url, api_key_env=request.agent_api_key_env
        )
    return LLMAgent(chat, RuleBasedAgent(), model=model)


def _choice(value: str, allowed: Sequence[str], option: str) -> str:
    if value not in allowed:
        raise SearchRequestError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return value


def _prices(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        name, _, pair = item.partition("=")
        usd_in, _, usd_out = pair.partition("/")
        try:
            out[name] = (float(usd_in), float(usd_out))
        except ValueError as exc:
            raise SearchRequestError(f"price {item!r}: expected MODEL=IN/OUT") from exc
    return out


def _with_price(spec: ModelSpec, prices: dict[str, tuple[float, float]]) -> ModelSpec:
    if spec.name not in prices:
        return spec
    usd_in, usd_out = prices[spec.name]
    return msgspec.structs.replace(spec, usd_per_input_token=usd_in, usd_per_output_token=usd_out)
