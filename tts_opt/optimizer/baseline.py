"""The single-model baselines every search must face, and the paired test that decides.

A user's alternative to a graph is one call of their best model, or its simplest scaling: the
same model sampled several times and fused (self-consistency style). So the final of every
search holds, next to its finalists, each pool model as one call that fits the budget and the
widest same-model graph of the strongest model that fits, scored on the same re-evaluation
questions with the same sample seeds: verdicts are paired, and a graph ships only if it beats
the best single call there by a paired test at level `alpha` (McNemar's exact test; a paired
bootstrap of the utility under the accuracy-latency objective). Otherwise the single model
ships. The test split decides nothing; it reports both on the same questions.
"""

from __future__ import annotations

import msgspec
import numpy as np

from tts_opt.evaluation.stats import (
    mcnemar_exact,
    paired_bootstrap_p,
    paired_difference_interval,
)
from tts_opt.graph import Node, PairedComparison
from tts_opt.graph.render import comparison_detail
from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.budget import by_strength, parallel_graph
from tts_opt.optimizer.objective import Measurement, Objective
from tts_opt.optimizer.space import Candidate, SearchSpace

SINGLE_NODE = "a"


def single_model_candidates(space: SearchSpace) -> list[Candidate]:
    """Each pool model as one assistant call, where that fits the budget."""
    singles = [
        Candidate(nodes=(Node(SINGLE_NODE, spec.name, "assistant"),), edges=(), sink=SINGLE_NODE)
        for spec in space.pool
    ]
    return [c for c in singles if space.within_budget(c)]


def self_consistency_candidate(space: SearchSpace) -> Candidate | None:
    """The strongest model that affords two or more of its own samples, as many of them as fit,
    fused by itself; None without fusers or where no model affords two samples and a fuser."""
    if not space.allow_fuser:
        return None
    for model in reversed(by_strength(space, [m.name for m in space.pool])):
        for width in range(space.max_nodes - 1, 1, -1):
            candidate = parallel_graph(space, [model] * (width + 1))
            if space.within_budget(candidate):
                return candidate
    return None


def is_single_model(candidate: Candidate) -> bool:
    return len(candidate.nodes) == 1


def describe_single(candidate: Candidate) -> str:
    return f"single {candidate.nodes[0].model}"


def paired(
    graph: EvaluationRecord, baseline: EvaluationRecord, split: str, objective: Objective
) -> PairedComparison:
    """`graph` against `baseline` on the same questions, from their per-question verdicts (and
    latencies, for an objective that weighs them)."""
    a, b = graph.measurement.outcomes, baseline.measurement.outcomes
    if len(a) != len(b) or not a:
        raise ValueError(
            f"a paired comparison needs both graphs' verdicts on the same questions "
            f"({len(a)} and {len(b)} given)"
        )
    wins = sum(x and not y for x, y in zip(a, b, strict=True))
    losses = sum(y and not x for x, y in zip(a, b, strict=True))
    low, high = paired_difference_interval(wins, losses, len(a))
    utility = (
        _utility_test(graph.measurement, baseline.measurement, objective)
        if objective.uses_latency
        else None
    )
    return PairedComparison(
        baseline=describe_single(baseline.candidate),
        split=split,
        n=len(a),
        accuracy=sum(a) / len(a),
        baseline_accuracy=sum(b) / len(b),
        difference=(wins - losses) / len(a),
        ci_low=low,
        ci_high=high,
        p_value=mcnemar_exact(wins, losses),
        utility_difference=None if utility is None else utility[0],
        utility_p_value=None if utility is None else utility[1],
    )


def _utility_test(
    graph: Measurement, baseline: Measurement, objective: Objective
) -> tuple[float, float] | None:
    """The utility difference and its paired bootstrap p-value; None without every question's
    latency for both."""
    n = graph.n
    if len(graph.latencies_s) != n or len(baseline.latencies_s) != n:
        return None
    columns = [
        (np.array(m.outcomes, dtype=float), np.array(m.latencies_s)) for m in (graph, baseline)
    ]

    def difference(indices: np.ndarray) -> float:
        first, second = (
            objective.utility(
                msgspec.structs.replace(
                    m,
                    accuracy=float(correct[indices].mean()),
                    latency_p50_s=float(np.percentile(latency[indices], 50)),
                )
            )
            for m, (correct, latency) in zip((graph, baseline), columns, strict=True)
        )
        return first - second

    return difference(np.arange(n)), paired_bootstrap_p(difference, n)


def graph_wins(
    graph: EvaluationRecord,
    baseline: EvaluationRecord,
    comparison: PairedComparison,
    objective: Objective,
    alpha: float,
) -> bool:
    """Whether the graph, not the single model, ships: more accurate with McNemar's p below
    `alpha`; under accuracy-latency, a higher utility with the bootstrap's p below `alpha`
    (where some latency is unknown: the higher utility and not significantly less accurate)."""
    if not objective.uses_latency:
        return comparison.difference > 0 and comparison.p_value < alpha
    if comparison.utility_p_value is not None and comparison.utility_difference is not None:
        return comparison.utility_difference > 0 and comparison.utility_p_value < alpha
    worse = comparison.difference < 0 and comparison.p_value < alpha
    return graph.utility > baseline.utility and not worse


def verdict_summary(shipped_graph: bool, comparison: PairedComparison, alpha: float) -> str:
    c, detail = comparison, comparison_detail(comparison)
    if shipped_graph:
        return f"the graph beat the {c.baseline} at level {alpha:g}: {detail}"
    return f"no graph beat the {c.baseline} at this budget (level {alpha:g}): best graph {detail}"
