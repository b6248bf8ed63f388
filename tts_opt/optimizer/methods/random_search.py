"""Random search: independent draws from the initial (sparse, uniform-model) distribution."""

from __future__ import annotations

from tts_opt.optimizer.context import SearchContext
from tts_opt.optimizer.methods.base import draw, free_distribution


class RandomSearch:
    name = "random"
    allow_fuser = True
    agent_name = "none"

    async def run(self, ctx: SearchContext) -> None:
        dist = free_distribution(ctx)
        while ctx.running:
            _, candidate = draw(ctx, dist, "random")
            await ctx.evaluate(candidate, "search")
