"""The options of the search commands (optimize, compare, bench record/replay), declared once.

Typer builds a command's options from its signature, so a group of options is a function whose
signature declares them (never called), and `with_options(*groups)` appends the groups'
parameters to a command's signature; the command receives them in `**options`. Every default is
the search request's (`SearchRequest`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from tts_opt.optimizer.service import request_defaults

D = request_defaults()
Command = TypeVar("Command", bound=Callable[..., None])

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


def pool_options(
    budget_unit: UnitOpt = D["budget_unit"],
    models: ModelsOpt = None,
    price: PriceOpt = None,
    max_nodes: MaxNodesOpt = D["max_nodes"],
    max_tokens: MaxTokensOpt = D["max_tokens"],
    sample_seed: SampleSeedOpt = D["sample_seed"],
    prompt_tokens: PromptTokOpt = D["prompt_tokens"],
    output_tokens: OutputTokOpt = D["output_tokens"],
    scorer: ScorerOpt = D["scorer"],
    engines: EnginesOpt = D["engines"],
    cache: CacheOpt = D["cache"],
) -> None:
    """The pool, the search space and how graphs are scored."""


def question_options(
    val_questions: ValOpt = D["val_questions"],
    reeval_questions: ReevalOpt = D["reeval_questions"],
    test_questions: TestOpt = D["test_questions"],
) -> None:
    """How many questions each stage scores."""


def search_options(
    objective: ObjectiveOpt = D["objective"],
    latency_weight: LatencyWeightOpt = D["latency_weight"],
    latency_limit: LatencyLimitOpt = D["latency_limit"],
    iterations: IterationsOpt = D["iterations"],
    patience: PatienceOpt = D["patience"],
    time_limit: TimeOpt = D["time_limit"],
    node_calls: NodeCallsOpt = D["node_calls"],
    race_first: RaceOpt = D["race_first"],
    pretest_questions: PretestOpt = D["pretest_questions"],
    reeval_top_k: TopKOpt = D["reeval_top_k"],
    repair: RepairOpt = D["repair"],
    agent_model: AgentModelOpt = D["agent_model"],
    agent_base_url: AgentUrlOpt = D["agent_base_url"],
    agent_api_key_env: AgentKeyOpt = D["agent_api_key_env"],
) -> None:
    """What the search optimizes, when it stops, how it selects, which agent steers it."""


def run_options(
    sample_once: SampleOnceOpt = D["sample_once"],
    fresh: FreshOpt = D["fresh"],
) -> None:
    """How a live search runs: samples drawn up front, resumed or started over."""


def with_options(*groups: Callable[..., None]) -> Callable[[Command], Command]:
    """Append the parameters of `groups` to the command's signature, as Typer reads it; the
    command takes them as `**options`. A name declared twice fails at import (`inspect`)."""

    def decorate(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        for group in groups:
            params += inspect.signature(group, eval_str=True).parameters.values()
        signature = own.replace(parameters=params)
        # Functions carry `__signature__` for `inspect`; typeshed does not declare it.
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": signature.return_annotation
        }
        return command

    return decorate
