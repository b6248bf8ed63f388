"""Agents: the LLM agent with scripted replies (retry, repair, fallback, kept exchanges) and the
rule-based agent's legal proposals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from optimizer_support import fast_settings, paper_space, synthetic_task

from tts_opt.optimizer import Objective, SyntheticScorer, optimize
from tts_opt.optimizer.agents import (
    ChatReply,
    ChatTurn,
    HistoryItem,
    LLMAgent,
    MultisetRequest,
    ProposalRequest,
    RuleBasedAgent,
    SamplingAgent,
)
from tts_opt.optimizer.budget import maximal_multisets, parallel_graph
from tts_opt.optimizer.distribution import GraphDistribution
from tts_opt.optimizer.objective import Measurement

SPACE = paper_space(budget=18.0)
MODELS = ["llama-3.2-1b", "llama-3.2-1b", "llama-3.2-3b", "llama-3.2-3b"]
NODES = parallel_graph(SPACE, MODELS).nodes  # n0, n1: 1B; n2, n3: 3B; n3 the sink (fuser)


def measurement(accuracy: float) -> Measurement:
    return Measurement(accuracy, 20, 0.0, 1.0, 1.0, 1.3, 1e12)


def request(history_len: int = 1, seed: int = 0) -> ProposalRequest:
    graphs = [parallel_graph(SPACE, MODELS[k:]) for k in range(history_len)]
    history = tuple(
        HistoryItem(i, g, measurement(0.5 + 0.05 * i), SPACE.cost(g), 0.5 + 0.05 * i)
        for i, g in enumerate(graphs)
    )
    dist = GraphDistribution.uniform([m.name for m in SPACE.pool], 4, MODELS)
    return ProposalRequest(
        space=SPACE,
        objective=Objective(),
        nodes=NODES,
        sink="n3",
        table=dist.table(),
        history=history,
        seed=seed,
    )


def graph_reply(edges, nodes=None, sink="n3", probabilities=None) -> str:
    nodes = nodes or [{"id": n.id, "model": n.model, "role": n.role} for n in NODES]
    return json.dumps(
        {
            "nodes": nodes,
            "edges": edges,
            "sink": sink,
            "probabilities": probabilities or {"n0->n3": 0.9},
            "rationale": "try it",
        }
    )


class ScriptedChat:
    """Plays replies in order and records the conversations it was sent."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.calls: list[list[ChatTurn]] = []

    async def __call__(self, messages: Sequence[ChatTurn]) -> ChatReply:
        self.calls.append(list(messages))
        return ChatReply(self.replies.pop(0), prompt_tokens=100, completion_tokens=20)


def agent(chat: ScriptedChat, insights: bool = True) -> LLMAgent:
    return LLMAgent(chat, RuleBasedAgent(), model="scripted", insights=insights, retries=2)


GOOD = graph_reply([["n0", "n3"], ["n2", "n3"]])
CYCLE = graph_reply([["n0", "n2"], ["n2", "n0"], ["n2", "n3"]])
DENSE = graph_reply([[a, b] for a in ("n0", "n1", "n2") for b in ("n1", "n2", "n3") if a < b])
UNKNOWN = graph_reply(
    [["n9", "n3"]],
    nodes=[
        {"id": "n9", "model": "llama-3.2-1b", "role": "assistant"},
        {"id": "n3", "model": "llama-3.2-3b", "role": "fuser"},
    ],
)


def run(coro):
    return asyncio.run(coro)


def test_good_reply_is_taken_with_its_table() -> None:
    chat = ScriptedChat([GOOD])
    proposal = run(agent(chat).propose(request()))
    assert proposal.source == "llm"
    assert set(proposal.candidate.edges) == {("n0", "n3"), ("n2", "n3")}
    assert proposal.table.edges["n0->n3"] == 0.9
    assert len(proposal.exchanges) == 1 and proposal.exchanges[0].error is None
    SPACE.check(proposal.candidate)
    prompt = chat.calls[0][0].content + chat.calls[0][1].content
    assert "Insights from experiments" in prompt and "Edge probabilities" in prompt


def test_reply_wrapped_in_prose_and_fences_is_accepted() -> None:
    chat = ScriptedChat([f"Here you go:\n```json\n{GOOD}\n```"])
    assert run(agent(chat).propose(request())).source == "llm"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("this is not json", "no JSON object"),
        ('{"nodes": 3}', "does not match the reply format"),
        (CYCLE, "cycle"),
        (UNKNOWN, "unknown node 'n9'"),
        (graph_reply([["n0", "n3"]], sink="n0"), "the sink must be 'n3'"),
        (graph_reply([["n0", "n3"]], probabilities={"n0->n3": 1.5}), "not in [0, 1]"),
    ],
)
def test_invalid_reply_is_retried_with_the_error(bad: str, error: str) -> None:
    chat = ScriptedChat([bad, GOOD])
    proposal = run(agent(chat).propose(request()))
    assert proposal.source == "llm"
    assert [e.error is None for e in proposal.exchanges] == [False, True]
    assert error in proposal.exchanges[0].error
    assert error in chat.calls[1][-1].content  # the retry told the model what was wrong


