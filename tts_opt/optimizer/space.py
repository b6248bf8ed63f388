"""The search space (task, pool, budget) and its candidate graphs.

A `Candidate` is just the topology (nodes, edges, sink); the space turns it into a full artifact so
the repo's validator and cost model judge it, never a second copy of the rules. `legalize` is the
one place that makes any node/edge set legal: it prunes nodes with no path to the sink (they would
never run) and fixes roles (sources are assistants, a fuser needs an assistant predecessor).
"""

from __future__ import annotations

import msgspec

from tts_opt.graph import (
    SCHEMA_VERSION,
    Budget,
    Decoding,
    GraphArtifact,
    GraphError,
    ModelSpec,
    Node,
    RoleTemplates,
    TaskLengths,
    ancestors_of,
    cost_in_budget_unit,
    predecessor_map,
    topological_order,
    validate,
)

Edge = tuple[str, str]


class Candidate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A graph topology over pool models; legal once it passed `legalize` or `SearchSpace.check`."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    sink: str

    def key(self) -> str:
        """Canonical identity (order-free), for deduplication and archive matching."""
        nodes = ",".join(sorted(f"{n.id}:{n.model}:{n.role}" for n in self.nodes))
        edges = ",".join(sorted(f"{s}>{d}" for s, d in self.edges))
        return f"{nodes}|{edges}|{self.sink}"

    def summary(self) -> str:
        """One line for tables and prompts: nodes as id:model:role initial, then edges."""
        nodes = " ".join(f"{n.id}:{n.model}:{n.role[0]}" for n in self.nodes)
        edges = " ".join(f"{s}->{d}" for s, d in self.edges) or "-"
        return f"[{nodes}] edges {edges}"


MAX_NODES = 10  # the largest graph a search considers by default


class SearchSpace(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a search optimizes over: one task, a model pool and a budget.

    `max_nodes` caps graph size (the paper's spaces stay small; it also bounds multiset
    enumeration). `allow_fuser=False` is the no-fuser ablation.
    """

    task: str
    budget: Budget
    lengths: TaskLengths
    pool: tuple[ModelSpec, ...]
    templates: RoleTemplates = RoleTemplates()
    decoding: Decoding = Decoding()
    max_nodes: int = MAX_NODES
    allow_fuser: bool = True

    def spec(self, model: str) -> ModelSpec:
        return next(m for m in self.pool if m.name == model)

    def artifact(self, candidate: Candidate, **fields: object) -> GraphArtifact:
        """The artifact of `candidate` here; extra `fields` (accuracy, ...) pass through."""
        return GraphArtifact(
            schema_version=SCHEMA_VERSION,
            task=self.task,
            budget=self.budget,
            task_lengths=self.lengths,
            models=self.pool,
            nodes=candidate.nodes,
            edges=candidate.edges,
            sink=candidate.sink,
            templates=self.templates,
            decoding=self.decoding,
            **fields,  # type: ignore[arg-type]  # any field by name; GraphArtifact checks it
        )

    def cost(self, candidate: Candidate) -> float:
        """Cost in the budget's unit (budget units or dollars) by the repo's cost model."""
        return cost_in_budget_unit(self.artifact(candidate))

    def within_budget(self, candidate: Candidate) -> bool:
        return self.cost(candidate) <= self.budget.value

    def check(self, candidate: Candidate) -> None:
        """Raise GraphError naming the first rule `candidate` breaks (budget included)."""
        if not self.allow_fuser and any(n.role == "fuser" for n in candidate.nodes):
            raise GraphError("the fuser role is disabled in this search (no-fuser ablation)")
        validate(self.artifact(candidate))


def prune(nodes: tuple[Node, ...], edges: tuple[Edge, ...], sink: str) -> Candidate:
    """Keep the sink's ancestors and the edges among them; node and edge order is preserved."""
    keep = ancestors_of(sink, [n.id for n in nodes], edges)
    return Candidate(
        nodes=tuple(n for n in nodes if n.id in keep),
        edges=tuple(e for e in edges if e[0] in keep and e[1] in keep),
        sink=sink,
    )


def legalize(
    nodes: tuple[Node, ...], edges: tuple[Edge, ...], sink: str, *, allow_fuser: bool = True
) -> Candidate:
    """Prune, then fix roles in topological order so a fix upstream is seen downstream.

    `edges` must be acyclic. A source becomes an assistant; a fuser without an assistant
    predecessor becomes one too (with `allow_fuser=False` every node does).
    """
    pruned = prune(nodes, edges, sink)
    ids = [n.id for n in pruned.nodes]
    pred = predecessor_map(ids, pruned.edges)
    role = {n.id: n.role for n in pruned.nodes}
    for node_id in topological_order(ids, pruned.edges):
        if role[node_id] == "fuser" and (
            not allow_fuser or not any(role[p] == "assistant" for p in pred[node_id])
        ):
            role[node_id] = "assistant"
    fixed = tuple(Node(id=n.id, model=n.model, role=role[n.id]) for n in pruned.nodes)
    return Candidate(nodes=fixed, edges=pruned.edges, sink=sink)
