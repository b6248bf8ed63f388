"""Search methods: Agent-REINFORCE, its ablations, and the paper's baselines."""

from __future__ import annotations

from collections.abc import Callable

from tts_opt.errors import UserError
from tts_opt.optimizer.agents.base import Agent
from tts_opt.optimizer.agents.llm import LLMAgent
from tts_opt.optimizer.methods.agent_reinforce import AgentReinforce
from tts_opt.optimizer.methods.base import Method
from tts_opt.optimizer.methods.bayesian import BayesianOptimization
from tts_opt.optimizer.methods.random_search import RandomSearch
from tts_opt.optimizer.methods.reinforce import Adam, Reinforce
from tts_opt.optimizer.methods.textgrad import textgrad


class MethodError(UserError, ValueError):
    """An unknown method, or one the chosen agent cannot drive."""


def _textgrad(agent: Agent) -> Method:
    if not isinstance(agent, LLMAgent):
        raise MethodError("textgrad needs an LLM: pass --agent-model (and --agent-base-url)")
    return textgrad(agent)


# The search methods by name: each builds its method from the agent (which drives the
# Agent-REINFORCE variants; TextGrad uses its chat model). A new method is one more entry.
METHOD_BUILDERS: dict[str, Callable[[Agent], Method]] = {
    "agent-reinforce": AgentReinforce,
    "agent-reinforce-no-init": lambda agent: AgentReinforce(
        agent, name="agent-reinforce-no-init", insight_init=False
    ),
    "agent-reinforce-no-fuser": lambda agent: AgentReinforce(
        agent, name="agent-reinforce-no-fuser", allow_fuser=False
    ),
    "random": lambda _agent: RandomSearch(),
    "bo": lambda _agent: BayesianOptimization(),
    "reinforce": lambda _agent: Reinforce(),
    "textgrad": _textgrad,
}
METHODS = tuple(METHOD_BUILDERS)


def build_method(name: str, agent: Agent) -> Method:
    """The method called `name`, driven by `agent`."""
    try:
        builder = METHOD_BUILDERS[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; methods: {', '.join(METHODS)}") from None
    return builder(agent)


__all__ = [
    "METHODS",
    "METHOD_BUILDERS",
    "Adam",
    "AgentReinforce",
    "BayesianOptimization",
    "Method",
    "MethodError",
    "RandomSearch",
    "Reinforce",
    "build_method",
    "textgrad",
]
