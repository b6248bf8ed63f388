"""Agents: the LLM agent with scripted replies (retry, repair, fallback, kept exchanges) and the
rule-based agent's legal proposals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import SimpleNamespace

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from optimizer_support import (
    PROPOSAL_MODELS,
    fast_settings,
    measurement,
    paper_space,
    proposal_request,
    synthetic_task,
)

from tts_opt.engines.pool import EnginePool
from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.optimizer import Objective, SyntheticScorer, optimize
from tts_opt.optimizer.agents import (
    ChatReply,
    ChatRequest,
    ChatTurn,
    LLMAgent,
    MultisetRequest,
    ProposalRequest,
    ReplyCounts,
    ReplyFormat,
    RuleBasedAgent,
    SamplingAgent,
    graph_format,
    multiset_format,
)
from tts_opt.optimizer.agents.llm import InvalidReply, graph_from_reply
from tts_opt.optimizer.agents.reply_schema import legal_edges
from tts_opt.optimizer.budget import maximal_multisets, parallel_graph
from tts_opt.optimizer.distribution import ProbabilityTable, edge_key
from tts_opt.optimizer.report import run_report
from tts_opt.optimizer.service import SearchRequest, make_agent
from tts_opt.optimizer.space import Candidate

SPACE = paper_space(budget=18.0)
MODELS = PROPOSAL_MODELS
NODES = parallel_graph(SPACE, MODELS).nodes  # n0, n1: 1B; n2, n3: 3B; n3 the sink (fuser)


def request(history_len: int = 1, seed: int = 0) -> ProposalRequest:
    return proposal_request(SPACE, history_len, seed)


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
    """A chat model test double: plays replies in order and records the requests it was sent
    (`calls`: their conversations)."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    @property
    def calls(self) -> list[list[ChatTurn]]:
        return [list(r.messages) for r in self.requests]

    async def __call__(self, request: ChatRequest) -> ChatReply:
        self.requests.append(request)
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
    counts = ReplyCounts(valid=1, fallback=len(proposals), invalid_replies=2 * len(proposals))
    assert result.agent_replies == counts
    assert f"- agent replies: {counts.decisions} decisions: 1 valid as returned" in run_report(
        result
    )
    rule_based = run(
        optimize(
            synthetic_task(),
            SPACE,
            fast_settings(iterations=8),
            SyntheticScorer(),
            tmp_path / "b.jsonl",
        )
    )
    assert rule_based.agent_replies == ReplyCounts()
    assert "agent replies" not in run_report(rule_based)


def test_an_unmeasured_latency_counts_for_accuracy_but_cannot_be_ranked_on_latency() -> None:
    replayed = replace(measurement(0.5), latency_p50_s=None, latency_p95_s=None)
    assert Objective().utility(replayed) == 0.5
    assert Objective(kind="accuracy-latency").utility(measurement(0.5)) == pytest.approx(0.49)
    with pytest.raises(ValueError, match="needs a measured latency"):
        Objective(kind="accuracy-latency").utility(replayed)


# Structured outputs: the reply schemas, what each call sends, and how replies are counted.


def schema_errors(reply_format: ReplyFormat, reply: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(reply_format.schema)
    return [error.message for error in validator.iter_errors(reply)]


def full_reply(req: ProposalRequest, candidate: Candidate, table: ProbabilityTable) -> dict:
    """A graph reply as the schema asks for it: a probability for every legal edge."""
    return {
        "nodes": [{"id": n.id, "model": n.model, "role": n.role} for n in candidate.nodes],
        "edges": [list(e) for e in candidate.edges],
        "sink": candidate.sink,
        "probabilities": {
            edge_key(a, b): table.edges.get(edge_key(a, b), 0.5) for a, b in legal_edges(req)
        },
        "rationale": "one sentence",
    }


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 4), seed=st.integers(0, 1000))
def test_the_schema_accepts_every_legal_graph_and_the_parser_takes_it(
    length: int, seed: int
) -> None:
    req = request(length, seed)
    proposal = run(RuleBasedAgent().propose(req))
    reply = full_reply(req, proposal.candidate, proposal.table)
    assert schema_errors(graph_format(req), reply) == []
    candidate, table = graph_from_reply(req, json.dumps(reply))
    assert candidate.key() == proposal.candidate.key()
    assert table.edges == {**req.table.edges, **reply["probabilities"]}


