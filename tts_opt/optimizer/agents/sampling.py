"""The fallback of the insight-free LLM baseline: a draw from the current probability table.

The TextGrad-style baseline must not fall back on the rule-based agent, which would smuggle the
paper's insights in; when its LLM fails it just samples.
"""

from __future__ import annotations

import numpy as np

from tts_opt.optimizer.agents.base import MultisetChoice, MultisetRequest, Proposal, ProposalRequest
from tts_opt.optimizer.distribution import GraphDistribution
from tts_opt.optimizer.sampling import sample_graph


class SamplingAgent:
    name = "sampling"

    async def pick_multisets(self, request: MultisetRequest) -> MultisetChoice:
        rng = np.random.default_rng(request.seed)
        count = min(request.picks, len(request.multisets))
        picks = rng.choice(len(request.multisets), size=count, replace=False)
        return MultisetChoice(tuple(int(p) for p in picks), "sample", "random picks")

    async def propose(self, request: ProposalRequest) -> Proposal:
        space = request.space
        dist = GraphDistribution.uniform(
            [m.name for m in space.pool], len(request.nodes), [n.model for n in request.nodes]
        )
        dist.set_table(request.table)
        rng = np.random.default_rng(request.seed)
        sample = sample_graph(dist, rng, allow_fuser=space.allow_fuser)
        return Proposal(sample.candidate, request.table, "sample", "sampled from the table")
