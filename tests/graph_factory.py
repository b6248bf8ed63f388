"""Builds small artifacts for tests without going through JSON."""

from __future__ import annotations

from collections.abc import Sequence

from tts_opt.graph import (
    KNOWN_MODELS,
    PAPER_TASK_LENGTHS,
    SCHEMA_VERSION,
    Budget,
    GraphArtifact,
    ModelSpec,
    Node,
    RoleTemplates,
    TaskLengths,
)

PAPER_POOL: tuple[ModelSpec, ...] = tuple(KNOWN_MODELS.values())
DEFAULT_TEMPLATES = RoleTemplates()

# Two 1B assistants feed a 3B fuser: the smallest useful parallel graph.
FAN_IN_NODES = (
    ("a", "llama-3.2-1b", "assistant"),
    ("b", "llama-3.2-1b", "assistant"),
    ("f", "llama-3.2-3b", "fuser"),
)
FAN_IN_EDGES = (("a", "f"), ("b", "f"))


def make_artifact(
    nodes: Sequence[tuple[str, str, str]] = FAN_IN_NODES,
    edges: Sequence[tuple[str, str]] = FAN_IN_EDGES,
    sink: str = "f",
    budget: float = 100.0,
    unit: str = "flops",
    models: Sequence[ModelSpec] = PAPER_POOL,
    lengths: TaskLengths = PAPER_TASK_LENGTHS["math"],
    templates: RoleTemplates = DEFAULT_TEMPLATES,
    schema_version: int = SCHEMA_VERSION,
    **fields: object,
) -> GraphArtifact:
    """An artifact from (id, model, role) triples and edge pairs; extra `fields` pass through."""
    return GraphArtifact(
        schema_version=schema_version,
        task="math",
        budget=Budget(value=budget, unit=unit),  # type: ignore[arg-type]
        task_lengths=lengths,
        models=tuple(models),
        nodes=tuple(Node(id=i, model=m, role=r) for i, m, r in nodes),  # type: ignore[arg-type]
        edges=tuple(edges),
        sink=sink,
        templates=templates,
        **fields,  # type: ignore[arg-type]
    )
