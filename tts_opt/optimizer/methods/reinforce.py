"""GPTSwarm-style REINFORCE: gradient ascent on E[utility] with loss -log p(G) * utility.

One sampled graph per evaluation (so every method gets the same evaluation budget), the exact
gradient of log p(G) for the Bernoulli edge and categorical role/model decisions the sample
made (`GraphDistribution.log_prob_grads`), and Adam with lr 0.1 as in the paper's baseline. The
utility is that of the budget-repaired graph actually evaluated.
"""

from __future__ import annotations

import numpy as np

from tts_opt.optimizer.context import SearchContext
from tts_opt.optimizer.methods.base import draw, free_distribution


class Adam:
    """Adam for a dict of numpy arrays, maximizing (the update adds the step)."""

    def __init__(
        self, lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def ascend(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for name, g in grads.items():
            m = self.m[name] = self.beta1 * self.m.get(name, 0.0) + (1 - self.beta1) * g
            v = self.v[name] = self.beta2 * self.v.get(name, 0.0) + (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            params[name] += self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class Reinforce:
    name = "reinforce"
    allow_fuser = True
    agent_name = "none"

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr

    async def run(self, ctx: SearchContext) -> None:
        dist = free_distribution(ctx)
        adam = Adam(self.lr)
        while ctx.running:
            sample, candidate = draw(ctx, dist, "reinforce")
            record = await ctx.evaluate(candidate, "search")
            grads = dist.log_prob_grads(sample.decisions)
            scaled = {name: record.utility * g for name, g in grads.items()}
            adam.ascend({"theta": dist.theta, "pi": dist.pi, "psi": dist.psi}, scaled)
