"""The probabilistic graph of Agent-REINFORCE: edge, role and model logits over node slots.

Slot i is node `n{i}`; the last slot is the sink (it must come last, so it never gets an outgoing
edge). Edges are Bernoulli(sigmoid(theta - 2)): with theta initialised to 0 that is about 0.12,
a sparse start. Roles are categorical over (assistant, fuser) with logits pi; models categorical
over the pool with logits psi, unless the node multiset is fixed (Agent-REINFORCE stage 2), in
which case slot models are given and psi is unused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from tts_opt.graph.schema import Role

ROLES: tuple[Role, ...] = ("assistant", "fuser")
EDGE_OFFSET = 2.0
P_MIN, P_MAX = 0.01, 0.99


def slot_id(i: int) -> str:
    return f"n{i}"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class ProbabilityTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Edge probabilities by "src->dst": the agent's readable, editable view of theta."""

    edges: dict[str, float] = {}


@dataclass
class Decisions:
    """The random choices one sample made, in the shapes of the parameters (for log p(G)).

    `edge_seen` marks pairs whose Bernoulli was drawn (pairs skipped because they would close a
    cycle were never drawn); `role_seen` marks nodes whose role was drawn (sources are forced).
    """

    edge_seen: np.ndarray
    edge_taken: np.ndarray
    role_seen: np.ndarray
    role: np.ndarray
    model: np.ndarray | None


@dataclass
class GraphDistribution:
    """Logits over `n` slots; `slot_models` fixes each slot's model (then psi is unused)."""

    pool: tuple[str, ...]
    theta: np.ndarray
    pi: np.ndarray
    psi: np.ndarray
    slot_models: tuple[str, ...] | None = None
    ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = tuple(slot_id(i) for i in range(self.size))

    @classmethod
    def uniform(
        cls, pool: Sequence[str], size: int, slot_models: Sequence[str] | None = None
    ) -> GraphDistribution:
        """theta = 0, uniform roles and models: the paper's initialisation."""
        if slot_models is not None and len(slot_models) != size:
            raise ValueError(f"{len(slot_models)} slot models for {size} slots")
        return cls(
            pool=tuple(pool),
            theta=np.zeros((size, size)),
            pi=np.zeros((size, len(ROLES))),
            psi=np.zeros((size, len(pool))),
            slot_models=None if slot_models is None else tuple(slot_models),
        )

    @property
    def size(self) -> int:
        return self.theta.shape[0]

    @property
    def sink(self) -> str:
        return self.ids[-1]

    def edge_probs(self) -> np.ndarray:
        """P(edge i -> j) before cycle skipping; the diagonal and the sink's row are 0."""
        p = sigmoid(self.theta - EDGE_OFFSET)
        np.fill_diagonal(p, 0.0)
        p[-1, :] = 0.0
        return p

    def table(self) -> ProbabilityTable:
        p = self.edge_probs()
        return ProbabilityTable(
            edges={
                edge_key(self.ids[i], self.ids[j]): round(float(p[i, j]), 3)
                for i in range(self.size)
                for j in range(self.size)
                if p[i, j] > 0
            }
        )

    def edge_prob_map(self) -> dict[tuple[str, str], float]:
        p = self.edge_probs()
        return {
            (self.ids[i], self.ids[j]): float(p[i, j])
            for i in range(self.size)
            for j in range(self.size)
            if p[i, j] > 0
        }

    def set_table(self, table: ProbabilityTable) -> None:
        """Overwrite the edge logits named in `table` (the agent's "textual gradient")."""
        index = {node_id: i for i, node_id in enumerate(self.ids)}
        for key, p in table.edges.items():
            src, dst = parse_edge_key(key)
            q = min(max(p, P_MIN), P_MAX)
            self.theta[index[src], index[dst]] = np.log(q / (1 - q)) + EDGE_OFFSET

    def log_prob_grads(self, d: Decisions) -> dict[str, np.ndarray]:
        """d log p(G) / d(theta, pi, psi) for the drawn decisions.

        Bernoulli: d/dtheta log p = x - sigmoid(theta - 2); categorical: onehot - softmax.
        """
        grads = {
            "theta": np.where(d.edge_seen, d.edge_taken - sigmoid(self.theta - EDGE_OFFSET), 0.0)
        }
        role_onehot = np.eye(len(ROLES))[d.role]
        grads["pi"] = np.where(d.role_seen[:, None], role_onehot - softmax(self.pi), 0.0)
        grads["psi"] = np.zeros_like(self.psi)
        if d.model is not None:
            grads["psi"] = np.eye(len(self.pool))[d.model] - softmax(self.psi)
        return grads


def edge_key(src: str, dst: str) -> str:
    """How a probability table names the edge src -> dst."""
    return f"{src}->{dst}"


def parse_edge_key(key: str) -> tuple[str, str]:
    src, sep, dst = key.partition("->")
    if not sep or not src.strip() or not dst.strip():
        raise ValueError(f"edge key {key!r} is not of the form 'src->dst'")
    return src.strip(), dst.strip()


def table_errors(table: ProbabilityTable, ids: Sequence[str], sink: str) -> list[str]:
    """What is wrong with an agent's table for these slots (empty: nothing)."""
    known = set(ids)
    errors = []
    for key, p in table.edges.items():
        try:
            src, dst = parse_edge_key(key)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if src not in known or dst not in known:
            errors.append(f"probability for {key!r} names an unknown node (nodes: {list(ids)})")
        elif src in (dst, sink):
            errors.append(f"probability for {key!r}: no self loops, and the sink has no successors")
        elif not 0.0 <= p <= 1.0:
            errors.append(f"probability for {key!r} is {p}, not in [0, 1]")
    return errors


def blend(
    table: Mapping[tuple[str, str], float], target: Mapping[tuple[str, str], float], rate: float
) -> ProbabilityTable:
    """Move each probability toward its target by `rate` (pairs without a target stay)."""
    return ProbabilityTable(
        edges={
            edge_key(s, d): round(p + rate * (target[s, d] - p) if (s, d) in target else p, 3)
            for (s, d), p in table.items()
        }
    )
