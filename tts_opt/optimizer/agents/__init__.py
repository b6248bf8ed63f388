"""Agents that propose graphs: an LLM agent and the rule-based offline default."""

from tts_opt.optimizer.agents.base import (
    Agent,
    AgentExchange,
    ChatTurn,
    HistoryItem,
    MultisetChoice,
    MultisetRequest,
    Proposal,
    ProposalRequest,
)
from tts_opt.optimizer.agents.llm import ChatFn, ChatReply, LLMAgent, openai_chat
from tts_opt.optimizer.agents.rule_based import RuleBasedAgent
from tts_opt.optimizer.agents.sampling import SamplingAgent

__all__ = [
    "Agent",
    "AgentExchange",
    "ChatFn",
    "ChatReply",
    "ChatTurn",
    "HistoryItem",
    "LLMAgent",
    "MultisetChoice",
    "MultisetRequest",
    "Proposal",
    "ProposalRequest",
    "RuleBasedAgent",
    "SamplingAgent",
    "openai_chat",
]
