"""The agent interface of Agent-REINFORCE: what an agent is asked, and what it answers.

An agent is consulted twice over: once to pick promising model multisets (stage 1), then once per
iteration to propose the next graph and an updated edge-probability table (stage 4). Decisions
carry every prompt/reply exchange so the archive keeps them.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from tts_opt.graph.schema import Node
from tts_opt.optimizer.distribution import ProbabilityTable
from tts_opt.optimizer.objective import Measurement, Objective
from tts_opt.optimizer.space import Candidate, SearchSpace

DecisionSource = Literal["rule", "llm", "repaired", "fallback", "sample"]


class ChatTurn(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class AgentExchange(msgspec.Struct, frozen=True):
    """One chat call: the messages sent, the reply, and what was wrong with it (None: valid)."""

    messages: tuple[ChatTurn, ...]
    reply: str
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class HistoryItem(msgspec.Struct, frozen=True):
    """One evaluated graph of this search, as the agent sees it."""

    step: int
    candidate: Candidate
    measurement: Measurement
    cost: float
    utility: float


class MultisetRequest(msgspec.Struct, frozen=True):
    """Stage 1: choose `picks` of the multisets (weakest model first) that fill the budget."""

    space: SearchSpace
    multisets: tuple[tuple[str, ...], ...]
    costs: tuple[float, ...]
    seed: int
    picks: int = 2


class MultisetChoice(msgspec.Struct, frozen=True):
    picks: tuple[int, ...]
    source: DecisionSource
    rationale: str = ""
    exchanges: tuple[AgentExchange, ...] = ()


class ProposalRequest(msgspec.Struct, frozen=True):
    """Stage 4: everything the agent sees before proposing the next graph.

    `nodes` is the fixed node multiset (slot ids and models; the last slot is the sink);
    `history` is the whole search so far, oldest first (the last item is the last graph).
    """

    space: SearchSpace
    objective: Objective
    nodes: tuple[Node, ...]
    sink: str
    table: ProbabilityTable
    history: tuple[HistoryItem, ...]
    seed: int
    insights: bool = True


class Proposal(msgspec.Struct, frozen=True):
    """The next graph (legal; the runner still repairs it to the budget) and the new table."""

    candidate: Candidate
    table: ProbabilityTable
    source: DecisionSource
    rationale: str = ""
    exchanges: tuple[AgentExchange, ...] = ()


class ReplyCounts(msgspec.Struct, frozen=True):
    """How the decisions of a search's chat-model agent came about: its first reply valid, a
    reply valid after the model was told its error, the last reply only over budget and cut to
    it, or every reply invalid and the fallback agent's decision taken; and how many replies
    were invalid in all. Decisions made without a chat model are not counted."""

    valid: int = 0
    retried: int = 0
    repaired: int = 0
    fallback: int = 0
    invalid_replies: int = 0

    @property
    def decisions(self) -> int:
        return self.valid + self.retried + self.repaired + self.fallback

    def __add__(self, other: ReplyCounts) -> ReplyCounts:
        fields = msgspec.structs.fields(ReplyCounts)
        return ReplyCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields))

    def add(self, decision: MultisetChoice | Proposal) -> ReplyCounts:
        """These counts with `decision` added (unchanged when no chat model made it)."""
        exchanges = decision.exchanges
        if not exchanges:
            return self
        invalid = sum(e.error is not None for e in exchanges)
        first_valid = exchanges[0].error is None
        return ReplyCounts(
            valid=self.valid + (decision.source == "llm" and first_valid),
            retried=self.retried + (decision.source == "llm" and not first_valid),
            repaired=self.repaired + (decision.source == "repaired"),
            fallback=self.fallback + (decision.source == "fallback"),
            invalid_replies=self.invalid_replies + invalid,
        )


class Agent(Protocol):
    """Proposes graphs; `name` goes into provenance and reports."""

    name: str

    async def pick_multisets(self, request: MultisetRequest) -> MultisetChoice: ...

    async def propose(self, request: ProposalRequest) -> Proposal: ...


def best_item(history: tuple[HistoryItem, ...]) -> HistoryItem:
    """Highest utility; the earliest wins ties (it was found with less search)."""
    return max(history, key=lambda h: h.utility)
