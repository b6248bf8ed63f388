"""Reports of searches: one run as markdown, several as a comparison table and a PNG curve."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

from tts_opt.graph import to_text
from tts_opt.optimizer.agents.base import ReplyCounts
from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.objective import Measurement
from tts_opt.optimizer.runner import SearchResult


def best_so_far(records: Sequence[EvaluationRecord]) -> list[float]:
    """Best search utility after each evaluation (pre-tests and raced-out graphs count as spent,
    not as found)."""
    curve: list[float] = []
    best = float("-inf")
    for r in records:
        if r.competes:
            best = max(best, r.utility)
        curve.append(best if best > float("-inf") else float("nan"))
    return curve


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _ci(record: EvaluationRecord) -> str:
    m = record.measurement
    return f"{_pct(m.accuracy)} [{_pct(m.ci_low)}, {_pct(m.ci_high)}] (n={m.n})"


def replies(counts: ReplyCounts) -> str:
    """How the chat-model agent's decisions came about, in words."""
    c = counts
    return (
        f"{c.decisions} decisions: {c.valid} valid as returned, {c.retried} valid on a retry, "
        f"{c.repaired} cut to the budget, {c.fallback} from the fallback agent "
        f"({c.invalid_replies} invalid replies)"
    )


def run_report(result: SearchResult) -> str:
    s, sel = result.settings, result.selection
    lines = [
        f"# {result.artifact.task}@{result.artifact.budget.value:g}: {s.method}",
        "",
        f"- objective: {s.objective.describe()}",
        f"- seed {s.seed}, agent {s.agent}, repair {s.repair}",
        *([f"- agent replies: {replies(c)}"] if (c := result.agent_replies).decisions else []),
        f"- evaluations {len(result.records)} ({sum(r.raced_out for r in result.records)} "
        f"raced out), node calls {result.node_calls}, tokens {result.tokens}, "
        f"search time {result.elapsed_s:.1f} s, archive `{result.archive}`",
        f"- search best: {_ci(sel.search_best)} at evaluation {sel.search_best.index}",
        f"- validation (re-evaluated): {_ci(sel.winner)}",
        f"- test: {_ci(sel.test)}, p50 latency {_latency(sel.test.measurement)}",
        *(
            [f"- test, for comparison only: `{o.candidate.summary()}` {_ci(o)}"]
            if (o := sel.other_test) is not None
            else []
        ),
        "",
        "## Selected graph",
        "",
        "```",
        to_text(result.artifact).rstrip(),
        "```",
        "",
        "## Finalists (re-evaluated on more validation questions)",
        "",
        "| graph | validation | utility |",
        "|---|---|---|",
        *(
            f"| `{r.candidate.summary()}`{' (self-consistency baseline)' * (r is sel.consistency)}"
            f" | {_ci(r)} | {r.utility:.4g} |"
            for r in sel.finalists
        ),
        *(
            [f"| `{b.candidate.summary()}` (single-model baseline) | {_ci(b)} | {b.utility:.4g} |"]
            if (b := sel.baseline) is not None and b not in sel.finalists
            else []
        ),
        "",
        "## Search history",
        "",
        "| # | stage | accuracy | questions | node calls | p50 latency (s) | cost | nodes | "
        "edges | best so far |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, best in zip(result.records, best_so_far(result.records), strict=True):
        m = r.measurement
        raced = " (raced out)" if r.raced_out else ""
        lines.append(
            f"| {r.index} | {r.stage} | {_pct(m.accuracy)} | {m.n}{raced} | {r.node_calls} | "
            f"{_latency(m, unit=False)} | {r.cost:.4g} | {len(r.candidate.nodes)} | "
            f"{len(r.candidate.edges)} | {best:.4g} |"
        )
    return "\n".join(lines) + "\n"


def compare_table(results: Sequence[SearchResult]) -> str:
    """Per method, means over seeds: search best, re-evaluated validation, test with CI."""
    by_method: dict[str, list[SearchResult]] = defaultdict(list)
    for r in results:
        by_method[r.settings.method].append(r)
    lines = [
        "| method | seeds | evaluations | node calls | search best | validation | test (mean) | "
        "test CIs | search time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in by_method.items():
        sel = [r.selection for r in runs]
        cis = "; ".join(_ci(s.test) for s in sel)
        lines.append(
            f"| {method} | {len(runs)} | {fmean(len(r.records) for r in runs):.1f} | "
            f"{fmean(r.node_calls for r in runs):,.0f} | "
            f"{_pct(fmean(s.search_best.utility for s in sel))} | "
            f"{_pct(fmean(s.winner.measurement.accuracy for s in sel))} | "
            f"{_pct(fmean(s.test.measurement.accuracy for s in sel))} | {cis} | "
            f"{fmean(r.elapsed_s for r in runs):.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(results: Sequence[SearchResult], path: Path) -> Path:
    """Best utility found vs evaluations spent: mean over seeds, band from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_method: dict[str, list[list[float]]] = defaultdict(list)
    for r in results:
        by_method[r.settings.method].append(best_so_far(r.records))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, curves in by_method.items():
        length = max(len(c) for c in curves)
        padded = np.array([c + [c[-1]] * (length - len(c)) for c in curves], dtype=float)
        x = np.arange(1, length + 1)
        found = ~np.isnan(padded).all(axis=0)  # pre-tests spend evaluations before a best exists
        x, padded = x[found], padded[:, found]
        ax.plot(x, np.nanmean(padded, axis=0), label=method)
        ax.fill_between(x, np.nanmin(padded, axis=0), np.nanmax(padded, axis=0), alpha=0.15)
    ax.set_xlabel("graph evaluations")
    ax.set_ylabel("best validation utility so far")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _latency(m: Measurement, unit: bool = True) -> str:
    """p50 latency, "replayed" when it comes from replayed nodes' recorded times; "-" where it is
    unknown (replayed nodes whose times were not recorded)."""
    if m.latency_p50_s is None:
        return "-"
    return (
        f"{m.latency_p50_s:.3g}{' s' if unit else ''}{' (replayed)' if m.latency_replayed else ''}"
    )
