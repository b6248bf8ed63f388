"""The rules a graph artifact must satisfy before anything runs it.

`validate` checks everything and raises one GraphError naming the first problem. Checks run in
dependency order (pool, nodes, edges, topology, roles, early exit, prompts, cost) so each can rely
on the ones before it, e.g. the cost model only ever sees an acyclic graph of known models.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from tts_opt.graph.cost import (
    budget_unit_flops,
    graph_cost_units,
    graph_cost_usd,
    graph_flops,
    smallest_model,
)
from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import SCHEMA_VERSION, GraphArtifact
from tts_opt.graph.topology import (
    ancestors_of,
    predecessor_map,
    successor_map,
    topological_order,
)

MAX_CHOICE_OPTIONS = 10  # option letters A-J, as `tts_opt.tasks.extract` reads them
BUDGET_REL_TOL = 1e-9
FLOPS_REL_TOL = 1e-6

REQUIRED_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "assistant": ("{question}",),
    "assistant_with_references": ("{question}", "{references}"),
    "fuser": ("{question}", "{references}"),
    "reference": ("{answer}",),
}


def _names(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def _duplicates(items: list[str]) -> list[str]:
    return [item for item, count in Counter(items).items() if count > 1]


def _check_version(a: GraphArtifact) -> None:
    if a.schema_version != SCHEMA_VERSION:
        raise GraphError(
            f"schema version {a.schema_version} is not supported "
            f"(this tts-opt reads {SCHEMA_VERSION})"
        )


def _check_pool(a: GraphArtifact) -> None:
    if not a.models:
        raise GraphError("the model pool is empty")
    if dup := _duplicates([m.name for m in a.models]):
        raise GraphError(f"duplicate model names in the pool: {_names(dup)}")
    for m in a.models:
        if not (m.params > 0 and m.layers >= 1 and m.hidden >= 1):
            raise GraphError(
                f"model {m.name!r} needs params > 0, layers >= 1 and hidden >= 1 "
                f"(got {m.params}, {m.layers}, {m.hidden})"
            )
        for price in (m.usd_per_input_token, m.usd_per_output_token):
            if price is not None and not price >= 0:
                raise GraphError(f"model {m.name!r} has a negative or NaN price {price}")


def _check_nodes(a: GraphArtifact) -> None:
    if not a.nodes:
        raise GraphError("the graph is empty: it has no nodes")
    if dup := _duplicates([n.id for n in a.nodes]):
        raise GraphError(f"duplicate node ids: {_names(dup)}")
    pool = {m.name for m in a.models}
    for n in a.nodes:
        if n.model not in pool:
            raise GraphError(
                f"node {n.id!r} uses unknown model {n.model!r} (pool: {_names(sorted(pool))})"
            )


def _check_edges(a: GraphArtifact) -> None:
    ids = {n.id for n in a.nodes}
    seen: set[tuple[str, str]] = set()
    for src, dst in a.edges:
        for end in (src, dst):
            if end not in ids:
                raise GraphError(f"edge {src!r} -> {dst!r} names unknown node {end!r}")
        if src == dst:
            raise GraphError(f"self loop on node {src!r}")
        if (src, dst) in seen:
            raise GraphError(f"duplicate edge {src!r} -> {dst!r}")
        seen.add((src, dst))


def _check_topology(a: GraphArtifact) -> None:
    ids = [n.id for n in a.nodes]
    if a.sink not in ids:
        raise GraphError(f"sink {a.sink!r} is not a node (nodes: {_names(ids)})")
    topological_order(ids, a.edges)  # raises on a cycle, naming it
    succ = successor_map(ids, a.edges)
    if succ[a.sink]:
        raise GraphError(
            f"sink {a.sink!r} has successors {_names(succ[a.sink])}; its output is the answer, "
            "so it must come last"
        )
    # In a DAG every node reaches a node without successors, so a node that cannot reach the
    # sink exists exactly when some other node has no successors: report both facts together.
    extra = [n for n in ids if not succ[n] and n != a.sink]
    if extra:
        active = ancestors_of(a.sink, ids, a.edges)
        dangling = [n for n in ids if n not in active]
        raise GraphError(
            f"{len(extra) + 1} sinks (nodes without successors): {_names([a.sink, *extra])}; "
            f"only the declared sink {a.sink!r} may have none. Dangling nodes (no path to the "
            f"sink, they would never run): {_names(dangling)}"
        )


def _check_roles(a: GraphArtifact) -> None:
    pred = predecessor_map([n.id for n in a.nodes], a.edges)
    role = {n.id: n.role for n in a.nodes}
    for n in a.nodes:
        if not pred[n.id] and n.role != "assistant":
            raise GraphError(
                f"source node {n.id!r} (no predecessors) is a {n.role}; sources must be assistants"
            )
        if n.role == "fuser" and not any(role[p] == "assistant" for p in pred[n.id]):
            raise GraphError(
                f"fuser node {n.id!r} needs at least one assistant predecessor "
                f"(has: {_names(pred[n.id])}, all fusers)"
            )


def _check_early_exit(a: GraphArtifact) -> None:
    rule = a.early_exit
    if rule is None:
        return
    sink = next(n for n in a.nodes if n.id == a.sink)
    if sink.role != "fuser":
        raise GraphError(
            f"early exit needs a fuser sink to skip; sink {a.sink!r} is an {sink.role}"
        )
    inputs = predecessor_map([n.id for n in a.nodes], a.edges)[a.sink]
    if not 2 <= rule.quorum <= len(inputs):
        raise GraphError(
            f"early exit quorum must be between 2 and the sink's {len(inputs)} inputs, "
            f"got {rule.quorum}"
        )
    answer = rule.answer
    if answer.kind == "regex":
        if not answer.pattern:
            raise GraphError("early exit answer kind 'regex' needs a pattern")
        try:
            re.compile(answer.pattern)
        except re.error as exc:
            raise GraphError(
                f"early exit answer pattern {answer.pattern!r} is not a regular expression: {exc}"
            ) from None
    elif answer.pattern:
        raise GraphError(
            f"early exit answer pattern is only read by kind 'regex', not {answer.kind!r}"
        )
    if answer.kind == "choice" and not 2 <= answer.options <= MAX_CHOICE_OPTIONS:
        raise GraphError(
            f"early exit answer options must be between 2 and {MAX_CHOICE_OPTIONS}, "
            f"got {answer.options}"
        )


def _check_settings(a: GraphArtifact) -> None:
    for field, placeholders in REQUIRED_PLACEHOLDERS.items():
        text: str = getattr(a.templates, field)
        for placeholder in placeholders:
            if placeholder not in text:
                raise GraphError(f"template {field!r} lacks the placeholder {placeholder}")
    d = a.decoding
    if d.max_tokens < 1:
        raise GraphError(f"decoding max_tokens must be >= 1, got {d.max_tokens}")
    if not d.temperature >= 0:
        raise GraphError(f"decoding temperature must be >= 0, got {d.temperature}")
    if not 0 < d.top_p <= 1:
        raise GraphError(f"decoding top_p must be in (0, 1], got {d.top_p}")
    lengths = a.task_lengths
    if not (lengths.prompt_tokens > 0 and lengths.output_tokens > 0):
        raise GraphError(
            f"task lengths must be positive, got prompt_tokens={lengths.prompt_tokens}, "
            f"output_tokens={lengths.output_tokens}"
        )
    if not (a.budget.value > 0 and math.isfinite(a.budget.value)):
        raise GraphError(f"budget value must be a positive number, got {a.budget.value}")


def _check_cost(a: GraphArtifact) -> None:
    limit = a.budget.value * (1 + BUDGET_REL_TOL)
    if a.budget.unit == "usd":
        usd = graph_cost_usd(a)  # raises when a used model has no prices
        if usd > limit:
            raise GraphError(
                f"over budget: the graph costs ${usd:.6g} per query, "
                f"the budget is ${a.budget.value:.6g}"
            )
    else:
        units = graph_cost_units(a)
        if units > limit:
            unit = budget_unit_flops(a.models, a.task_lengths)
            raise GraphError(
                f"over budget: the graph costs {units:.6g} units, the budget is "
                f"{a.budget.value:.6g} units (1 unit = {unit:.4g} FLOPs, one d=0 call of "
                f"{smallest_model(a.models).name!r})"
            )
    if a.flops is not None:
        computed = graph_flops(a)
        if not math.isclose(a.flops, computed, rel_tol=FLOPS_REL_TOL):
            raise GraphError(
                f"stored flops {a.flops:.6g} do not match the computed cost {computed:.6g}"
            )


def validate(artifact: GraphArtifact) -> None:
    """Raise GraphError naming the first rule `artifact` breaks; return None if it is sound."""
    for check in (
        _check_version,
        _check_pool,
        _check_nodes,
        _check_edges,
        _check_topology,
        _check_roles,
        _check_early_exit,
        _check_settings,
        _check_cost,
    ):
        check(artifact)