def test_persistently_invalid_replies_fall_back_to_the_rule_based_agent() -> None:
    chat = ScriptedChat([UNKNOWN, CYCLE, "nope"])
    proposal = run(agent(chat).propose(request()))
    assert proposal.source == "fallback"
    assert len(proposal.exchanges) == 3 and all(e.error for e in proposal.exchanges)
    SPACE.check(proposal.candidate)


def test_over_budget_reply_is_retried_then_repaired() -> None:
    small = paper_space(budget=9.0)
    req = replace(request(), space=small)
    chat = ScriptedChat([DENSE, DENSE, DENSE])
    proposal = run(agent(chat).propose(req))
    assert all("over budget" in e.error for e in proposal.exchanges)
    assert proposal.source == "repaired"
    small.check(proposal.candidate)


def test_llm_picks_multisets_or_falls_back() -> None:
    multisets = tuple(maximal_multisets(SPACE))
    req = MultisetRequest(SPACE, multisets, tuple(1.0 for _ in multisets), seed=0)
    choice = run(agent(ScriptedChat(['{"picks": [1, 0]}'])).pick_multisets(req))
    assert choice.picks == (1, 0) and choice.source == "llm"
    choice = run(agent(ScriptedChat(['{"picks": [99]}'] * 3)).pick_multisets(req))
    assert choice.source == "fallback" and len(choice.exchanges) == 3


def test_prompt_without_insights_for_the_textgrad_baseline() -> None:
    chat = ScriptedChat([GOOD])
    run(LLMAgent(chat, SamplingAgent(), model="m", insights=False).propose(request()))
    assert "Insights" not in chat.calls[0][0].content


def test_latency_objective_adds_latency_to_the_prompt() -> None:
    chat = ScriptedChat([GOOD])
    req = replace(request(), objective=Objective(kind="accuracy-latency", latency_limit_s=5))
    run(agent(chat).propose(req))
    prompt = chat.calls[0][1].content
    assert "p50 latency" in prompt and "Latency guidance" in prompt


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 4), seed=st.integers(0, 1000))
def test_rule_based_proposals_are_legal(length: int, seed: int) -> None:
    proposal = run(RuleBasedAgent().propose(request(length, seed)))
    SPACE.check(proposal.candidate)
    assert all(0 <= p <= 1 for p in proposal.table.edges.values())


def test_rule_based_picks_follow_insight_one() -> None:
    space = paper_space(budget=9.0)
    multisets = tuple(maximal_multisets(space))
    req = MultisetRequest(space, multisets, tuple(1.0 for _ in multisets), seed=0)
    math_pick = multisets[run(RuleBasedAgent().pick_multisets(req)).picks[0]]
    assert math_pick.count("llama-3.2-3b") >= 2  # several mid-size models on MATH
    mmlu = replace(req, space=replace(space, task="mmlu"))
    assert multisets[run(RuleBasedAgent().pick_multisets(mmlu)).picks[0]] == ("llama-3.1-8b",)


def test_exchanges_are_archived_by_a_search(tmp_path) -> None:
    replies = ['{"picks": [0, 1]}'] + ["not json"] * 100
    chat = ScriptedChat(replies)
    llm = LLMAgent(chat, RuleBasedAgent(), model="scripted", retries=1)
    result = run(
        optimize(
            synthetic_task(),
            SPACE,
            fast_settings(iterations=8),
            SyntheticScorer(),
            tmp_path / "a.jsonl",
            agent=llm,
        )
    )
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    agent_records = [r for r in lines if r["type"] == "agent"]
    assert agent_records[0]["payload"]["source"] == "llm"
    proposals = [r["payload"] for r in agent_records if r["kind"] == "proposal"]
    assert proposals and all(p["source"] == "fallback" for p in proposals)
    assert all(len(p["exchanges"]) == 2 for p in proposals)
    assert proposals[0]["exchanges"][0]["messages"][1]["content"].startswith("Task: math")
    assert result.tokens > 0


def test_an_unmeasured_latency_counts_for_accuracy_but_cannot_be_ranked_on_latency() -> None:
    replayed = replace(measurement(0.5), latency_p50_s=None, latency_p95_s=None)
    assert Objective().utility(replayed) == 0.5
    assert Objective(kind="accuracy-latency").utility(measurement(0.5)) == pytest.approx(0.49)
    with pytest.raises(ValueError, match="needs a measured latency"):
        Objective(kind="accuracy-latency").utility(replayed)
