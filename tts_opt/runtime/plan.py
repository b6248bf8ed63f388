"""Turns a validated artifact into an execution plan: which engine calls to make, in what order.

Nodes with the same model, role and predecessors receive the same prompt, so they become one
request with `n` samples (one shared prefill) instead of `n` requests. The sink always runs alone:
its tokens are what the caller streams.

Each group has a sample-seed offset: its samples take seeds offset, offset + 1, ... past the
artifact's decoding seed. Offsets count the samples of a model's earlier groups, so no two calls
of one model in a graph share a seed, and a model's source calls (those without inputs, which
get the question alone) come first: the k-th source sample of a model has seed offset k in
every graph. Graphs that ask a model the same question therefore draw the same samples, which
the node cache serves once to all of them.
"""

from __future__ import annotations

import msgspec

from tts_opt.engines.base import SamplingParams
from tts_opt.graph.schema import Decoding, GraphArtifact, Role
from tts_opt.graph.topology import active_nodes, predecessors


class CallGroup(msgspec.Struct, frozen=True):
    """One engine request serving `len(nodes)` identical node calls (sample i -> nodes[i])."""

    model: str
    role: Role
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    is_sink: bool
    seed_offset: int = 0


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
    members = list(groups.values())
    offsets: dict[int, int] = {}
    samples: dict[str, int] = {}
    for position in sorted(range(len(members)), key=lambda i: bool(preds.get(members[i][0]))):
        model = by_id[members[position][0]].model
        offsets[position] = samples.get(model, 0)
        samples[model] = offsets[position] + len(members[position])
    return ExecutionPlan(
        groups=tuple(
            CallGroup(
                model=by_id[ids[0]].model,
                role=by_id[ids[0]].role,
                nodes=tuple(ids),
                inputs=tuple(preds.get(ids[0], ())),
                is_sink=ids[0] == artifact.sink,
                seed_offset=offsets[position],
            )
            for position, ids in enumerate(members)
        ),
        order=order,
        sink=artifact.sink,
    )


def sampling_params(decoding: Decoding, call: CallGroup, priority: int = 0) -> SamplingParams:
    """The engine request of `call`: its samples' seeds start at its offset (see the module
    docstring); greedy decoding gives identical calls one answer, sampled once and shared
    (engines also reject n > 1 without sampling). `priority` is the run's rank on the engine."""
    return SamplingParams(
        max_tokens=decoding.max_tokens,
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        seed=None if decoding.seed is None else decoding.seed + call.seed_offset,
        stop=decoding.stop,
        n=1 if decoding.temperature == 0 else len(call.nodes),
        priority=priority,
    )
