"""Shared pieces of the optimizer tests: a synthetic task, the paper space, fast settings, and
a chat model test double."""

from __future__ import annotations

import json

from graph_factory import PAPER_POOL

from tts_opt.graph import PAPER_TASK_LENGTHS, Budget
from tts_opt.optimizer.agents import ChatReply, ChatRequest, HistoryItem, ProposalRequest
from tts_opt.optimizer.budget import parallel_graph
from tts_opt.optimizer.context import Limits
from tts_opt.optimizer.distribution import GraphDistribution
from tts_opt.optimizer.objective import Measurement, Objective
from tts_opt.optimizer.runner import OptimizeSettings
from tts_opt.optimizer.space import SearchSpace
from tts_opt.tasks import ExactScorer, Question, Task
from tts_opt.tasks.templates import TEXT, role_templates

SMALL_POOL = PAPER_POOL[:3]  # 1B, 3B, 8B: keeps multiset enumeration tiny
# The node multiset of `proposal_request`: n0, n1: 1B; n2, n3: 3B; n3 the sink (a fuser).
PROPOSAL_MODELS = ("llama-3.2-1b", "llama-3.2-1b", "llama-3.2-3b", "llama-3.2-3b")


def synthetic_task(n: int = 400) -> Task:
    return Task(
        name="math",
        questions=tuple(Question(id=f"q{i}", prompt=f"question {i}", answer="1") for i in range(n)),
        templates=role_templates(TEXT),
        scorer=ExactScorer(),
        val_fraction=0.5,
    )


def paper_space(budget: float = 9.0, max_nodes: int = 6) -> SearchSpace:
    return SearchSpace(
        task="math",
        budget=Budget(value=budget),
        lengths=PAPER_TASK_LENGTHS["math"],
        pool=SMALL_POOL,
        templates=role_templates(TEXT),
        max_nodes=max_nodes,
    )


def fast_settings(method: str = "agent-reinforce", iterations: int = 12, **kw) -> OptimizeSettings:
    return OptimizeSettings(
        method=method,
        limits=Limits(iterations=iterations, patience=kw.pop("patience", 50)),
        val_questions=20,
        pretest_questions=5,
        reeval_questions=40,
        test_questions=40,
        **kw,
    )


def measurement(accuracy: float) -> Measurement:
    return Measurement(accuracy, 20, 0.0, 1.0, 1.0, 1.3, 1e12)


def proposal_request(space: SearchSpace, history_len: int = 1, seed: int = 0) -> ProposalRequest:
    """What the agent sees after `history_len` parallel graphs over `PROPOSAL_MODELS`."""
    graphs = [parallel_graph(space, list(PROPOSAL_MODELS[k:])) for k in range(history_len)]
    history = tuple(
        HistoryItem(i, g, measurement(0.5 + 0.05 * i), space.cost(g), 0.5 + 0.05 * i)
        for i, g in enumerate(graphs)
    )
    dist = GraphDistribution.uniform(
        [m.name for m in space.pool], len(PROPOSAL_MODELS), list(PROPOSAL_MODELS)
    )
    return ProposalRequest(
        space=space,
        objective=Objective(),
        nodes=parallel_graph(space, list(PROPOSAL_MODELS)).nodes,
        sink="n3",
        table=dist.table(),
        history=history,
        seed=seed,
    )


class FreeChat:
    """A chat model test double: picks the first two multisets, then answers with some of the
    edges of the parallel graph (how many depends on the prompt, so replies are reproducible)."""

    calls = 0

    async def __call__(self, request: ChatRequest) -> ChatReply:
        type(self).calls += 1
        prompt = request.messages[1].content
        if "multisets" in prompt:
            return ChatReply('{"picks": [0, 1]}')
        lines = prompt.split("Nodes you may use")[1].split("\n\n")[0].splitlines()[1:]
        ids = [line.split(":")[0].strip() for line in lines]
        models = [line.split(":")[1].strip() for line in lines]
        sink = ids[-1]
        nodes = [
            {"id": i, "model": m, "role": "assistant"} for i, m in zip(ids, models, strict=True)
        ]
        edges = [[i, sink] for i in ids[:-1]][: 1 + prompt.count("step") % 3]
        return ChatReply(json.dumps({"nodes": nodes, "edges": edges, "sink": sink}), 10, 5)
