"""How search methods do on a replay table, over many seeds: markdown and a PNG.

The table is the ground truth: a graph's true accuracy is its mean verdict over every question
the table holds (validation and test), the best row is the optimum, and the best one-node row is
the single model a user would otherwise call. Per method (with its chat-model agent, if one
steered it) the report gives the median and interquartile range over seeds of the returned
graph's true accuracy and regret (optimum minus it), the evaluations and node calls (a node on a
question; the final's re-evaluations included) spent, how often the returned graph is truly worse
than the single model, how many evaluations and node calls its best graph so far needs to come
within 2 points of the optimum (median over seeds; against random search's), and how the agent's
replies came about. The plot follows the search: the
true accuracy of its best graph so far against evaluations and node calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np

from tts_opt.graph.io import write_atomic
from tts_opt.optimizer.agents.base import ReplyCounts
from tts_opt.optimizer.candidate_set import canonical_key
from tts_opt.optimizer.report import replies
from tts_opt.optimizer.runner import SearchResult
from tts_opt.optimizer.space import Candidate
from tts_opt.optimizer.table import GraphRow


class Step(msgspec.Struct, frozen=True):
    """After a search evaluation: what was spent so far and the best graph found (canonical
    key; "" before the first graph that counts, i.e. during pre-tests)."""

    evaluations: int
    node_calls: int
    incumbent: str


class SearchOutcome(msgspec.Struct, frozen=True):
    method: str
    seed: int
    returned: str  # canonical key of the shipped graph
    steps: tuple[Step, ...]
    node_calls: int  # everything the search spent, its final included
    agent_replies: ReplyCounts = ReplyCounts()


class Quartiles(msgspec.Struct, frozen=True):
    q25: float
    median: float
    q75: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Quartiles:
        q25, median, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
        return cls(float(q25), float(median), float(q75))


class MethodSummary(msgspec.Struct, frozen=True):
    method: str
    seeds: int
    accuracy: Quartiles
    regret: Quartiles
    evaluations: Quartiles
    search_node_calls: Quartiles  # before the final
    node_calls: Quartiles  # the final included
    worse_than_single: float  # share of seeds whose returned graph is below the single model
    # The fewest evaluations (node calls) after which the median regret of the best graph so
    # far is at most CLOSE_REGRET; None: never within the search.
    evaluations_to_close: int | None = None
    node_calls_to_close: int | None = None
    agent_replies: ReplyCounts = ReplyCounts()  # summed over seeds


def method_label(result: SearchResult) -> str:
    """The method, and the chat model that steered it if any: searches of one method with the
    rule-based and with an LLM agent are told apart."""
    method, agent = result.settings.method, result.settings.agent
    return f"{method} [{agent}]" if agent.startswith("llm:") else method


def outcome_of(result: SearchResult) -> SearchOutcome:
    """The search's incumbent (as `SearchContext.best` picks it) after each evaluation."""
    steps, calls, best = [], 0, None
    for i, record in enumerate(result.records, start=1):
        calls += record.node_calls
        if record.competes and (best is None or record.utility > best.utility):
            best = record
        steps.append(Step(i, calls, "" if best is None else canonical_key(best.candidate)))
    a = result.artifact
    returned = canonical_key(Candidate(nodes=a.nodes, edges=a.edges, sink=a.sink))
    return SearchOutcome(
        method_label(result),
        result.settings.seed,
        returned,
        tuple(steps),
        result.node_calls,
        result.agent_replies,
    )


# "Close to the optimum": within 2 accuracy points of the table's best graph.
CLOSE_REGRET = 0.02
_TOLERANCE = 1e-9  # a regret equal to the bound, up to float rounding, is within it


def truth(rows: Sequence[GraphRow]) -> dict[str, float]:
    """True accuracy by canonical key."""
    return {canonical_key(row.candidate): row.accuracy for row in rows}


def best_single(rows: Sequence[GraphRow]) -> GraphRow | None:
    singles = [r for r in rows if len(r.candidate.nodes) == 1]
    return max(singles, key=lambda r: r.accuracy) if singles else None


