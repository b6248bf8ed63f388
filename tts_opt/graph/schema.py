"""The graph artifact: the contract between the optimizer (which writes it) and the server (which
runs it).

Everything the server needs to run a graph for a task is in here (models, topology, role prompts,
decoding), so serving needs no task code. Loading goes through `tts_opt.graph.io.load_artifact`,
which validates completely; constructing these Structs directly does no graph-level checks.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

Role = Literal["assistant", "fuser"]
BudgetUnit = Literal["flops", "usd"]
AnswerKind = Literal["numeric", "choice", "math", "exact", "regex"]


class ModelSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A pool model as the cost model sees it.

    `params` is M (non-embedding parameters), `layers` is L, `hidden` is D. Prices are optional and
    only needed for a dollar budget.
    """

    name: str
    params: float
    layers: int
    hidden: int
    usd_per_input_token: float | None = None
    usd_per_output_token: float | None = None


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One LLM call: a pool model in a role."""

    id: str
    model: str
    role: Role


class RoleTemplates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-task prompts for each role.

    Placeholders are replaced literally (no `str.format`), so prompts may contain braces, e.g.
    LaTeX: `{question}` is the user's question, `{references}` the predecessors' answers, each
    rendered with `reference` (`{index}`, `{answer}`) and joined with `reference_separator`.
    """

    system: str = ""
    assistant: str = "{question}"
    assistant_with_references: str = (
        "{question}\n\nHere are answers from other assistants:\n\n{references}\n\n"
        "Check them critically and write your own improved, complete answer."
    )
    fuser: str = (
        "{question}\n\nHere are candidate answers:\n\n{references}\n\n"
        "Compare them, resolve disagreements and write one final, consolidated answer."
    )
    reference: str = "Answer {index}:\n{answer}"
    reference_separator: str = "\n\n"


class Decoding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Decoding parameters every node of the graph uses."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


class AnswerExtractor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How to read the final answer out of an output, as the task's scorer does (see
    `tts_opt.tasks.extract`): `numeric` (GSM8K: "The answer is N", compared by value), `choice`
    (an option letter among the first `options` letters), `math` (the last \\boxed{}), `exact`
    (the text after the last "Answer:", else the last line) or `regex` (the last match of
    `pattern`: its group `answer`, else group 1, else the whole match)."""

    kind: AnswerKind
    pattern: str = ""
    options: int = 4


class EarlyExit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Answer without running the sink (a fuser) once `quorum` of its inputs have finished with
    the same extracted answer; the inputs still running are cancelled."""

    answer: AnswerExtractor
    quorum: int


class Budget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A compute budget. For `flops` the value is in budget units (one d=0 inference of the
    smallest pool model on the task); for `usd` it is dollars per query."""

    value: float
    unit: BudgetUnit = "flops"


class TaskLengths(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Average prompt (A) and answer (B) lengths in tokens, the inputs of the cost model."""

    prompt_tokens: float
    output_tokens: float


class Accuracy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A measured accuracy with its sample size and 95% confidence interval."""

    split: str
    value: float
    n: int
    ci_low: float
    ci_high: float


class Latency(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Measured end-to-end latency of the graph in seconds. `replayed`: some runs replayed
    cached nodes, and their latency is the critical path over the nodes' recorded times."""

    p50_s: float
    p95_s: float
    n: int
    replayed: bool = False


class PairedComparison(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The best graph against the single-model baseline on the same questions and sample seeds
    (the artifact's own graph unless the single model shipped, see `BaselineComparison`): both
    accuracies, their difference with its 95% interval, and the exact McNemar p-value.
    Under an accuracy-latency objective also the utility difference and its one-sided paired
    bootstrap p-value (the chance of a difference this large if the graph were no better)."""

    baseline: str  # e.g. "single qwen2.5-coder-1.5b"
    split: str
    n: int
    accuracy: float
    baseline_accuracy: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    utility_difference: float | None = None
    utility_p_value: float | None = None


class BaselineComparison(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why this artifact was shipped rather than the best single model of the budget.

    `verdict` is "graph" when the search's graph beat the single model on the validation
    questions by a paired test at level `alpha`, else "single" (the artifact is then the single
    model). The test split decides nothing; `test` only reports the best graph against the
    single model on the same test questions, whichever shipped."""

    verdict: Literal["graph", "single"]
    summary: str
    alpha: float
    validation: PairedComparison | None = None
    test: PairedComparison | None = None


class Provenance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the artifact was made."""

    method: str = "manual"
    seed: int | None = None
    iterations: int | None = None
    agent_model: str | None = None
    dataset_hashes: dict[str, str] = {}
    tool_version: str = ""
    created_at: str = ""


class GraphArtifact(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A saved collaboration graph for one task and budget.

    `models` is the whole pool the budget refers to: its smallest model defines the budget unit,
    so keep it even when no node uses it. `flops` is the graph's cost in raw FLOPs
    (`tts_opt.graph.cost.graph_flops`); loading checks it against the cost model.
    """

    schema_version: int
    task: str
    budget: Budget
    task_lengths: TaskLengths
    models: tuple[ModelSpec, ...]
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    sink: str
    templates: RoleTemplates = RoleTemplates()
    decoding: Decoding = Decoding()
    early_exit: EarlyExit | None = None
    accuracy: tuple[Accuracy, ...] = ()
    latency: Latency | None = None
    flops: float | None = None
    baseline: BaselineComparison | None = None
    provenance: Provenance = Provenance()
    description: str = ""
