"""Turns a validated artifact into an execution plan: which engine calls to make, in what order.

Nodes with the same model, role and predecessors receive the same prompt, so they become one
request with `n` samples (one shared prefill) instead of `n` requests. The sink always runs alone:
its tokens are what the caller streams.
"""

from __future__ import annotations

import msgspec

from tts_opt.graph.schema import GraphArtifact, Role
from tts_opt.graph.topology import active_nodes, predecessors


class CallGroup(msgspec.Struct, frozen=True):
    """One engine request serving `len(nodes)` identical node calls (sample i -> nodes[i])."""

    model: str
    role: Role
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    is_sink: bool


class ExecutionPlan(msgspec.Struct, frozen=True):
    groups: tuple[CallGroup, ...]
    order: tuple[str, ...]
    sink: str


def build_plan(artifact: GraphArtifact, *, batch_identical: bool = True) -> ExecutionPlan:
    order = tuple(active_nodes(artifact))
    preds = predecessors(artifact)
    by_id = {node.id: node for node in artifact.nodes}
    groups: dict[tuple[object, ...], list[str]] = {}
    for node_id in order:
        node = by_id[node_id]
        inputs = tuple(preds.get(node_id, ()))
        alone = node_id == artifact.sink or not batch_identical
        key = (node_id,) if alone else (node.model, node.role, frozenset(inputs))
        groups.setdefault(key, []).append(node_id)
    return ExecutionPlan(
        groups=tuple(
            CallGroup(
                model=by_id[ids[0]].model,
                role=by_id[ids[0]].role,
                nodes=tuple(ids),
                inputs=tuple(preds.get(ids[0], ())),
                is_sink=ids[0] == artifact.sink,
            )
            for ids in groups.values()
        ),
        order=order,
        sink=artifact.sink,
    )