def summarize(rows: Sequence[GraphRow], outcomes: Sequence[SearchOutcome]) -> list[MethodSummary]:
    """Per method (in first-seen order), over its seeds."""
    acc = truth(rows)
    optimum = max(acc.values())
    single = best_single(rows)
    by_method: dict[str, list[SearchOutcome]] = defaultdict(list)
    for o in outcomes:
        by_method[o.method].append(o)
    summaries = []
    for method, runs in by_method.items():
        found = [acc[o.returned] for o in runs]
        worse = sum(single is not None and a < single.accuracy for a in found)
        summaries.append(
            MethodSummary(
                method=method,
                seeds=len(runs),
                accuracy=Quartiles.of(found),
                regret=Quartiles.of([optimum - a for a in found]),
                evaluations=Quartiles.of([o.steps[-1].evaluations if o.steps else 0 for o in runs]),
                search_node_calls=Quartiles.of(
                    [o.steps[-1].node_calls if o.steps else 0 for o in runs]
                ),
                node_calls=Quartiles.of([o.node_calls for o in runs]),
                worse_than_single=worse / len(runs),
                evaluations_to_close=spent_to_regret(runs, acc, CLOSE_REGRET),
                node_calls_to_close=spent_to_regret(runs, acc, CLOSE_REGRET, by_calls=True),
                agent_replies=sum((o.agent_replies for o in runs), ReplyCounts()),
            )
        )
    return summaries


def _close(evaluations: int | None) -> str:
    return "never" if evaluations is None else str(evaluations)


def _against_random(to_close: dict[str, int | None], what: str, unit: str) -> list[str]:
    """Sample efficiency: each method's `unit` (evaluations or node calls) until `what` has a
    median regret of at most CLOSE_REGRET, as a share of random search's, when random search
    is in the report."""
    if "random" not in to_close:
        return []
    base = to_close["random"]
    lines = [
        "",
        f"{unit.capitalize()} until the median regret of {what} is at most "
        f"{CLOSE_REGRET * 100:g} points, against random search ({_close(base)}):",
        "",
    ]
    for method, spent in to_close.items():
        if method == "random":
            continue
        if spent is None or base is None:
            share = "no ratio (one of them never gets there)"
        else:
            share = f"{spent / base:.2f}x random's"
        lines.append(f"- {method}: {_close(spent)}, {share}")
    return lines


class LimitSummary(msgspec.Struct, frozen=True):
    """A method's searches stopped after at most `limit` evaluations, the final included: the
    graph each returns is what a user would get for that search budget."""

    method: str
    limit: int
    regret: Quartiles
    node_calls: Quartiles
    worse_than_single: float


def summarize_limits(
    rows: Sequence[GraphRow], limited: Mapping[int, Sequence[SearchOutcome]]
) -> list[LimitSummary]:
    """Per evaluation limit (ascending) and method: the returned graphs' regret."""
    out = []
    for limit in sorted(limited):
        out += [
            LimitSummary(s.method, limit, s.regret, s.node_calls, s.worse_than_single)
            for s in summarize(rows, limited[limit])
        ]
    return out


def returned_close_at(limits: Sequence[LimitSummary]) -> dict[str, int | None]:
    """Per method, the smallest limit from which on the median regret of the returned graph
    stays at most CLOSE_REGRET; None if it is not there at the largest limit."""
    by_method: dict[str, list[LimitSummary]] = defaultdict(list)
    for s in limits:
        by_method[s.method].append(s)
    out: dict[str, int | None] = {}
    for method, runs in by_method.items():
        out[method] = None
        for s in reversed(runs):
            if s.regret.median > CLOSE_REGRET + _TOLERANCE:
                break
            out[method] = s.limit
    return out


