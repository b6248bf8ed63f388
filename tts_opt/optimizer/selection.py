"""Pick the graph to ship: the best by validation, confirmed on more questions, checked against
the single model, then tested.

The search's best score is biased upward (the maximum of noisy estimates), so the top `top_k`
distinct graphs by search utility are re-evaluated on a larger validation set, next to every
single-model call that fits the budget and the self-consistency graph of the strongest model
(`tts_opt.optimizer.baseline`; a finalist too, when the search did not rank it there), on the
same questions.
The best finalist ships only if it beats the best single model there by a paired test; else the
single model ships. Only then is the test split used, to report the best graph and the single model
on the same test questions, whichever of them shipped.
"""

from __future__ import annotations

from functools import partial

import msgspec

from tts_opt.graph import PairedComparison
from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.baseline import (
    graph_wins,
    is_single_model,
    paired,
    self_consistency_candidate,
    single_model_candidates,
)
from tts_opt.optimizer.candidate_set import canonical_key
from tts_opt.optimizer.context import SearchContext


class Selection(msgspec.Struct, frozen=True):
    search_best: EvaluationRecord
    finalists: tuple[EvaluationRecord, ...]
    winner: EvaluationRecord
    test: EvaluationRecord
    # The best single-model call on the re-evaluation questions, and how the best finalist
    # compared with it there; None when no single model fits the budget.
    baseline: EvaluationRecord | None = None
    validation: PairedComparison | None = None
    # The side of that comparison that did not ship, tested on the same questions as `test`
    # (the single model when a graph ships, else the best graph), and the best graph against
    # the single model there: reported, never used to choose.
    other_test: EvaluationRecord | None = None
    test_comparison: PairedComparison | None = None
    # The self-consistency graph among the finalists, when one fits the budget.
    consistency: EvaluationRecord | None = None

    @property
    def graph_shipped(self) -> bool:
        return self.baseline is None or self.winner is not self.baseline


def ranked(records: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Distinct graphs by search utility, best first (earlier first on ties)."""
    pool = [r for r in records if r.competes] or records
    seen: set[str] = set()
    out = []
    for record in sorted(pool, key=lambda r: (-r.utility, r.index)):
        if record.candidate.key() not in seen:
            seen.add(record.candidate.key())
            out.append(record)
    return out


async def select(ctx: SearchContext, top_k: int, alpha: float) -> Selection:
    order = ranked(ctx.records)
    if not order:
        raise RuntimeError("the search evaluated no graph: raise --iterations")
    finalists = [await ctx.evaluate_final(r.candidate, "reeval") for r in order[:top_k]]
    consistency = None
    if (same_model := self_consistency_candidate(ctx.space)) is not None:
        key = canonical_key(same_model)
        consistency = next((f for f in finalists if canonical_key(f.candidate) == key), None)
        if consistency is None:
            consistency = await ctx.evaluate_final(same_model, "reeval")
            finalists.append(consistency)
    singles = [await ctx.evaluate_final(c, "reeval") for c in single_model_candidates(ctx.space)]
    singles += [f for f in finalists if is_single_model(f.candidate)]
    graphs = [f for f in finalists if not is_single_model(f.candidate)]
    done = partial(
        Selection, search_best=order[0], finalists=tuple(finalists), consistency=consistency
    )
    if not singles or not graphs:  # nothing to compare: the best of what was scored ships
        winner = max(finalists + singles, key=lambda r: r.utility)  # finalists first on ties
        test = await ctx.evaluate_final(winner.candidate, "test")
        baseline = winner if singles else None
        return done(winner=winner, test=test, baseline=baseline)
    baseline = max(singles, key=lambda r: r.utility)
    best = max(graphs, key=lambda r: r.utility)  # first (best in search) on ties
    validation = paired(best, baseline, "val", ctx.objective)
    winner = best if graph_wins(best, baseline, validation, ctx.objective, alpha) else baseline
    test = await ctx.evaluate_final(winner.candidate, "test")
    if not test.measurement.outcomes:  # no test questions (a search that reports none)
        return done(winner=winner, test=test, baseline=baseline, validation=validation)
    other = baseline if winner is best else best
    other_test = await ctx.evaluate_final(other.candidate, "test")
    graph_test, single_test = (test, other_test) if winner is best else (other_test, test)
    return done(
        winner=winner,
        test=test,
        baseline=baseline,
        validation=validation,
        other_test=other_test,
        test_comparison=paired(graph_test, single_test, "test", ctx.objective),
    )
