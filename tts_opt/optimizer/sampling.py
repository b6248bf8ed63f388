"""Draw a legal graph from a `GraphDistribution` with a seeded numpy RNG.

Edges are drawn pair by pair in a random order; a pair that would close a cycle is skipped (not
drawn), as in the reference implementation, so every draw is a DAG. The draw is repeated until
the sink has a predecessor (a one-node graph has no parallel or sequential scaling); after
`MAX_REDRAWS` the most likely edge into the sink is added, so sampling always terminates. Roles and
models are drawn per slot; `legalize` then prunes nodes without a path to the sink and fixes roles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tts_opt.graph.schema import Node
from tts_opt.optimizer.distribution import ROLES, Decisions, GraphDistribution, softmax
from tts_opt.optimizer.space import Candidate, legalize

MAX_REDRAWS = 20


@dataclass
class Sample:
    candidate: Candidate
    decisions: Decisions


def _reaches(adj: np.ndarray, src: int, dst: int) -> bool:
    """Whether `dst` is reachable from `src` along the edges in `adj`."""
    seen = {src}
    todo = [src]
    while todo:
        node = todo.pop()
        if node == dst:
            return True
        for nxt in np.flatnonzero(adj[node]):
            if nxt not in seen:
                seen.add(int(nxt))
                todo.append(int(nxt))
    return False


def _draw_edges(dist: GraphDistribution, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    n = dist.size
    p = dist.edge_probs()
    pairs = [(i, j) for i in range(n - 1) for j in range(n) if i != j]
    seen = np.zeros((n, n), dtype=bool)
    taken = np.zeros((n, n), dtype=bool)
    for k in rng.permutation(len(pairs)):
        i, j = pairs[k]
        if _reaches(taken, j, i):  # i -> j would close a cycle
            continue
        seen[i, j] = True
        taken[i, j] = rng.random() < p[i, j]
    return seen, taken


def sample_graph(
    dist: GraphDistribution, rng: np.random.Generator, *, allow_fuser: bool = True
) -> Sample:
    """One legal graph (before budget repair) and the decisions that produced it."""
    n = dist.size
    seen, taken = _draw_edges(dist, rng)
    for _ in range(MAX_REDRAWS):
        if n == 1 or taken[:, -1].any():
            break
        seen, taken = _draw_edges(dist, rng)
    else:
        best = int(np.argmax(dist.edge_probs()[:-1, -1]))
        seen[best, -1] = taken[best, -1] = True

    has_pred = np.any(taken, axis=0)
    role_seen = has_pred if allow_fuser else np.zeros(n, dtype=bool)
    roles = np.array([rng.choice(len(ROLES), p=q) for q in softmax(dist.pi)])
    roles = np.where(role_seen, roles, 0)

    model_draws: np.ndarray | None = None
    if dist.slot_models is None:
        model_draws = np.array([rng.choice(len(dist.pool), p=q) for q in softmax(dist.psi)])
        models = tuple(dist.pool[m] for m in model_draws)
    else:
        models = dist.slot_models

    nodes = tuple(Node(id=dist.ids[i], model=models[i], role=ROLES[roles[i]]) for i in range(n))
    edges = tuple((dist.ids[i], dist.ids[j]) for i in range(n) for j in range(n) if taken[i, j])
    candidate = legalize(nodes, edges, dist.sink, allow_fuser=allow_fuser)
    return Sample(
        candidate=candidate,
        decisions=Decisions(
            edge_seen=seen,
            edge_taken=taken.astype(float),
            role_seen=role_seen,
            role=roles,
            model=model_draws,
        ),
    )
