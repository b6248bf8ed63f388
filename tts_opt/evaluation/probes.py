"""Fixed-topology probe graphs for the paper's pilot questions (does width help, does depth help,
which model mix) on any task and pool: one model alone, k parallel assistants into a fuser, and a
chain of k assistants each refining the previous answer.

Probes use the task's role templates. Their budget is their own cost (a probe is not searched);
the task lengths (A, B) behind that cost are `task_lengths`'s (the paper's, else an estimate from
the task's data): the budget of a probe is bookkeeping, the report measures the real tokens and
FLOPs of every run.

Probe specs (the CLI's `--graph`), MODELS being a comma list where `MODEL*K` repeats a model:

    single:MODEL              one assistant
    parallel:MODELS:FUSER     the MODELS as parallel assistants, all feeding a FUSER fuser
    chain:MODELS              the MODELS as a chain of assistants, in order; the last answers
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import msgspec

from tts_opt import __version__
from tts_opt.engines.specs import model_spec
from tts_opt.graph.cost import graph_cost_units, graph_flops
from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import (
    SCHEMA_VERSION,
    Budget,
    Decoding,
    GraphArtifact,
    ModelSpec,
    Node,
    Provenance,
)
from tts_opt.graph.validate import validate
from tts_opt.tasks.lengths import task_lengths
from tts_opt.tasks.task import Task

PROBE_KINDS = ("single", "parallel", "chain")
PROBE_SYNTAX = "single:MODEL | parallel:MODELS:FUSER | chain:MODELS (MODELS: M1,M2*3,...)"
# Seeded, so that a probe's samples are reproducible and cacheable (see evaluation.cache).
PROBE_DECODING = Decoding(seed=0)

SpecResolver = Callable[[str], ModelSpec]


def single_model_graph(
    task: Task, model: ModelSpec, *, decoding: Decoding = PROBE_DECODING
) -> GraphArtifact:
    """One assistant: the single-model baseline."""
    return _probe(task, [Node("a", model.name, "assistant")], [], [model], decoding, "single")


def parallel_graph(
    task: Task,
    assistants: Sequence[ModelSpec],
    fuser: ModelSpec,
    *,
    decoding: Decoding = PROBE_DECODING,
) -> GraphArtifact:
    """`assistants` answering independently, a `fuser` consolidating them (width)."""
    nodes = [Node(f"a{i}", m.name, "assistant") for i, m in enumerate(assistants, start=1)]
    edges = [(n.id, "fuser") for n in nodes]
    nodes.append(Node("fuser", fuser.name, "fuser"))
    return _probe(task, nodes, edges, [*assistants, fuser], decoding, "parallel")


def chain_graph(
    task: Task, models: Sequence[ModelSpec], *, decoding: Decoding = PROBE_DECODING
) -> GraphArtifact:
    """Assistants in a chain, each seeing the previous answer (depth)."""
    nodes = [Node(f"a{i}", m.name, "assistant") for i, m in enumerate(models, start=1)]
    edges = [(a.id, b.id) for a, b in pairwise(nodes)]
    return _probe(task, nodes, edges, models, decoding, "chain")


def is_probe(spec: str) -> bool:
    return spec.partition(":")[0] in PROBE_KINDS and ":" in spec


def probe_graph(
    spec: str,
    task: Task,
    spec_of: SpecResolver = model_spec,
    *,
    decoding: Decoding = PROBE_DECODING,
) -> GraphArtifact:
    """The probe graph `spec` describes (see the module docstring) on `task`; `spec_of`
    gives the spec of a model name."""
    kind, _, rest = spec.partition(":")
    if kind == "single" and rest and "," not in rest and "*" not in rest:
        return single_model_graph(task, spec_of(rest), decoding=decoding)
    assistants, _, fuser = rest.rpartition(":")
    if kind == "parallel" and assistants and fuser:
        specs = [spec_of(m) for m in _model_list(assistants, spec)]
        return parallel_graph(task, specs, spec_of(fuser), decoding=decoding)
    if kind == "chain" and rest:
        return chain_graph(task, [spec_of(m) for m in _model_list(rest, spec)], decoding=decoding)
    raise GraphError(f"bad probe {spec!r}; probes: {PROBE_SYNTAX}")


def _model_list(text: str, spec: str) -> list[str]:
    models: list[str] = []
    for item in text.split(","):
        name, star, count = item.strip().partition("*")
        if not name or (star and not (count.isdigit() and int(count) >= 1)):
            raise GraphError(f"bad model {item!r} in probe {spec!r}; probes: {PROBE_SYNTAX}")
        models.extend([name] * (int(count) if star else 1))
    return models


def _probe(
    task: Task,
    nodes: list[Node],
    edges: list[tuple[str, str]],
    specs: Sequence[ModelSpec],
    decoding: Decoding,
    kind: str,
) -> GraphArtifact:
    pool = tuple({s.name: s for s in specs}.values())
    draft = GraphArtifact(
        schema_version=SCHEMA_VERSION,
        task=task.name,
        budget=Budget(value=1.0),
        task_lengths=task_lengths(task),
        models=pool,
        nodes=tuple(nodes),
        edges=tuple(edges),
        sink=nodes[-1].id,
        templates=task.templates,
        decoding=decoding,
        provenance=Provenance(
            method="probe",
            dataset_hashes={task.name: task.data_sha256},
            tool_version=__version__,
        ),
        description=f"probe {kind}: " + ", ".join(f"{n.id}={n.model}" for n in nodes),
    )
    artifact = msgspec.structs.replace(
        draft, budget=Budget(value=graph_cost_units(draft)), flops=graph_flops(draft)
    )
    validate(artifact)
    return artifact
