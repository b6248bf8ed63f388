"""Sample once: before a search, the samples its graphs can share are drawn in full batches.

A model's source assistants (nodes that get the question alone) draw the same samples in every
graph (`tts_opt.runtime.plan`), so the most source samples of a model that any graph of the space
can use, per search question, are drawn up front by a scorer that can (`SharedSampler`); the node
cache replays them to every graph afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from tts_opt.graph import Node
from tts_opt.graph.schema import Decoding, Role, RoleTemplates
from tts_opt.optimizer.space import Candidate, SearchSpace
from tts_opt.tasks.schema import Question


@runtime_checkable
class SharedSampler(Protocol):
    """A scorer that can draw and keep source samples ahead of the graphs that use them."""

    async def presample(
        self,
        counts: Mapping[str, int],
        questions: Sequence[Question],
        templates: RoleTemplates,
        decoding: Decoding,
    ) -> int: ...


def source_counts(space: SearchSpace) -> dict[str, int]:
    """Per pool model, the most source assistants of it that a graph within the budget holds:
    alone (one call), or k of them into a sink of any pool model."""
    sink_role: Role = "fuser" if space.allow_fuser else "assistant"
    counts = {}
    for spec in space.pool:
        single = Candidate(nodes=(Node("s0", spec.name, "assistant"),), edges=(), sink="s0")
        most = 1 if space.within_budget(single) else 0
        for k in range(2, space.max_nodes):
            sources = tuple(Node(f"s{i}", spec.name, "assistant") for i in range(k))
            if not any(
                space.within_budget(
                    Candidate(
                        nodes=(*sources, Node("f", sink.name, sink_role)),
                        edges=tuple((n.id, "f") for n in sources),
                        sink="f",
                    )
                )
                for sink in space.pool
            ):
                break
            most = k
        counts[spec.name] = most
    return counts
