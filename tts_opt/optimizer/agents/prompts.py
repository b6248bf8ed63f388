"""The text an LLM agent reads: graph rules, the paper's insights, and the search state.

`insights=False` leaves the insights out: that is the TextGrad-style baseline, the same agent
without the paper's knowledge.
"""

from __future__ import annotations

from tts_opt.graph import to_text
from tts_opt.optimizer.agents.base import HistoryItem, MultisetRequest, ProposalRequest, best_item

RECENT = 5

RULES = """You design multi-LLM collaboration graphs under a compute budget.
A node is one LLM call: a model and a role. Roles: "assistant" answers the question (with
predecessors it reads their answers and writes an improved answer); "fuser" reads its
predecessors' answers and writes one consolidated answer. An edge src -> dst gives dst the full
answer of src, which lengthens dst's prompt and its cost. Rules: the graph is a DAG; exactly one
sink (its answer is the result) with no successors; sources are assistants; a fuser needs at least
one assistant predecessor; nodes without a path to the sink are dropped; the graph must fit the
budget."""

INSIGHTS = """Insights from experiments:
1. The best model mix is task specific (on MATH three 3B models beat one 8B; on MMLU and
   HumanEval one 8B wins).
2. Width (parallel answers) and depth (sequential refinement) each have an optimum beyond which
   more compute hurts: long contexts hurt weak models, deep chains overwrite correct answers.
3. The optimal width depends on the depth and vice versa: tune them together."""

GRAPH_REPLY = """Reply with one JSON object only:
{"nodes": [{"id": "n0", "model": "<model>", "role": "assistant"}, ...],
 "edges": [["n0", "n2"], ...], "sink": "<sink id>",
 "probabilities": {"n0->n2": 0.8, ...}, "rationale": "<one sentence>"}
Use only the given node ids with their models. "probabilities" is your updated belief that each
edge belongs to the best graph: a number in [0, 1] for every possible edge "src->dst" (edges you
leave out keep their value)."""

MULTISET_REPLY = """Reply with one JSON object only: {"picks": [<index>, <index>],
"rationale": "<one sentence>"} naming the multisets (by index) most promising for this task."""


def system_prompt(insights: bool, reply_format: str) -> str:
    parts = [RULES, INSIGHTS] if insights else [RULES]
    return "\n\n".join([*parts, reply_format])


def _measured(h: HistoryItem, with_latency: bool) -> str:
    m = h.measurement
    text = f"accuracy {m.accuracy:.1%} (n={m.n})"
    if with_latency and m.latency_p50_s is not None:
        text += f", p50 latency {m.latency_p50_s:.3g} s"
    return f"{text}, cost {h.cost:.4g}, utility {h.utility:.4g}"


def proposal_prompt(request: ProposalRequest) -> str:
    space, history = request.space, request.history
    latency = request.objective.uses_latency
    last, best = history[-1], best_item(history)
    unit = "dollars" if space.budget.unit == "usd" else "budget units"
    node_lines = "\n".join(f"  {n.id}: {n.model}" for n in request.nodes)
    table = "\n".join(f"  {k}: {p:.3f}" for k, p in sorted(request.table.edges.items()))
    recent = "\n".join(
        f"  step {h.step}: {_measured(h, latency)}; {h.candidate.summary()}"
        for h in history[-RECENT:]
    )
    parts = [
        f"Task: {space.task}. Objective: {request.objective.describe()}.",
        f"Budget: {space.budget.value:.6g} {unit}.",
        f"Nodes you may use (fixed multiset; the sink is {request.sink}):\n{node_lines}",
        f"Last graph (step {last.step}): {_measured(last, latency)}\n"
        + to_text(space.artifact(last.candidate)),
        f"Best so far (step {best.step}): {_measured(best, latency)}; {best.candidate.summary()}",
        f"Edge probabilities:\n{table}",
        f"Recent history:\n{recent}",
    ]
    if latency:
        parts.append(
            "Latency guidance: nodes in the same level run concurrently, so latency grows with "
            "depth (the longest path) and with the largest model on it, not with width."
        )
    parts.append("Propose the next graph to evaluate.")
    return "\n\n".join(parts)


def multiset_prompt(request: MultisetRequest) -> str:
    space = request.space
    rows = "\n".join(
        f"  {i}: {', '.join(models)} (cost {cost:.4g})"
        for i, (models, cost) in enumerate(zip(request.multisets, request.costs, strict=True))
    )
    pool = "\n".join(f"  {m.name}: {m.params:.3g} parameters" for m in space.pool)
    return (
        f"Task: {space.task}. Budget: {space.budget.value:.6g} {space.budget.unit}.\n"
        f"Model pool:\n{pool}\nModel multisets that use the budget:\n{rows}\n"
        f"Pick the {request.picks} most promising."
    )
