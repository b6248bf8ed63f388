"""TextGrad-style baseline: the same LLM loop without the paper's insights.

Same LLM agent and feedback, but the prompt leaves the insights out, there is no Insight-1
initialisation (a seeded random multiset, no pre-tests), and a failed reply falls back on a plain
draw from the table instead of the insight rules.
"""

from __future__ import annotations

from tts_opt.optimizer.agents.llm import LLMAgent
from tts_opt.optimizer.agents.sampling import SamplingAgent
from tts_opt.optimizer.methods.agent_reinforce import AgentReinforce


def textgrad(llm: LLMAgent) -> AgentReinforce:
    """The baseline on `llm`'s chat model (its insights and fallback are replaced)."""
    agent = LLMAgent(llm.chat, SamplingAgent(), model=llm.model, insights=False)
    return AgentReinforce(agent, name="textgrad", insight_init=False, insights=False)
