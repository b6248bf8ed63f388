"""Pick the graph to ship: the best by validation, confirmed on more questions, then tested.

The search's best score is biased upward (the maximum of noisy estimates), so the top `top_k`
distinct graphs by search utility are re-evaluated on a larger validation set and the best of
those wins; only the winner is run on the test split, once, for the reported accuracy and CI.
"""

from __future__ import annotations

import msgspec

from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.context import BEST_STAGES, SearchContext


class Selection(msgspec.Struct, frozen=True):
    search_best: EvaluationRecord
    finalists: tuple[EvaluationRecord, ...]
    winner: EvaluationRecord
    test: EvaluationRecord


def ranked(records: list[EvaluationRecord]) -> list[EvaluationRecord]:
    """Distinct graphs by search utility, best first (earlier first on ties)."""
    pool = [r for r in records if r.stage in BEST_STAGES] or records
    seen: set[str] = set()
    out = []
    for record in sorted(pool, key=lambda r: (-r.utility, r.index)):
        if record.candidate.key() not in seen:
            seen.add(record.candidate.key())
            out.append(record)
    return out


async def select(ctx: SearchContext, top_k: int) -> Selection:
    order = ranked(ctx.records)
    if not order:
        raise RuntimeError("the search evaluated no graph: raise --iterations")
    finalists = [await ctx.evaluate_final(r.candidate, "reeval") for r in order[:top_k]]
    winner = max(finalists, key=lambda r: r.utility)  # first (best in search) on ties
    test = await ctx.evaluate_final(winner.candidate, "test")
    return Selection(order[0], tuple(finalists), winner, test)
