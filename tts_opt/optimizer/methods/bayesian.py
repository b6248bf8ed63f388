"""Bayesian optimization: Optuna's TPE over edge and role bits (and each slot's model).

Edges are bits on forward pairs i < j only, with the last slot the sink, so every assignment is a
DAG without cycle skipping; roles are one bit per slot. The sampler is seeded and asked/told in
order, so a replayed archive steers it exactly as the original run did.
"""

from __future__ import annotations

import optuna

from tts_opt.graph import Node
from tts_opt.optimizer.budget import repair
from tts_opt.optimizer.context import SearchContext
from tts_opt.optimizer.distribution import slot_id
from tts_opt.optimizer.methods.base import slot_count
from tts_opt.optimizer.space import Candidate, legalize


def _candidate(ctx: SearchContext, trial: optuna.Trial, n: int) -> Candidate:
    pool = [m.name for m in ctx.space.pool]
    models = [trial.suggest_categorical(f"model_{i}", pool) for i in range(n)]
    fuser = [
        ctx.space.allow_fuser and trial.suggest_categorical(f"fuser_{i}", [False, True])
        for i in range(n)
    ]
    nodes = tuple(
        Node(id=slot_id(i), model=models[i], role="fuser" if fuser[i] else "assistant")
        for i in range(n)
    )
    edges = tuple(
        (slot_id(i), slot_id(j))
        for i in range(n)
        for j in range(i + 1, n)
        if trial.suggest_categorical(f"edge_{i}_{j}", [False, True])
    )
    return legalize(nodes, edges, slot_id(n - 1), allow_fuser=ctx.space.allow_fuser)


class BayesianOptimization:
    name = "bo"
    allow_fuser = True
    agent_name = "none"

    async def run(self, ctx: SearchContext) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=ctx.seed)
        )
        n = slot_count(ctx)
        while ctx.running:
            trial = study.ask()
            candidate = repair(ctx.space, _candidate(ctx, trial, n), ctx.repair_rule)
            record = await ctx.evaluate(candidate, "search")
            study.tell(trial, record.utility)