def _limits_markdown(limits: Sequence[LimitSummary]) -> list[str]:
    if not limits:
        return []
    caps = sorted({s.limit for s in limits})
    cell = {(s.method, s.limit): s for s in limits}
    methods = list(dict.fromkeys(s.method for s in limits))
    lines = [
        "",
        "Returned graph when each search may spend at most N evaluations (its final with the "
        "single-model baselines included): median regret in points, [interquartile range], "
        "node calls (median), share worse than the single model.",
        "",
        "| method | " + " | ".join(f"N = {c}" for c in caps) + " |",
        "|---|" + "---|" * len(caps),
    ]
    for m in methods:
        cells = []
        for c in caps:
            s = cell[(m, c)]
            r = s.regret
            cells.append(
                f"{r.median * 100:.1f} [{r.q25 * 100:.1f}, {r.q75 * 100:.1f}], "
                f"{s.node_calls.median:.0f}, {s.worse_than_single:.0%}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _q(q: Quartiles, pct: bool = True) -> str:
    fmt = "{:.1%}" if pct else "{:.0f}"
    return f"{fmt.format(q.median)} [{fmt.format(q.q25)}, {fmt.format(q.q75)}]"


def replay_markdown(
    source: str,
    rows: Sequence[GraphRow],
    summaries: Sequence[MethodSummary],
    plot: Path,
    limits: Sequence[LimitSummary] = (),
) -> str:
    best = max(rows, key=lambda r: r.accuracy)
    single = best_single(rows)
    n = len(best.questions)
    lines = [
        f"# Replay of `{source}`",
        "",
        f"- {len(rows)} graphs, each scored on the same {n} questions; true accuracy = mean "
        "verdict over all of them",
        f"- best graph: {best.accuracy:.1%} `{best.candidate.summary()}`",
        "- best single model: "
        + (f"{single.accuracy:.1%} `{single.candidate.summary()}`" if single else "none fits"),
        "",
        "Median [interquartile range] over seeds; regret = best graph - returned graph.",
        "",
        "| method | seeds | true accuracy | regret | evaluations | node calls: search | "
        "node calls: with the final | worse than single | evaluations / node calls to regret "
        f"<= {CLOSE_REGRET * 100:g} points |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.method} | {s.seeds} | {_q(s.accuracy)} | {_q(s.regret)} | "
            f"{_q(s.evaluations, False)} | {_q(s.search_node_calls, False)} | "
            f"{_q(s.node_calls, False)} | "
            f"{s.worse_than_single:.0%} | {_close(s.evaluations_to_close)} / "
            f"{_close(s.node_calls_to_close)} |"
        )
    lines += _limits_markdown(limits)
    if limits:
        lines += _against_random(returned_close_at(limits), "the returned graph", "evaluations")
    so_far = "the best graph so far (the search, before its final)"
    lines += _against_random(
        {s.method: s.evaluations_to_close for s in summaries}, so_far, "evaluations"
    )
    lines += _against_random(
        {s.method: s.node_calls_to_close for s in summaries}, so_far, "node calls"
    )
    counted = [s for s in summaries if s.agent_replies.decisions]
    if counted:
        lines += ["", "Agent replies (all seeds):", ""]
        lines += [f"- {s.method}: {replies(s.agent_replies)}" for s in counted]
    lines += [
        "",
        "The plot follows each search's best graph by validation utility so far (before the "
        "final); a dot marks the returned graph.",
        "",
        f"![true accuracy of the best graph so far]({plot.name})",
        "",
    ]
    return "\n".join(lines)


def _incumbent_at(outcome: SearchOutcome, spent: np.ndarray, by_calls: bool) -> list[str]:
    """The incumbent once `spent` evaluations (or node calls) were used, per grid point."""
    marks = [s.node_calls if by_calls else s.evaluations for s in outcome.steps]
    index = np.searchsorted(marks, spent, side="right") - 1
    return ["" if i < 0 else outcome.steps[i].incumbent for i in index]


def _incumbent_accuracy(
    runs: Sequence[SearchOutcome], acc: dict[str, float], grid: np.ndarray, by_calls: bool
) -> np.ndarray:
    """True accuracy of each run's best graph so far (rows) per grid point (columns); NaN
    before its first graph."""
    return np.array(
        [
            [acc.get(k, np.nan) if k else np.nan for k in _incumbent_at(o, grid, by_calls)]
            for o in runs
        ],
        dtype=float,
    )


def spent_to_regret(
    runs: Sequence[SearchOutcome], acc: dict[str, float], regret: float, by_calls: bool = False
) -> int | None:
    """The fewest evaluations (node calls with `by_calls`) after which the median over `runs`
    of the best-so-far graph's regret is at most `regret` (a run without a graph yet counts as
    never there); None if the median never gets there. A run that stopped keeps its last
    incumbent. Node calls weigh a pre-test on a few questions by what it cost, which an
    evaluation count does not."""
    marks = {s.node_calls if by_calls else s.evaluations for o in runs for s in o.steps}
    grid = np.array(sorted(marks))
    if not grid.size:
        return None
    curves = _incumbent_accuracy(runs, acc, grid, by_calls)
    regrets = np.where(np.isnan(curves), np.inf, max(acc.values()) - curves)
    reached = np.flatnonzero(np.median(regrets, axis=0) <= regret + _TOLERANCE)
    return int(grid[reached[0]]) if reached.size else None


def plot_replay(rows: Sequence[GraphRow], outcomes: Sequence[SearchOutcome], path: Path) -> Path:
    """True accuracy of the best graph so far against evaluations and node calls: median over
    seeds, interquartile band, from where every seed has a graph; a dot: the graph returned after
    the final (medians); dashed: the table's best graph, dotted: the best single model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = truth(rows)
    single = best_single(rows)
    by_method: dict[str, list[SearchOutcome]] = defaultdict(list)
    for o in outcomes:
        by_method[o.method].append(o)
    most_evals = max((len(o.steps) for o in outcomes), default=1)
    most_calls = max((o.node_calls for o in outcomes), default=1)
    grids = (np.arange(1, most_evals + 1), np.linspace(0, most_calls, 200))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, grid, by_calls, label in zip(
        axes, grids, (False, True), ("graph evaluations", "node calls"), strict=True
    ):
        for method, runs in by_method.items():
            curves = _incumbent_accuracy(runs, acc, grid, by_calls)
            # From where every seed has a graph: earlier, the seeds with one would stand for all.
            found = ~np.isnan(curves).any(axis=0)
            x, curves = grid[found], curves[:, found]
            q25, median, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            (line,) = ax.plot(x, median, label=method)
            ax.fill_between(x, q25, q75, alpha=0.15, color=line.get_color())
            spent = [o.node_calls if by_calls else len(o.steps) for o in runs]
            returned = [acc[o.returned] for o in runs]
            ax.plot(np.median(spent), np.median(returned), "o", color=line.get_color())
        # Under the curves: a search at the optimum must stay visible.
        best = max(acc.values())
        ax.axhline(best, color="black", linestyle="--", linewidth=1, label="best", zorder=0)
        if single is not None:
            ax.axhline(single.accuracy, color="gray", linestyle=":", label="best single", zorder=0)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("true accuracy of the best graph so far")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_replay_report(
    source: Path,
    rows: Sequence[GraphRow],
    results: Sequence[SearchResult],
    out: Path,
    limited: Mapping[int, Sequence[SearchResult]] | None = None,
) -> tuple[Path, Path, str]:
    """`out/replay-<table>.md` and `.png`; returns their paths and the markdown. `limited`:
    the same searches stopped after at most N evaluations, by N."""
    out.mkdir(parents=True, exist_ok=True)
    outcomes = [outcome_of(r) for r in results]
    plot = plot_replay(rows, outcomes, out / f"replay-{source.stem}.png")
    limits = summarize_limits(
        rows, {n: [outcome_of(r) for r in rs] for n, rs in (limited or {}).items()}
    )
    markdown = replay_markdown(str(source), rows, summarize(rows, outcomes), plot, limits)
    return write_atomic(out / f"replay-{source.stem}.md", markdown.encode()), plot, markdown
