"""The compute cost model (FLOPs of prefill and decode per node), exactly as the reference
implementation of Agent-REINFORCE (arXiv 2511.00086) computes it.

A node with in-degree d reads the task prompt plus one predecessor answer per incoming edge
(Np = A + d*B) and writes one answer (Nd = B). Costs are in raw FLOPs, in budget units (one d=0
call of the smallest pool model on the task) or in dollars.
"""

from __future__ import annotations

from collections.abc import Sequence

from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import GraphArtifact, ModelSpec, TaskLengths
from tts_opt.graph.topology import active_nodes, predecessors


def node_flops_measured(spec: ModelSpec, prompt_tokens: float, output_tokens: float) -> float:
    """FLOPs of one call that reads `prompt_tokens` (Np) and writes `output_tokens` (Nd)."""
    m, ld = spec.params, spec.layers * spec.hidden
    np_, nd = prompt_tokens, output_tokens
    prefill = 2 * m * np_ + 2 * ld * np_ * (np_ + 1)
    decode = 2 * m * nd + 2 * ld * nd * (2 * np_ + nd + 1)
    return prefill + decode


def node_flops(
    spec: ModelSpec, prompt_tokens: float, output_tokens: float, in_degree: int
) -> float:
    """Expected FLOPs of a node with `in_degree` predecessors on a task with lengths (A, B)."""
    return node_flops_measured(spec, prompt_tokens + in_degree * output_tokens, output_tokens)


def _active_in_degrees(artifact: GraphArtifact) -> dict[str, int]:
    """In-degree of each running node, counting only running predecessors."""
    active = active_nodes(artifact)
    running = set(active)
    pred = predecessors(artifact)
    return {n: sum(p in running for p in pred[n]) for n in active}


def _node_specs(artifact: GraphArtifact) -> dict[str, ModelSpec]:
    pool = {m.name: m for m in artifact.models}
    return {n.id: pool[n.model] for n in artifact.nodes}


def graph_flops(artifact: GraphArtifact) -> float:
    """Raw FLOPs of one run of the graph: the sum over the nodes that run."""
    specs = _node_specs(artifact)
    a, b = artifact.task_lengths.prompt_tokens, artifact.task_lengths.output_tokens
    return sum(node_flops(specs[n], a, b, d) for n, d in _active_in_degrees(artifact).items())


def smallest_model(models: Sequence[ModelSpec]) -> ModelSpec:
    """The pool model that defines the budget unit (fewest parameters, first on ties)."""
    if not models:
        raise GraphError("the model pool is empty")
    return min(models, key=lambda m: m.params)


def budget_unit_flops(models: Sequence[ModelSpec], lengths: TaskLengths) -> float:
    """FLOPs of one budget unit: a d=0 call of the smallest pool model on the task."""
    return node_flops(smallest_model(models), lengths.prompt_tokens, lengths.output_tokens, 0)


def graph_cost_units(artifact: GraphArtifact) -> float:
    """Graph cost in budget units (the unit the paper quotes its budgets in)."""
    return graph_flops(artifact) / budget_unit_flops(artifact.models, artifact.task_lengths)


def graph_cost_usd(artifact: GraphArtifact) -> float:
    """Dollars per query: per running node, input price * Np + output price * Nd."""
    specs = _node_specs(artifact)
    a, b = artifact.task_lengths.prompt_tokens, artifact.task_lengths.output_tokens
    total = 0.0
    for node, d in _active_in_degrees(artifact).items():
        spec = specs[node]
        if spec.usd_per_input_token is None or spec.usd_per_output_token is None:
            raise GraphError(
                f"a usd cost needs usd_per_input_token and usd_per_output_token "
                f"for model {spec.name!r} (used by node {node!r})"
            )
        total += spec.usd_per_input_token * (a + d * b) + spec.usd_per_output_token * b
    return total


def reference_graph_budget(
    small_spec: ModelSpec, sink_spec: ModelSpec, lengths: TaskLengths, n_nodes: int
) -> float:
    """Cost in units of the paper's reference graph, which defines its budget values.

    `n_nodes` small nodes fully connected forward (node i feeds every later node, so its
    in-degree is i) all feed the sink (in-degree `n_nodes`); the unit is a d=0 small call.
    """
    if n_nodes < 0:
        raise GraphError(f"reference graph needs n_nodes >= 0, got {n_nodes}")
    a, b = lengths.prompt_tokens, lengths.output_tokens
    flops = sum(node_flops(small_spec, a, b, i) for i in range(n_nodes))
    flops += node_flops(sink_spec, a, b, n_nodes)
    return flops / node_flops(small_spec, a, b, 0)


def cost_in_budget_unit(artifact: GraphArtifact) -> float:
    """Graph cost in the unit of its budget: budget units for `flops`, dollars for `usd`."""
    if artifact.budget.unit == "usd":
        return graph_cost_usd(artifact)
    return graph_cost_units(artifact)
