"""Agent-REINFORCE (arXiv 2511.00086), all four stages.

1. List the model multisets that fill the budget; the agent picks the two most promising from the
   task's preferences (Insight 1).
2. Pre-test each pick and its variants without their weakest models (parallel graph, few
   questions); the best fixes the node multiset.
3. Sample a sparse graph over those nodes, repair it to the budget, evaluate.
4. Loop: the agent reads the last graph, its scores, the probability table and the history, and
   returns the next graph and an updated table; repair, evaluate, archive.
`insight_init=False` (the ablation, and the TextGrad baseline) replaces 1-2 by a seeded random
multiset.
"""

from __future__ import annotations

from functools import partial

from tts_opt.optimizer.agents.base import (
    Agent,
    MultisetChoice,
    MultisetRequest,
    Proposal,
    ProposalRequest,
)
from tts_opt.optimizer.budget import by_strength, maximal_multisets, parallel_graph, repair
from tts_opt.optimizer.context import SearchContext
from tts_opt.optimizer.distribution import GraphDistribution
from tts_opt.optimizer.methods.base import draw

PRETEST_DROPS = 1  # variants per pick: the pick, then without its weakest model


def variants(models: tuple[str, ...], drops: int = PRETEST_DROPS) -> list[tuple[str, ...]]:
    """The multiset, then without its weakest model, and so on (models are weakest first).

    A multi-model pick keeps at least two nodes: on a few pre-test questions one lucky single
    call would otherwise fix a one-node multiset and leave the graph search nothing to search.
    """
    return [models[k:] for k in range(max(0, min(drops, len(models) - 2)) + 1)]


class AgentReinforce:
    def __init__(
        self,
        agent: Agent,
        *,
        name: str = "agent-reinforce",
        insight_init: bool = True,
        insights: bool = True,
        allow_fuser: bool = True,
    ) -> None:
        self.agent = agent
        self.name = name
        self.insight_init = insight_init
        self.insights = insights
        self.allow_fuser = allow_fuser

    @property
    def agent_name(self) -> str:
        return self.agent.name

    async def _choose_models(self, ctx: SearchContext) -> tuple[str, ...]:
        space = ctx.space
        multisets = maximal_multisets(space)
        if not self.insight_init:
            return multisets[int(ctx.rng("multiset").integers(len(multisets)))]
        request = MultisetRequest(
            space=space,
            multisets=tuple(multisets),
            costs=tuple(space.cost(parallel_graph(space, list(m))) for m in multisets),
            seed=ctx.agent_seed(),
        )
        choice, _ = await ctx.consult(
            "multisets", lambda: self.agent.pick_multisets(request), MultisetChoice
        )
        tried = list(dict.fromkeys(v for i in choice.picks for v in variants(multisets[i])))
        scored = []
        for models in tried:
            record = await ctx.evaluate(parallel_graph(space, list(models)), "pretest")
            scored.append((record.utility, len(models), models))
        return max(scored, key=lambda item: item[:2])[2]  # ties: the larger multiset

    async def run(self, ctx: SearchContext) -> None:
        space = ctx.space
        models = by_strength(space, list(await self._choose_models(ctx)))
        nodes = parallel_graph(space, models).nodes
        dist = GraphDistribution.uniform([m.name for m in space.pool], len(models), models)
        _, candidate = draw(ctx, dist, "init")
        await ctx.evaluate(candidate, "init")
        if len(models) == 1:
            return  # one node makes one graph: nothing left to search
        while ctx.running:
            request = ProposalRequest(
                space=space,
                objective=ctx.objective,
                nodes=nodes,
                sink=dist.sink,
                table=dist.table(),
                history=ctx.history(),
                seed=ctx.agent_seed(),
                insights=self.insights,
            )
            proposal, call = await ctx.consult(
                "proposal", partial(self.agent.propose, request), Proposal
            )
            dist.set_table(proposal.table)
            candidate = repair(space, proposal.candidate, ctx.repair_rule, dist.edge_prob_map())
            await ctx.evaluate(candidate, "search", agent_call=call)
