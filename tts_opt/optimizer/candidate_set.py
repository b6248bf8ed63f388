"""Every legal graph of a search space, once per isomorphism class.

`Candidate.key()` depends on node ids, so two graphs that differ only in how their nodes are named
(the same models, roles and edges) get different keys. `canonical` renames the nodes so that
such graphs become equal (exact; for the small graphs of a replay table); `signature` is a cheap
invariant for graphs of any size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from tts_opt.graph import GraphError, Node
from tts_opt.graph.schema import Role
from tts_opt.optimizer.distribution import slot_id
from tts_opt.optimizer.space import Candidate, Edge, SearchSpace

ROLES: tuple[Role, ...] = ("assistant", "fuser")
# The set grows as 2^(n(n-1)/2) topologies: beyond this many nodes it is out of reach.
MAX_ENUMERATED_NODES = 5


class CandidateSetError(GraphError):
    """The space is too large to enumerate; the message says what to lower."""


def _relabel(candidate: Candidate, order: tuple[str, ...]) -> Candidate:
    new = {old: slot_id(i) for i, old in enumerate(order)}
    node = {n.id: n for n in candidate.nodes}
    return Candidate(
        nodes=tuple(Node(id=new[o], model=node[o].model, role=node[o].role) for o in order),
        edges=tuple(sorted((new[s], new[d]) for s, d in candidate.edges)),
        sink=new[candidate.sink],
    )


def _colors(candidate: Candidate) -> dict[str, int]:
    """Colour refinement (Weisfeiler-Lehman): a node's colour starts as its kind (sink or not,
    model, role) and is refined by its predecessors' and successors' colours until stable.
    Isomorphic graphs get the same colours, so nodes of different colours never map onto each
    other."""
    pred: dict[str, list[str]] = {n.id: [] for n in candidate.nodes}
    succ: dict[str, list[str]] = {n.id: [] for n in candidate.nodes}
    for s, d in candidate.edges:
        succ[s].append(d)
        pred[d].append(s)
    colors = _ranks(
        {n.id: repr((n.id == candidate.sink, n.model, n.role)) for n in candidate.nodes}
    )
    for _ in candidate.nodes:
        colors = _ranks(
            {
                i: repr((c, sorted(colors[p] for p in pred[i]), sorted(colors[s] for s in succ[i])))
                for i, c in colors.items()
            }
        )
    return colors


def _ranks(labels: dict[str, str]) -> dict[str, int]:
    """Labels replaced by their rank among the distinct labels (keeps them short)."""
    rank = {label: r for r, label in enumerate(sorted(set(labels.values())))}
    return {i: rank[label] for i, label in labels.items()}


def signature(candidate: Candidate) -> str:
    """A cheap isomorphism invariant: equal for isomorphic graphs (and, rarely, for others):
    the nodes' kinds and colours, and the edges between colours."""
    colors = _colors(candidate)
    nodes = sorted((colors[n.id], n.model, n.role) for n in candidate.nodes)
    edges = sorted((colors[s], colors[d]) for s, d in candidate.edges)
    return f"{nodes}|{edges}|{colors[candidate.sink]}"


def canonical(candidate: Candidate) -> Candidate:
    """The representative of `candidate`'s isomorphism class: equal for isomorphic graphs. Only
    orders within a colour class are tried, so the work grows with the size of a class of
    interchangeable nodes, small for the graphs a table holds."""
    colors = _colors(candidate)
    ids = sorted((n.id for n in candidate.nodes), key=colors.__getitem__)
    groups = [list(g) for _, g in itertools.groupby(ids, key=colors.__getitem__)]
    orders = (
        tuple(itertools.chain.from_iterable(parts))
        for parts in itertools.product(*(itertools.permutations(g) for g in groups))
    )
    return min((_relabel(candidate, order) for order in orders), key=Candidate.key)


def canonical_key(candidate: Candidate) -> str:
    return canonical(candidate).key()


def _topologies(size: int) -> Iterator[tuple[Edge, ...]]:
    """Edge sets over nodes n0..n{size-1} in topological order with n{size-1} the only node
    without successors (validation requires every node to reach the sink)."""
    pairs = [(slot_id(i), slot_id(j)) for i in range(size) for j in range(i + 1, size)]
    for mask in range(2 ** len(pairs)):
        edges = tuple(p for bit, p in enumerate(pairs) if mask >> bit & 1)
        if all(any(s == slot_id(i) for s, _ in edges) for i in range(size - 1)):
            yield edges


def all_candidates(space: SearchSpace) -> list[Candidate]:
    """Every graph of up to `space.max_nodes` nodes that `space.check` accepts (budget included),
    one canonical representative per isomorphism class, ordered by size then key."""
    names = [m.name for m in space.pool]
    single = {m: Candidate((Node("n0", m, "assistant"),), (), "n0") for m in names}
    alone = {m: space.cost(c) for m, c in single.items()}  # a node costs at least this
    # The largest graph the budget affords (every node at least its cheapest call).
    largest = min(space.max_nodes, int(space.budget.value // min(alone.values())))
    if largest > MAX_ENUMERATED_NODES:
        raise CandidateSetError(
            f"the budget affords graphs of {largest} nodes; enumerating every graph stops at "
            f"{MAX_ENUMERATED_NODES}: lower --max-nodes"
        )
    found: dict[str, Candidate] = {}
    for size in range(1, largest + 1):
        ids = [slot_id(i) for i in range(size)]
        for models in itertools.product(names, repeat=size):
            if sum(alone[m] for m in models) > space.budget.value:
                continue
            for edges in _topologies(size):
                sources = {i for i in ids if not any(d == i for _, d in edges)}
                for roles in itertools.product(ROLES, repeat=size):
                    if any(
                        r != "assistant" for i, r in zip(ids, roles, strict=True) if i in sources
                    ):
                        continue  # sources must be assistants
                    nodes = tuple(
                        Node(id=i, model=m, role=r)
                        for i, m, r in zip(ids, models, roles, strict=True)
                    )
                    candidate = Candidate(nodes=nodes, edges=edges, sink=ids[-1])
                    try:
                        space.check(candidate)
                    except GraphError:
                        continue
                    rep = canonical(candidate)
                    found.setdefault(rep.key(), rep)
    return sorted(found.values(), key=lambda c: (len(c.nodes), c.key()))
