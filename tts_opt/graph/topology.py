"""Graph structure as pure functions on node ids and edges.

They take plain ids and edge pairs (not artifacts) so the optimizer can use them on candidate graphs
before an artifact exists. Orders are deterministic: ties follow the order of `node_ids`, and
predecessor lists follow the order of `edges` (which is the order references appear in prompts).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import GraphArtifact

Edge = tuple[str, str]


def successor_map(node_ids: Sequence[str], edges: Iterable[Edge]) -> dict[str, list[str]]:
    """Successors of every node, in edge order."""
    succ: dict[str, list[str]] = {n: [] for n in node_ids}
    for src, dst in edges:
        succ[src].append(dst)
    return succ


def predecessor_map(node_ids: Sequence[str], edges: Iterable[Edge]) -> dict[str, list[str]]:
    """Predecessors of every node, in edge order."""
    pred: dict[str, list[str]] = {n: [] for n in node_ids}
    for src, dst in edges:
        pred[dst].append(src)
    return pred


def find_cycle(node_ids: Sequence[str], edges: Iterable[Edge]) -> list[str] | None:
    """One cycle as a closed walk `[a, b, ..., a]`, or None if the graph is acyclic."""
    succ = successor_map(node_ids, edges)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    for root in node_ids:
        if root in state:
            continue
        state[root] = 1
        path.append(root)
        stack = [iter(succ[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succ[nxt]))
    return None


def topological_order(node_ids: Sequence[str], edges: Sequence[Edge]) -> list[str]:
    """Kahn's order, ties broken by position in `node_ids`; a cycle raises GraphError naming it."""
    index = {n: i for i, n in enumerate(node_ids)}
    succ = successor_map(node_ids, edges)
    indegree = {n: 0 for n in node_ids}
    for _, dst in edges:
        indegree[dst] += 1
    ready = [index[n] for n in node_ids if indegree[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = node_ids[heapq.heappop(ready)]
        order.append(node)
        for nxt in succ[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, index[nxt])
    if len(order) < len(node_ids):
        cycle = find_cycle(node_ids, edges) or []
        raise GraphError(f"cycle through nodes {' -> '.join(cycle)}")
    return order


def ancestors_of(target: str, node_ids: Sequence[str], edges: Iterable[Edge]) -> set[str]:
    """Nodes with a path to `target`, `target` included: the nodes that run when it is the sink."""
    pred = predecessor_map(node_ids, edges)
    seen = {target}
    todo = [target]
    while todo:
        for p in pred[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def topological_levels(node_ids: Sequence[str], edges: Sequence[Edge]) -> list[list[str]]:
    """Nodes grouped by longest distance from a source; a level's nodes can run concurrently."""
    pred = predecessor_map(node_ids, edges)
    level: dict[str, int] = {}
    for node in topological_order(node_ids, edges):
        level[node] = 1 + max((level[p] for p in pred[node]), default=-1)
    groups: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for node in node_ids:
        groups[level[node]].append(node)
    return groups


def _ids(artifact: GraphArtifact) -> list[str]:
    return [n.id for n in artifact.nodes]


def active_nodes(artifact: GraphArtifact) -> list[str]:
    """The nodes that run (those with a path to the sink), in topological order."""
    ids = _ids(artifact)
    active = ancestors_of(artifact.sink, ids, artifact.edges)
    return [n for n in topological_order(ids, artifact.edges) if n in active]


def predecessors(artifact: GraphArtifact) -> dict[str, list[str]]:
    """Predecessors of every node of the artifact, in edge order."""
    return predecessor_map(_ids(artifact), artifact.edges)
