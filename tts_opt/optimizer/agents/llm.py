"""An agent backed by a chat model (`tts_opt.optimizer.agents.chat`).

Each call sends the JSON schema of the reply it wants (`reply_schema`), so a model behind
structured outputs returns the right shape. Replies are still decoded with msgspec and held to
the graph rules (known nodes with their fixed models, the fixed sink, DAG, roles, budget) and a
sane probability table: the schema cannot say everything, and not every endpoint enforces it.
An invalid reply is sent back with the error for another try; after `retries` the agent falls
back: a structurally valid graph that is only over budget is repaired (the agent's intent kept),
anything else goes to the fallback agent. Every exchange is returned for the archive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from tts_opt.graph import Budget, GraphError, Node
from tts_opt.graph.schema import Role
from tts_opt.optimizer.agents.base import (
    Agent,
    AgentExchange,
    ChatTurn,
    MultisetChoice,
    MultisetRequest,
    Proposal,
    ProposalRequest,
)
from tts_opt.optimizer.agents.chat import ChatFn, ChatRequest
from tts_opt.optimizer.agents.prompts import (
    GRAPH_REPLY,
    MULTISET_REPLY,
    multiset_prompt,
    proposal_prompt,
    system_prompt,
)
from tts_opt.optimizer.agents.reply_schema import ReplyFormat, graph_format, multiset_format
from tts_opt.optimizer.budget import repair
from tts_opt.optimizer.distribution import ProbabilityTable, table_errors
from tts_opt.optimizer.space import Candidate, prune

T = TypeVar("T")


class ReplyNode(msgspec.Struct, frozen=True):
    id: str
    model: str
    role: Role


class GraphReply(msgspec.Struct, frozen=True):
    nodes: list[ReplyNode]
    edges: list[tuple[str, str]]
    sink: str
    probabilities: dict[str, float] = {}
    rationale: str = ""


class MultisetReply(msgspec.Struct, frozen=True):
    picks: list[int]
    rationale: str = ""


class InvalidReply(ValueError):
    """A reply broke a rule; `candidate` is set when only the budget was broken."""

    def __init__(self, message: str, candidate: Candidate | None = None) -> None:
        super().__init__(message)
        self.candidate = candidate


def _json_object(text: str) -> bytes:
    """The outermost {...} of a reply: models like to wrap JSON in prose or code fences."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise InvalidReply("the reply contains no JSON object")
    return text[start : end + 1].encode()


