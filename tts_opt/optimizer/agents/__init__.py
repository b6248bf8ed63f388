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
    ReplyCounts,
)
from tts_opt.optimizer.agents.chat import (
    ChatFn,
    ChatReply,
    ChatRequest,
    engine_chat,
    openai_chat,
)
from tts_opt.optimizer.agents.llm import LLMAgent
from tts_opt.optimizer.agents.reply_schema import ReplyFormat, graph_format, multiset_format
from tts_opt.optimizer.agents.rule_based import RuleBasedAgent
from tts_opt.optimizer.agents.sampling import SamplingAgent

__all__ = [
    "Agent",
    "AgentExchange",
    "ChatFn",
    "ChatReply",
    "ChatRequest",
    "ChatTurn",
    "HistoryItem",
    "LLMAgent",
    "MultisetChoice",
    "MultisetRequest",
    "Proposal",
    "ProposalRequest",
    "ReplyCounts",
    "ReplyFormat",
    "RuleBasedAgent",
    "SamplingAgent",
    "engine_chat",
    "graph_format",
    "multiset_format",
    "openai_chat",
]
