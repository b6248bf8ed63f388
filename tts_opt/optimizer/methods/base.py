"""What every search method is, and the steps they share."""

from __future__ import annotations

from typing import Protocol

from tts_opt.optimizer.budget import maximal_multisets, repair
from tts_opt.optimizer.context import SearchContext
from tts_opt.optimizer.distribution import GraphDistribution
from tts_opt.optimizer.sampling import Sample, sample_graph
from tts_opt.optimizer.space import Candidate


class Method(Protocol):
    """A search method; `allow_fuser=False` restricts the space (the no-fuser ablation);
    `agent_name` names the agent that steers it ("none" for the baselines without one)."""

    name: str
    allow_fuser: bool

    @property
    def agent_name(self) -> str: ...

    async def run(self, ctx: SearchContext) -> None:
        """Evaluate graphs through `ctx` until it stops the search (SearchStopped)."""
        ...


def slot_count(ctx: SearchContext) -> int:
    """Slots of the free-model baselines: the most nodes any budget-filling multiset has."""
    return max(len(m) for m in maximal_multisets(ctx.space))


def free_distribution(ctx: SearchContext) -> GraphDistribution:
    """theta = 0, uniform roles and models over `slot_count` slots (the baselines' space)."""
    return GraphDistribution.uniform([m.name for m in ctx.space.pool], slot_count(ctx))


def draw(ctx: SearchContext, dist: GraphDistribution, purpose: str) -> tuple[Sample, Candidate]:
    """A seeded sample and its budget-repaired graph."""
    sample = sample_graph(dist, ctx.rng(purpose), allow_fuser=ctx.space.allow_fuser)
    fixed = repair(ctx.space, sample.candidate, ctx.repair_rule, dist.edge_prob_map())
    return sample, fixed
