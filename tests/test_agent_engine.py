"""The LLM agent on the real embedded Qwen: structured outputs hold its reply to the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from optimizer_support import paper_space, proposal_request

from tts_opt.engines.base import Engine
from tts_opt.optimizer.agents import LLMAgent, RuleBasedAgent, engine_chat, graph_format

pytestmark = pytest.mark.engine


async def test_qwen_as_the_agent_proposes_a_graph_within_the_reply_schema(
    qwen_engine: Engine,
) -> None:
    async def engine() -> Engine:
        return qwen_engine

    request = proposal_request(paper_space(budget=18.0), history_len=2)
    agent = LLMAgent(engine_chat(engine), RuleBasedAgent(), model=qwen_engine.model, retries=0)
    proposal = await agent.propose(request)
    (exchange,) = proposal.exchanges
    jsonschema.validate(json.loads(exchange.reply), graph_format(request).schema)
    # Whatever the parser still found wrong, it was not the reply's shape.
    assert exchange.error is None or "reply format" not in exchange.error
    assert exchange.completion_tokens > 0
