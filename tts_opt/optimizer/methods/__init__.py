"""Search methods: Agent-REINFORCE, its ablations, and the paper's baselines."""

from __future__ import annotations

from tts_opt.optimizer.agents.base import Agent
from tts_opt.optimizer.agents.llm import LLMAgent
from tts_opt.optimizer.methods.agent_reinforce import AgentReinforce
from tts_opt.optimizer.methods.base import Method
from tts_opt.optimizer.methods.bayesian import BayesianOptimization
from tts_opt.optimizer.methods.random_search import RandomSearch
from tts_opt.optimizer.methods.reinforce import Adam, Reinforce
from tts_opt.optimizer.methods.textgrad import textgrad

METHODS = (
    "agent-reinforce",
    "agent-reinforce-no-init",
    "agent-reinforce-no-fuser",
    "random",
    "bo",
    "reinforce",
    "textgrad",
)


def build_method(name: str, agent: Agent) -> Method:
    """The method called `name`; `agent` drives the Agent-REINFORCE variants, and TextGrad
    uses its chat model (so it must be an LLM agent)."""
    match name:
        case "agent-reinforce":
            return AgentReinforce(agent)
        case "agent-reinforce-no-init":
            return AgentReinforce(agent, name=name, insight_init=False)
        case "agent-reinforce-no-fuser":
            return AgentReinforce(agent, name=name, allow_fuser=False)
        case "random":
            return RandomSearch()
        case "bo":
            return BayesianOptimization()
        case "reinforce":
            return Reinforce()
        case "textgrad":
            if not isinstance(agent, LLMAgent):
                raise ValueError("textgrad needs an LLM: pass --agent-model (and --agent-base-url)")
            return textgrad(agent)
    raise ValueError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")


__all__ = [
    "METHODS",
    "Adam",
    "AgentReinforce",
    "BayesianOptimization",
    "Method",
    "RandomSearch",
    "Reinforce",
    "build_method",
    "textgrad",
]
