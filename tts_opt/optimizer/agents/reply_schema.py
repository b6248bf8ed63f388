"""JSON schemas of the agent's replies, built from each request, for structured outputs.

Sent as an OpenAI `response_format` (or vLLM's in-process structured outputs), they make guided
decoding (xgrammar) emit only replies of the right shape: the request's node ids with their fixed
models, legal edges among them, the fixed sink, a probability in [0, 1] for every legal edge, and
multiset picks among the listed indices. A small model then always returns a parseable graph and
table. What a schema cannot say (a DAG, legal roles, the budget, distinct picks) the reply parser
still checks (`tts_opt.optimizer.agents.llm`). Every property is required and no other is
allowed, as OpenAI's strict mode demands.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tts_opt.optimizer.agents.base import MultisetRequest, ProposalRequest
from tts_opt.optimizer.distribution import edge_key

RATIONALE_CHARS = 300  # one sentence; also bounds how long a small model can ramble

Schema = dict[str, Any]


class ReplyFormat(msgspec.Struct, frozen=True):
    """A reply's JSON schema and the name it goes by in `response_format`."""

    name: str
    schema: Schema


def _object(properties: Schema) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _rationale() -> Schema:
    return {"type": "string", "maxLength": RATIONALE_CHARS}


def legal_edges(request: ProposalRequest) -> list[tuple[str, str]]:
    """Every edge a graph of the request may hold: between two distinct nodes, not out of the
    sink."""
    ids = [n.id for n in request.nodes]
    return [(a, b) for a in ids for b in ids if a != b and a != request.sink]


def graph_format(request: ProposalRequest) -> ReplyFormat:
    """The schema of a graph proposal with its updated probability table."""
    roles = ["assistant", "fuser"] if request.space.allow_fuser else ["assistant"]
    node_items = [
        _object({"id": {"const": n.id}, "model": {"enum": [n.model]}, "role": {"enum": roles}})
        for n in request.nodes
    ]
    edges = legal_edges(request)
    count = len(request.nodes)
    schema = _object(
        {
            "nodes": {
                "type": "array",
                "items": {"anyOf": node_items},
                "minItems": 1,
                "maxItems": count,
            },
            "edges": {
                "type": "array",
                "items": {"enum": [list(e) for e in edges]},
                "maxItems": count * (count - 1) // 2,
            },
            "sink": {"const": request.sink},
            "probabilities": _object(
                {
                    edge_key(a, b): {"type": "number", "minimum": 0.0, "maximum": 1.0}
                    for a, b in edges
                }
            ),
            "rationale": _rationale(),
        }
    )
    return ReplyFormat("graph_proposal", schema)


def multiset_format(request: MultisetRequest) -> ReplyFormat:
    """The schema of a multiset pick: `picks` indices of the listed multisets."""
    wanted = min(request.picks, len(request.multisets))
    schema = _object(
        {
            "picks": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": len(request.multisets) - 1},
                "minItems": wanted,
                "maxItems": wanted,
            },
            "rationale": _rationale(),
        }
    )
    return ReplyFormat("multiset_picks", schema)
