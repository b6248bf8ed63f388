"""The single-model baseline every search must beat, and the paired test that decides it.

A user's alternative to a graph is one call of their best model. So the final of every search
holds, next to its finalists, each pool model as one call that fits the budget, scored on the
same re-evaluation questions with the same sample seeds: verdicts are paired, and the graph
ships only if it beats the best single model there by McNemar's exact test at level `alpha`.
Otherwise the single model ships. The test split decides nothing; it reports both on the same
questions.
"""

from __future__ import annotations

from tts_opt.evaluation.stats import mcnemar_exact, paired_difference_interval
from tts_opt.graph import Node, PairedComparison
from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.objective import Objective
from tts_opt.optimizer.space import Candidate, SearchSpace

SINGLE_NODE = "a"


def single_model_candidates(space: SearchSpace) -> list[Candidate]:
    """Each pool model as one assistant call, where that fits the budget."""
    singles = [
        Candidate(nodes=(Node(SINGLE_NODE, spec.name, "assistant"),), edges=(), sink=SINGLE_NODE)
        for spec in space.pool
    ]
    return [c for c in singles if space.within_budget(c)]


def is_single_model(candidate: Candidate) -> bool:
    return len(candidate.nodes) == 1


def describe_single(candidate: Candidate) -> str:
    return f"single {candidate.nodes[0].model}"


def paired(graph: EvaluationRecord, baseline: EvaluationRecord, split: str) -> PairedComparison:
    """`graph` against `baseline` on the same questions, from their per-question verdicts."""
    a, b = graph.measurement.outcomes, baseline.measurement.outcomes
    if len(a) != len(b) or not a:
        raise ValueError(
            f"a paired comparison needs both graphs' verdicts on the same questions "
            f"({len(a)} and {len(b)} given)"
        )
    wins = sum(x and not y for x, y in zip(a, b, strict=True))
    losses = sum(y and not x for x, y in zip(a, b, strict=True))
    low, high = paired_difference_interval(wins, losses, len(a))
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
    )


def graph_wins(
    graph: EvaluationRecord,
    baseline: EvaluationRecord,
    comparison: PairedComparison,
    objective: Objective,
    alpha: float,
) -> bool:
    """Whether the graph, not the single model, ships. Under the accuracy objective the graph
    must be more accurate with McNemar's p below `alpha`; under accuracy-latency it must have
    the higher utility and not be significantly less accurate."""
    if not objective.uses_latency:
        return comparison.difference > 0 and comparison.p_value < alpha
    worse = comparison.difference < 0 and comparison.p_value < alpha
    return graph.utility > baseline.utility and not worse


def verdict_summary(shipped_graph: bool, comparison: PairedComparison, alpha: float) -> str:
    c = comparison
    detail = (
        f"{c.accuracy:.1%} vs {c.baseline_accuracy:.1%} for the {c.baseline} on {c.n} {c.split} "
        f"questions, difference {c.difference:+.1%} (95% CI {c.ci_low:+.1%} to {c.ci_high:+.1%}), "
        f"McNemar p = {c.p_value:.3g}"
    )
    if shipped_graph:
        return f"the graph beat the {c.baseline} at level {alpha:g}: {detail}"
    return f"no graph beat the {c.baseline} at this budget (level {alpha:g}): best graph {detail}"