PAIRS = legal_edges(request())
LEGAL = [edge_key(a, b) for a, b in PAIRS]
NODE_REPLIES = [{"id": n.id, "model": n.model, "role": n.role} for n in NODES]
OUT_OF_RANGE = st.one_of(st.floats(-5, -0.01), st.floats(1.01, 5))
# Ways a reply can break the schema; the parser must reject each. (Leaving out table entries
# or the rationale breaks it too, but the parser lets them keep their defaults, for endpoints
# without structured outputs. A repeated node or edge the schema cannot forbid; the parser
# rejects it.)
MUTATIONS = {
    "unknown node": lambda r, draw: r["nodes"].append({**NODE_REPLIES[0], "id": "n9"}),
    "other model": lambda r, draw: r["nodes"].__setitem__(0, {**r["nodes"][0], "model": "gpt-4o"}),
    "other sink": lambda r, draw: r.__setitem__("sink", draw(st.sampled_from(["n0", "n9"]))),
    "self loop": lambda r, draw: r["edges"].append([draw(st.sampled_from(IDS))] * 2),
    "edge out of the sink": lambda r, draw: r["edges"].append(["n3", "n0"]),
    "edge to an unknown node": lambda r, draw: r["edges"].append(["n9", "n3"]),
    "too many edges": lambda r, draw: r.__setitem__("edges", [list(e) for e in PAIRS]),
    "probability out of range": lambda r, draw: r["probabilities"].__setitem__(
        draw(st.sampled_from(LEGAL)), draw(OUT_OF_RANGE)
    ),
    "illegal table entry": lambda r, draw: r["probabilities"].__setitem__(
        draw(st.sampled_from(["n3->n0", "n0->n0", "n9->n3"])), 0.5
    ),
}
IDS = [n.id for n in NODES]


@st.composite
def graph_replies(draw: st.DrawFn) -> tuple[dict, list[str]]:
    """A reply of the schema's shape (nodes with the sink, legal distinct edges, a full
    table), then some of `MUTATIONS` applied; returns it with the mutations' names."""
    others = draw(st.lists(st.sampled_from(NODE_REPLIES[:-1]), unique_by=lambda n: n["id"]))
    reply = {
        "nodes": [*others, NODE_REPLIES[-1]],
        "edges": [list(e) for e in draw(st.lists(st.sampled_from(PAIRS), unique=True, max_size=6))],
        "sink": "n3",
        "probabilities": {k: draw(st.floats(0, 1)) for k in LEGAL},
        "rationale": "why",
    }
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=2))
    for name in names:
        MUTATIONS[name](reply, draw)
    return reply, names


@settings(max_examples=300, deadline=None)
@given(case=graph_replies())
def test_the_parser_rejects_every_graph_reply_the_schema_forbids(
    case: tuple[dict, list[str]],
) -> None:
    reply, mutations = case
    req = request()
    errors = schema_errors(graph_format(req), reply)
    assert bool(errors) == bool(mutations), (mutations, errors)
    if errors:
        with pytest.raises(InvalidReply):
            graph_from_reply(req, json.dumps(reply))


MULTISET_REQUEST = MultisetRequest(
    SPACE,
    tuple(maximal_multisets(SPACE)),
    tuple(1.0 for _ in maximal_multisets(SPACE)),
    seed=0,
)


@settings(max_examples=100, deadline=None)
@given(picks=st.lists(st.integers(-1, len(MULTISET_REQUEST.multisets)), max_size=3))
def test_the_schema_and_the_parser_agree_on_multiset_picks(picks: list[int]) -> None:
    reply = {"picks": picks, "rationale": "why"}
    chat = ScriptedChat([json.dumps(reply)])
    llm = LLMAgent(chat, RuleBasedAgent(), model="m", retries=0)
    choice = run(llm.pick_multisets(MULTISET_REQUEST))
    if schema_errors(multiset_format(MULTISET_REQUEST), reply):
        assert choice.source == "fallback"
    elif len(set(picks)) == len(picks):  # distinct picks: beyond what the schema can say
        assert choice.source == "llm" and choice.picks == tuple(picks)


