"""Budget: the model multisets a budget affords, canonical graphs over them, and repair.

A multiset's cost is the cost of its parallel graph (every other node feeds the strongest model as
a fuser): the canonical graph Agent-REINFORCE pre-tests, and the usual shape of the paper's budget.
A multiset "uses the budget fully" when it fits and one more node of the cheapest model would not
(or the node cap is reached).

Repair rules (selectable, `RepairRule`):
- `reference`: while over budget, delete one node among those with the smallest model, never the
  sink (the reference implementation's rule; the first such node in node order).
- `value`: greedy, cheapest loss of expected value per unit of cost saved. A move deletes one edge
  or one non-sink node; the value it loses is the probability the distribution (or the agent)
  gives each edge that disappears (pruned ones included) plus, per deleted node, 1 and its
  model's share of the pool's largest model (so a node is worth more than any one edge). Moves
  that strand other nodes are only taken when no other move saves cost. Over-budget graphs are
  usually over because of dense edges (every edge adds a full answer to a successor's prompt),
  so this shortens contexts first and keeps width, where the reference rule throws whole nodes
  away.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Literal

from tts_opt.graph import GraphError, Node
from tts_opt.optimizer.distribution import slot_id
from tts_opt.optimizer.space import Candidate, Edge, SearchSpace, legalize

RepairRule = Literal["reference", "value"]
REPAIR_RULES: tuple[RepairRule, ...] = ("reference", "value")
DEFAULT_EDGE_PROB = 0.5


class BudgetError(GraphError):
    """No legal graph fits the budget (it is below one call of the cheapest model)."""


def by_strength(space: SearchSpace, models: list[str]) -> list[str]:
    """Models ordered weakest first (fewest parameters; pool order breaks ties)."""
    order = {m.name: i for i, m in enumerate(space.pool)}
    return sorted(models, key=lambda m: (space.spec(m).params, order[m]))


def parallel_graph(space: SearchSpace, models: list[str]) -> Candidate:
    """Slots weakest first; every slot feeds the last (strongest) one, a fuser when allowed."""
    ordered = by_strength(space, models)
    last = len(ordered) - 1
    nodes = tuple(
        Node(id=slot_id(i), model=m, role="fuser" if i == last and last else "assistant")
        for i, m in enumerate(ordered)
    )
    edges = tuple((slot_id(i), slot_id(last)) for i in range(last))
    return legalize(nodes, edges, slot_id(last), allow_fuser=space.allow_fuser)


def maximal_multisets(space: SearchSpace) -> list[tuple[str, ...]]:
    """Every multiset (weakest first) whose parallel graph fits and that no cheapest node extends.

    Sorted by cost, most expensive first (closest to the budget).
    """
    cheapest = by_strength(space, [m.name for m in space.pool])[0]
    names = [m.name for m in space.pool]
    # A node alone (d = 0) is the least it can cost: a cheap bound that skips most combinations.
    alone = {m: space.cost(parallel_graph(space, [m])) for m in names}
    found: list[tuple[float, tuple[str, ...]]] = []
    for size in range(1, space.max_nodes + 1):
        for combo in itertools.combinations_with_replacement(names, size):
            if sum(alone[m] for m in combo) > space.budget.value:
                continue
            models = by_strength(space, list(combo))
            cost = space.cost(parallel_graph(space, models))
            if cost > space.budget.value:
                continue
            if size < space.max_nodes and space.within_budget(
                parallel_graph(space, [*models, cheapest])
            ):
                continue
            found.append((cost, tuple(models)))
    if not found:
        raise BudgetError(
            f"budget {space.budget.value:g} {space.budget.unit} does not afford a single call of "
            f"the cheapest model {cheapest!r}"
        )
    found.sort(key=lambda item: (-item[0], item[1]))
    return [models for _, models in found]


def _without_node(space: SearchSpace, c: Candidate, node_id: str) -> Candidate:
    nodes = tuple(n for n in c.nodes if n.id != node_id)
    edges = tuple(e for e in c.edges if node_id not in e)
    return legalize(nodes, edges, c.sink, allow_fuser=space.allow_fuser)


def _without_edge(space: SearchSpace, c: Candidate, edge: Edge) -> Candidate:
    edges = tuple(e for e in c.edges if e != edge)
    return legalize(c.nodes, edges, c.sink, allow_fuser=space.allow_fuser)


def _shrink_sink(space: SearchSpace, c: Candidate) -> Candidate:
    """Last resort once only the sink is left: run it on the cheapest model."""
    cheapest = by_strength(space, [m.name for m in space.pool])[0]
    single = Candidate(
        nodes=(Node(id=c.sink, model=cheapest, role="assistant"),), edges=(), sink=c.sink
    )
    if not space.within_budget(single):
        raise BudgetError(
            f"budget {space.budget.value:g} {space.budget.unit} does not afford a single call of "
            f"the cheapest model {cheapest!r}"
        )
    return single


def _reference_step(space: SearchSpace, c: Candidate) -> Candidate:
    others = [n for n in c.nodes if n.id != c.sink]
    smallest = min(space.spec(n.model).params for n in others)
    victim = next(n for n in others if space.spec(n.model).params == smallest)
    return _without_node(space, c, victim.id)


def _value_step(space: SearchSpace, c: Candidate, edge_prob: Mapping[Edge, float]) -> Candidate:
    top = max(m.params for m in space.pool)
    cost = space.cost(c)

    def lost(after: Candidate) -> float:
        kept_edges = set(after.edges)
        kept_nodes = {n.id for n in after.nodes}
        edges = sum(edge_prob.get(e, DEFAULT_EDGE_PROB) for e in c.edges if e not in kept_edges)
        nodes = sum(1 + space.spec(n.model).params / top for n in c.nodes if n.id not in kept_nodes)
        return edges + nodes

    edge_moves = [_without_edge(space, c, e) for e in c.edges]
    node_moves = [_without_node(space, c, n.id) for n in c.nodes if n.id != c.sink]
    # Moves that strand other nodes (pruned for want of a path to the sink) come last: they
    # look cheap per FLOP saved only because they throw away a lot at once.
    contained = [a for a in edge_moves if len(a.nodes) == len(c.nodes)]
    contained += [a for a in node_moves if len(a.nodes) == len(c.nodes) - 1]
    for moves in (contained, edge_moves + node_moves):
        ranked = [
            (lost(after) / saved, -saved, index, after)
            for index, after in enumerate(moves)
            if (saved := cost - space.cost(after)) > 0
        ]
        if ranked:
            return min(ranked, key=lambda item: item[:3])[3]
    raise AssertionError("deleting a non-sink node always saves cost")


def repair(
    space: SearchSpace,
    candidate: Candidate,
    rule: RepairRule = "value",
    edge_prob: Mapping[Edge, float] | None = None,
) -> Candidate:
    """`candidate` (legal) cut down until it fits the budget; unchanged if it already does."""
    c = candidate
    while not space.within_budget(c):
        if len(c.nodes) == 1:
            return _shrink_sink(space, c)
        if rule == "reference":
            c = _reference_step(space, c)
        else:
            c = _value_step(space, c, edge_prob or {})
    return c
