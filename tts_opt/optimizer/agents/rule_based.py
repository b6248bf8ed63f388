"""The offline default agent: the paper's three insights applied as explicit rules, no LLM.

- Insight 1 (the best model mix is task specific): reasoning tasks (MATH, GSM8K) prefer several
  mid-size models, knowledge and code tasks (MMLU, HumanEval, others) the strongest model that
  fits. Both picks are pre-tested, so the rule only orders them.
- Insight 2 (width and depth each have an optimum): from the best graph so far, keep moving in the
  direction of the last improvement; once a move stops paying, turn to another direction.
- Insight 3 (the optimal width depends on depth): after a depth move, retune width first (and
  vice versa), and try trading one for the other.
When every neighbouring shape has been tried, it refines edges of the best graph using the
probability table, and failing that samples from the table. The table moves toward the best
graph's edges and away from the edges of graphs that did worse.
"""

from __future__ import annotations

import numpy as np

from tts_opt.graph import GraphError, Node
from tts_opt.optimizer.agents.base import (
    HistoryItem,
    MultisetChoice,
    MultisetRequest,
    Proposal,
    ProposalRequest,
    best_item,
)
from tts_opt.optimizer.agents.shapes import Shape, feasible, layered, shape_of
from tts_opt.optimizer.distribution import (
    GraphDistribution,
    ProbabilityTable,
    blend,
    parse_edge_key,
)
from tts_opt.optimizer.sampling import sample_graph
from tts_opt.optimizer.space import Candidate, SearchSpace, legalize

REASONING_TASKS = ("math", "gsm8k")
TABLE_RATE = 0.3
SAMPLE_TRIES = 20
WIDTH_MOVES: tuple[Shape, ...] = ((1, 0), (-1, 0))
DEPTH_MOVES: tuple[Shape, ...] = ((0, 1), (0, -1))
TRADE_MOVES: tuple[Shape, ...] = ((1, -1), (-1, 1))


def prefers_width(task: str) -> bool:
    """Insight 1: on reasoning tasks several mid-size models beat one large one."""
    return task.split(":")[0].lower() in REASONING_TASKS


def _strong_key(space: SearchSpace, models: tuple[str, ...]) -> tuple[float, int]:
    return -max(space.spec(m).params for m in models), len(models)


def _wide_key(space: SearchSpace, models: tuple[str, ...]) -> tuple[int, float]:
    cheapest = min(m.params for m in space.pool)
    return -sum(space.spec(m).params > cheapest for m in models), -min(
        space.spec(m).params for m in models
    )


def _move_order(history: tuple[HistoryItem, ...], latency: bool) -> list[Shape]:
    """Insight 2: the last improving move first; Insight 3: then the other dimension. Under the
    latency objective, a shallower graph is tried early (latency grows with depth, not width)."""
    moves = [*WIDTH_MOVES, *DEPTH_MOVES, *TRADE_MOVES]
    if latency:
        moves.insert(0, (0, -1))
    if len(history) < 2:
        return list(dict.fromkeys(moves))
    last, before = history[-1], history[-2]
    dw, dd = np.subtract(shape_of(last.candidate), shape_of(before.candidate)).tolist()
    improved = last.utility > max(h.utility for h in history[:-1])
    first: list[Shape] = []
    if improved and (dw, dd) != (0, 0):
        first.append((int(np.sign(dw)), int(np.sign(dd))))
    other = DEPTH_MOVES if dw and not dd else WIDTH_MOVES
    return list(dict.fromkeys([*first, *other, *moves]))


def _table_map(table: ProbabilityTable) -> dict[tuple[str, str], float]:
    return {parse_edge_key(k): p for k, p in table.edges.items()}


def _edge_refinements(
    space: SearchSpace,
    best: Candidate,
    nodes: tuple[Node, ...],
    probs: dict[tuple[str, str], float],
) -> list[Candidate]:
    """Best graph plus its likeliest missing edge, or minus its least likely edge."""
    present = set(best.edges)
    by_id = {n.id: n for n in nodes}
    in_graph = {n.id: n for n in best.nodes}
    additions = sorted(
        (e for e in probs if e not in present and e[0] != best.sink), key=lambda e: -probs[e]
    )
    removals = sorted(best.edges, key=lambda e: probs.get(e, 0.5))
    out: list[Candidate] = []
    for src, dst in additions:
        if dst not in in_graph:
            continue
        extra = () if src in in_graph else (Node(id=src, model=by_id[src].model, role="assistant"),)
        try:
            out.append(
                legalize(
                    best.nodes + extra,
                    (*best.edges, (src, dst)),
                    best.sink,
                    allow_fuser=space.allow_fuser,
                )
            )
        except GraphError:  # the edge would close a cycle
            continue
    for edge in removals:
        out.append(
            legalize(
                best.nodes,
                tuple(e for e in best.edges if e != edge),
                best.sink,
                allow_fuser=space.allow_fuser,
            )
        )
    return out


class RuleBasedAgent:
    """Deterministic given the request's seed; makes no network calls."""

    name = "rule-based"

    async def pick_multisets(self, request: MultisetRequest) -> MultisetChoice:
        space = request.space
        indices = range(len(request.multisets))
        strong = sorted(indices, key=lambda i: _strong_key(space, request.multisets[i]))
        wide = sorted(indices, key=lambda i: _wide_key(space, request.multisets[i]))
        first, second = (wide, strong) if prefers_width(space.task) else (strong, wide)
        picks = list(dict.fromkeys([first[0], second[0], *first]))[: request.picks]
        kind = "several mid-size models" if prefers_width(space.task) else "the strongest model"
        return MultisetChoice(
            picks=tuple(picks),
            source="rule",
            rationale=f"Insight 1: on {space.task} prefer {kind}; the other kind is the runner-up",
        )

    async def propose(self, request: ProposalRequest) -> Proposal:
        space, history = request.space, request.history
        best, last = best_item(history), history[-1]
        target = dict.fromkeys(best.candidate.edges, 1.0)
        if last.utility < best.utility:
            target |= {e: 0.0 for e in last.candidate.edges if e not in target}
        table = blend(_table_map(request.table), target, TABLE_RATE)
        visited = {h.candidate.key() for h in history}

        def fresh(c: Candidate) -> bool:
            return c.key() not in visited and space.within_budget(c)

        base = shape_of(best.candidate)
        for dw, dd in _move_order(history, request.objective.uses_latency):
            shape = (base[0] + dw, base[1] + dd)
            if min(shape) == 0:
                shape = (0, 0)  # no width or no depth: the sink alone
            if not feasible(shape, len(request.nodes)):
                continue
            c = layered(space, request.nodes, request.sink, shape)
            if fresh(c):
                return Proposal(c, table, "rule", f"shape {base} -> {shape} (Insights 2, 3)")
        for c in _edge_refinements(space, best.candidate, request.nodes, _table_map(table)):
            if fresh(c):
                return Proposal(c, table, "rule", "all neighbouring shapes tried: edge refinement")
        dist = GraphDistribution.uniform(
            [m.name for m in space.pool], len(request.nodes), [n.model for n in request.nodes]
        )
        dist.set_table(table)
        rng = np.random.default_rng(request.seed)
        for _ in range(SAMPLE_TRIES):
            c = sample_graph(dist, rng, allow_fuser=space.allow_fuser).candidate
            if fresh(c):
                break
        return Proposal(c, table, "sample", "no untried neighbour: sampled from the table")