def test_each_call_sends_the_schema_of_its_reply_and_a_seed() -> None:
    req = request(seed=41)
    chat = ScriptedChat([CYCLE, GOOD])
    run(agent(chat).propose(req))
    assert [r.format for r in chat.requests] == [graph_format(req)] * 2
    assert [r.seed for r in chat.requests] == [41, 42]  # a retry samples anew
    assert graph_format(req).schema["properties"]["sink"] == {"const": "n3"}
    picks = ScriptedChat(['{"picks": [0, 1], "rationale": "r"}'])
    run(agent(picks).pick_multisets(MULTISET_REQUEST))
    assert picks.requests[0].format == multiset_format(MULTISET_REQUEST)


class FakeCompletions:
    """Test double of the `openai` client's chat completions: records the call's arguments."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def create(self, **kwargs):
        self.calls.append(kwargs)
        message = SimpleNamespace(content=GOOD)
        usage = SimpleNamespace(prompt_tokens=7, completion_tokens=3)
        return SimpleNamespace(choices=[SimpleNamespace(message=message)], usage=usage)


def test_openai_chat_sends_the_schema_as_a_strict_response_format(monkeypatch) -> None:
    completions = FakeCompletions()
    client = SimpleNamespace(chat=SimpleNamespace(completions=completions))
    monkeypatch.setattr("openai.AsyncOpenAI", lambda **_: client)
    pool = EnginePool()
    monkeypatch.setattr(pool, "engine", None)  # an OpenAI model never asks the pool
    llm = make_agent(SearchRequest(task="math", budget=18, agent_model="gpt-4o"), pool)
    req = request(seed=5)
    proposal = run(llm.propose(req))
    assert proposal.source == "llm" and proposal.exchanges[0].prompt_tokens == 7
    (call,) = completions.calls
    assert call["model"] == "gpt-4o" and call["seed"] == 5
    assert call["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "graph_proposal",
            "schema": graph_format(req).schema,
            "strict": True,
        },
    }


def test_an_embedded_agent_model_chats_on_the_pools_engine_with_the_schema(monkeypatch) -> None:
    engine = ScriptedEngine("qwen2.5-coder-1.5b", lambda messages, index: GOOD)
    asked: list[str] = []

    async def pool_engine(model: str) -> ScriptedEngine:
        asked.append(model)
        return engine

    pool = EnginePool()
    monkeypatch.setattr(pool, "engine", pool_engine)  # test double: no vLLM engine starts
    request_of = SearchRequest(task="math", budget=18, agent_model="qwen2.5-coder-1.5b")
    llm = make_agent(request_of, pool)
    proposal = run(llm.propose(request(seed=3)))
    assert proposal.source == "llm" and asked == ["qwen2.5-coder-1.5b"]
    (sent,) = engine.requests
    assert json.loads(sent.params.json_schema or "") == graph_format(request()).schema
    assert sent.params.seed == 3 and sent.messages[0].role == "system"
    assert proposal.exchanges[0].completion_tokens == len(GOOD.split())
    assert isinstance(make_agent(SearchRequest(task="math", budget=18), pool), RuleBasedAgent)


SMALL = paper_space(budget=9.0)


@pytest.mark.parametrize(
    ("replies", "space", "counts"),
    [
        ([GOOD], SPACE, ReplyCounts(valid=1)),
        ([CYCLE, GOOD], SPACE, ReplyCounts(retried=1, invalid_replies=1)),
        ([DENSE] * 3, SMALL, ReplyCounts(repaired=1, invalid_replies=3)),
        ([UNKNOWN, CYCLE, "nope"], SPACE, ReplyCounts(fallback=1, invalid_replies=3)),
    ],
)
def test_each_decision_counts_as_valid_retried_repaired_or_fallen_back(
    replies: list[str], space, counts: ReplyCounts
) -> None:
    proposal = run(agent(ScriptedChat(replies)).propose(replace(request(), space=space)))
    assert ReplyCounts().add(proposal) == counts
    assert ReplyCounts().add(run(RuleBasedAgent().propose(request()))) == ReplyCounts()


def test_guided_decoding_compiles_both_reply_schemas() -> None:
    """xgrammar, vLLM's structured-outputs backend, builds a grammar of each schema."""
    import xgrammar

    cases = ((graph_format(request()), "sink"), (multiset_format(MULTISET_REQUEST), "picks"))
    for reply_format, field in cases:
        grammar = xgrammar.Grammar.from_json_schema(
            json.dumps(reply_format.schema), strict_mode=True
        )
        assert f'"\\"{field}\\""' in str(grammar)  # the property, as a grammar literal
