"""One optimization run end to end: search, select, and the artifact the server loads.

`optimize` opens (or resumes) the archive, runs the method through a `SearchContext`, selects the
winner (re-evaluated, then tested) and returns it as a validated artifact with its measured
accuracy, latency and provenance. Nothing here knows about engines: the scorer does.
"""

from __future__ import annotations

import contextlib
import hashlib
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np

from tts_opt import __version__
from tts_opt.graph import (
    Accuracy,
    BaselineComparison,
    GraphArtifact,
    Latency,
    Provenance,
    graph_flops,
    validate,
)
from tts_opt.optimizer.agents.base import Agent, ReplyCounts
from tts_opt.optimizer.agents.rule_based import RuleBasedAgent
from tts_opt.optimizer.archive import Archive, EvaluationRecord, RunHeader
from tts_opt.optimizer.baseline import verdict_summary
from tts_opt.optimizer.budget import RepairRule
from tts_opt.optimizer.context import Limits, ProgressFn, SearchContext, SearchStopped
from tts_opt.optimizer.methods import build_method
from tts_opt.optimizer.objective import GraphScorer, Objective
from tts_opt.optimizer.sample_once import SharedSampler, source_counts
from tts_opt.optimizer.selection import Selection, select
from tts_opt.optimizer.space import SearchSpace
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

# Bumped when the same settings would search differently, so that an archive of the old
# behaviour is refused on resume instead of replayed under other rules (2: questions in a seeded
# order, racing by a projected margin).
SEARCH_VERSION = 2


class OptimizeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything that defines a search. `limits`, `reeval_*`, `test_questions` and
    `baseline_alpha` may change on resume (e.g. to extend a search); the rest is
    fingerprinted."""

    method: str = "agent-reinforce"
    objective: Objective = Objective()
    seed: int = 0
    limits: Limits = Limits()
    val_questions: int = 20
    # Questions a search graph is first scored on before racing for more; 0 scores every graph
    # on all `val_questions` (see `SearchContext`).
    race_first: int = 5
    pretest_questions: int = 5
    reeval_questions: int = 60
    reeval_top_k: int = 3
    test_questions: int = 100
    repair: RepairRule = "value"
    # Level of the paired test a graph must pass against the best single model to ship.
    baseline_alpha: float = 0.05
    # Draw the source samples graphs share before the search, in full batches (a scorer that
    # can: `tts_opt.optimizer.sample_once`); the same draws either way, so not fingerprinted.
    sample_once: bool = True
    agent: str = "rule-based"  # set by `optimize` from the method's agent

    def fingerprint(self, space: SearchSpace, task: Task) -> str:
        fixed = msgspec.structs.replace(
            self,
            limits=Limits(),
            reeval_questions=0,
            reeval_top_k=0,
            test_questions=0,
            baseline_alpha=0.0,
            sample_once=True,
        )
        data = msgspec.json.encode([SEARCH_VERSION, fixed, space, task.name, task.data_sha256])
        return hashlib.sha256(data).hexdigest()


class SearchResult(msgspec.Struct, frozen=True):
    artifact: GraphArtifact
    settings: OptimizeSettings
    selection: Selection
    records: tuple[EvaluationRecord, ...]
    tokens: int
    node_calls: int
    elapsed_s: float
    archive: str
    agent_replies: ReplyCounts = ReplyCounts()  # how the chat-model agent's decisions came about


def _accuracy(split: str, record: EvaluationRecord) -> Accuracy:
    m = record.measurement
    return Accuracy(split=split, value=m.accuracy, n=m.n, ci_low=m.ci_low, ci_high=m.ci_high)


def _baseline_comparison(selection: Selection, alpha: float) -> BaselineComparison | None:
    if selection.baseline is None:
        return None
    if selection.validation is None:
        summary = "only single-model calls reached the final: the best of them ships"
        return BaselineComparison(verdict="single", summary=summary, alpha=alpha)
    shipped = selection.graph_shipped
    return BaselineComparison(
        verdict="graph" if shipped else "single",
        summary=verdict_summary(shipped, selection.validation, alpha),
        alpha=alpha,
        validation=selection.validation,
        test=selection.test_comparison,
    )


def search_order(pool: Sequence[Question], seed: int) -> tuple[Question, ...]:
    """The validation pool in the order of the search's seed.

    The pre-tests, the racing steps and the search evaluations take prefixes of this order, so
    seeds differ in their questions, not only in their proposals: with one fixed order every seed
    would share the same few first questions, and one unlucky prefix (the best model wrong on
    all of them) would decide every seed alike. The pool itself is fixed (the split's first
    questions), so a re-evaluation on all of it (the default: it is the larger stage) scores
    every seed's finalists on the same questions; the methods of one seed share its order.
    """
    rng = np.random.default_rng([seed, zlib.crc32(b"question order")])
    return tuple(pool[i] for i in rng.permutation(len(pool)))


def final_artifact(
    space: SearchSpace,
    task: Task,
    settings: OptimizeSettings,
    selection: Selection,
    evaluations: int,
    description: str,
) -> GraphArtifact:
    winner, test = selection.winner, selection.test
    p50, p95 = test.measurement.latency_p50_s, test.measurement.latency_p95_s
    draft = space.artifact(winner.candidate)
    artifact = space.artifact(
        winner.candidate,
        accuracy=(_accuracy("val", winner), _accuracy("test", test)),
        latency=Latency(
            p50_s=p50, p95_s=p95, n=test.measurement.n, replayed=test.measurement.latency_replayed
        )
        if p50 is not None and p95 is not None
        else None,  # unknown: replayed nodes whose times were not recorded
        flops=graph_flops(draft),
        baseline=_baseline_comparison(selection, settings.baseline_alpha),
        provenance=Provenance(
            method=settings.method,
            seed=settings.seed,
            iterations=evaluations,
            agent_model=settings.agent,
            dataset_hashes={task.name: task.data_sha256} if task.data_sha256 else {},
            tool_version=__version__,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
        description=description,
    )
    validate(artifact)
    return artifact


async def optimize(
    task: Task,
    space: SearchSpace,
    settings: OptimizeSettings,
    scorer: GraphScorer,
    archive_path: Path,
    *,
    agent: Agent | None = None,
    fresh: bool = False,
    on_progress: ProgressFn | None = None,
    description: str = "",
) -> SearchResult:
    """Search, select and build the artifact; resumes from `archive_path` unless `fresh`.

    `agent` (default: the rule-based one) steers the Agent-REINFORCE variants; TextGrad needs
    an LLM agent, whose chat model it uses without the insights.
    """
    method = build_method(settings.method, agent or RuleBasedAgent())
    settings = msgspec.structs.replace(settings, agent=method.agent_name)
    space = msgspec.structs.replace(space, allow_fuser=space.allow_fuser and method.allow_fuser)
    header = RunHeader(
        fingerprint=settings.fingerprint(space, task),
        settings=msgspec.Raw(msgspec.json.encode(settings)),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    archive = Archive.open(archive_path, header, fresh=fresh)
    pool = task.split("val", limit=max(settings.val_questions, settings.reeval_questions))
    val = search_order(pool, settings.seed)
    ctx = SearchContext(
        space=space,
        objective=settings.objective,
        repair_rule=settings.repair,
        seed=settings.seed,
        limits=settings.limits,
        scorer=scorer,
        archive=archive,
        questions={
            "pretest": val[: settings.pretest_questions],
            "init": val[: settings.val_questions],
            "search": val[: settings.val_questions],
            "reeval": val[: settings.reeval_questions],
            "test": task.split("test", limit=settings.test_questions),
        },
        race_first=settings.race_first or None,
        on_progress=on_progress,
    )
    if settings.sample_once and isinstance(scorer, SharedSampler) and not ctx.search_archived:
        await scorer.presample(
            source_counts(space), ctx.questions["search"], space.templates, space.decoding
        )
    with contextlib.suppress(SearchStopped):
        await method.run(ctx)
    selection = await select(ctx, settings.reeval_top_k, settings.baseline_alpha)
    artifact = final_artifact(space, task, settings, selection, len(ctx.records), description)
    return SearchResult(
        artifact=artifact,
        settings=settings,
        selection=selection,
        records=tuple(ctx.records),
        tokens=ctx.tokens,
        node_calls=ctx.node_calls,
        elapsed_s=ctx.elapsed(),
        archive=str(archive_path),
        agent_replies=ctx.agent_replies,
    )