def _decode(text: str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(_json_object(text), type=kind)
    except msgspec.DecodeError as exc:
        raise InvalidReply(f"the JSON does not match the reply format: {exc}") from exc


def graph_from_reply(request: ProposalRequest, text: str) -> tuple[Candidate, ProbabilityTable]:
    """The legal, in-budget graph and table a reply describes, or InvalidReply naming why not."""
    reply = _decode(text, GraphReply)
    space = request.space
    allowed = {n.id: n.model for n in request.nodes}
    ids = [n.id for n in reply.nodes]
    for node in reply.nodes:
        if node.id not in allowed:
            raise InvalidReply(f"unknown node {node.id!r}; the nodes are {', '.join(allowed)}")
        if node.model != allowed[node.id]:
            raise InvalidReply(
                f"node {node.id!r} must use model {allowed[node.id]!r} (the multiset is fixed)"
            )
    if len(set(ids)) != len(ids):
        raise InvalidReply("a node id appears twice")
    if len(set(reply.edges)) != len(reply.edges):
        raise InvalidReply("an edge appears twice")
    if reply.sink != request.sink:
        raise InvalidReply(f"the sink must be {request.sink!r}, got {reply.sink!r}")
    for src, dst in reply.edges:
        for end in (src, dst):
            if end not in ids:
                raise InvalidReply(f"edge {src}->{dst} names node {end!r}, which is not in nodes")
        if src == dst:
            raise InvalidReply(f"edge {src}->{dst} is a self loop")
        if src == reply.sink:
            raise InvalidReply(f"edge {src}->{dst} leaves the sink, which has no successors")
    if reply.sink not in ids:
        raise InvalidReply(f"the sink {reply.sink!r} is not in nodes")
    table = ProbabilityTable(edges=reply.probabilities)
    if errors := table_errors(table, list(allowed), request.sink):
        raise InvalidReply("; ".join(errors))
    nodes = tuple(Node(id=n.id, model=n.model, role=n.role) for n in reply.nodes)
    candidate = prune(nodes, tuple(reply.edges), reply.sink)
    unlimited = msgspec.structs.replace(space, budget=Budget(value=1e300, unit=space.budget.unit))
    try:
        unlimited.check(candidate)
    except GraphError as exc:
        raise InvalidReply(str(exc)) from exc
    cost = space.cost(candidate)
    if cost > space.budget.value:
        raise InvalidReply(
            f"over budget: the graph costs {cost:.4g}, the budget is {space.budget.value:.4g} "
            f"{space.budget.unit}; drop edges or nodes",
            candidate,
        )
    merged = ProbabilityTable(edges={**request.table.edges, **table.edges})
    return candidate, merged


class LLMAgent:
    """Consults a chat model; see the module docstring for validation and fallback."""

    def __init__(
        self,
        chat: ChatFn,
        fallback: Agent,
        *,
        model: str,
        insights: bool = True,
        retries: int = 2,
    ) -> None:
        self.chat = chat
        self.model = model
        self.fallback = fallback
        self.insights = insights
        self.retries = retries
        self.name = f"llm:{model}"

    async def _converse(
        self,
        system: str,
        prompt: str,
        reply_format: ReplyFormat,
        seed: int,
        parse: Callable[[str], T],
    ) -> tuple[T | None, InvalidReply | None, tuple[AgentExchange, ...]]:
        messages = [ChatTurn("system", system), ChatTurn("user", prompt)]
        exchanges: list[AgentExchange] = []
        error: InvalidReply | None = None
        for attempt in range(self.retries + 1):
            reply = await self.chat(ChatRequest(tuple(messages), reply_format, seed + attempt))
            try:
                result = parse(reply.content)
            except InvalidReply as exc:
                error = exc
            else:
                error = None
            exchanges.append(
                AgentExchange(
                    tuple(messages),
                    reply.content,
                    None if error is None else str(error),
                    reply.prompt_tokens,
                    reply.completion_tokens,
                )
            )
            if error is None:
                return result, None, tuple(exchanges)
            messages += [
                ChatTurn("assistant", reply.content),
                ChatTurn("user", f"Your reply is invalid: {error}. Reply again, JSON only."),
            ]
        return None, error, tuple(exchanges)

    async def pick_multisets(self, request: MultisetRequest) -> MultisetChoice:
        def parse(text: str) -> MultisetChoice:
            reply = _decode(text, MultisetReply)
            picks = tuple(reply.picks)
            wanted = min(request.picks, len(request.multisets))
            distinct = len(set(picks)) == len(picks) == wanted
            if not distinct or not all(0 <= p < len(request.multisets) for p in picks):
                raise InvalidReply(
                    f"picks must be {wanted} distinct indices in 0..{len(request.multisets) - 1}"
                )
            return MultisetChoice(picks, "llm", reply.rationale)

        system = system_prompt(self.insights, MULTISET_REPLY)
        choice, _, exchanges = await self._converse(
            system, multiset_prompt(request), multiset_format(request), request.seed, parse
        )
        if choice is None:
            choice = msgspec.structs.replace(
                await self.fallback.pick_multisets(request), source="fallback"
            )
        return msgspec.structs.replace(choice, exchanges=exchanges)

    async def propose(self, request: ProposalRequest) -> Proposal:
        def parse(text: str) -> Proposal:
            candidate, table = graph_from_reply(request, text)
            return Proposal(candidate, table, "llm", _decode(text, GraphReply).rationale)

        system = system_prompt(self.insights and request.insights, GRAPH_REPLY)
        proposal, error, exchanges = await self._converse(
            system, proposal_prompt(request), graph_format(request), request.seed, parse
        )
        if proposal is None and error is not None and error.candidate is not None:
            proposal = Proposal(
                repair(request.space, error.candidate),
                request.table,
                "repaired",
                "the agent's last graph, cut to the budget",
            )
        if proposal is None:
            proposal = msgspec.structs.replace(
                await self.fallback.propose(request), source="fallback"
            )
        return msgspec.structs.replace(proposal, exchanges=exchanges)
