"""Width and depth: the two knobs the paper's insights are about, read off and built into graphs.

A layered graph has `depth` layers of `width` assistants, each layer reading every node of the
layer before, and the last layer feeding the sink (a fuser when it reads several answers).
Weaker models go first (Insight 2: long contexts hurt weak models, so they get none); the
strongest nodes are kept when the shape needs fewer nodes than the multiset has.
"""

from __future__ import annotations

import itertools

from tts_opt.graph import Node, topological_levels
from tts_opt.graph.schema import Role
from tts_opt.optimizer.space import Candidate, SearchSpace, legalize

Shape = tuple[int, int]  # (width, depth); a lone sink is (0, 0)


def shape_of(c: Candidate) -> Shape:
    """Widest level and number of levels before the sink."""
    levels = topological_levels([n.id for n in c.nodes], c.edges)
    before_sink = levels[:-1]
    return max((len(level) for level in before_sink), default=0), len(before_sink)


def layered(space: SearchSpace, nodes: tuple[Node, ...], sink: str, shape: Shape) -> Candidate:
    """The layered graph of `shape` over `nodes` (given weakest first, sink among them)."""
    width, depth = shape
    others = [n for n in nodes if n.id != sink]
    used = others[len(others) - width * depth :] if width * depth else []
    layers = [used[k * width : (k + 1) * width] for k in range(depth)]
    edges = [
        (a.id, b.id) for upper, lower in itertools.pairwise(layers) for a in upper for b in lower
    ]
    edges += [(a.id, sink) for a in (layers[-1] if layers else [])]
    sink_node = next(n for n in nodes if n.id == sink)
    role: Role = "fuser" if width > 1 else "assistant"
    graph_nodes = tuple(Node(id=n.id, model=n.model, role="assistant") for n in used)
    graph_nodes += (Node(id=sink, model=sink_node.model, role=role),)
    return legalize(graph_nodes, tuple(edges), sink, allow_fuser=space.allow_fuser)


def feasible(shape: Shape, node_count: int) -> bool:
    width, depth = shape
    if (width == 0) != (depth == 0):
        return False
    return width >= 0 and depth >= 0 and width * depth + 1 <= node_count
