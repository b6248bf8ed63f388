"""What one graph run reports: per-node timings, tokens and FLOPs, and the summed usage."""

from __future__ import annotations

from typing import Literal

import msgspec

NodeStatus = Literal["ok", "failed", "cancelled"]


class NodeTrace(msgspec.Struct, frozen=True):
    """Times are seconds since the run started: `ready_s` when its inputs were complete (it was
    queued), `start_s` when its engine request was sent, `first_token_s` and `end_s`.

    `replayed` says the engine replayed samples of the node's call instead of generating them
    (a cache); those took no time now, and `recorded_s` is the longest generation time recorded
    for them (None: not recorded), what the call would have taken live."""

    node: str
    model: str
    role: str
    status: NodeStatus
    ready_s: float
    start_s: float
    first_token_s: float | None
    end_s: float
    prompt_tokens: int
    output_tokens: int
    flops: float
    attempts: int
    batch_size: int
    error: str | None = None
    replayed: bool = False
    recorded_s: float | None = None

    @property
    def duration_s(self) -> float | None:
        """How long the node takes from its inputs being ready to its answer: measured, or for
        a replayed call the longer of its recorded and its measured time (a call may replay
        some samples and generate others). None when a replayed sample's time is unknown."""
        measured = self.end_s - self.ready_s
        if not self.replayed:
            return measured
        return None if self.recorded_s is None else max(measured, self.recorded_s)


class Usage(msgspec.Struct, frozen=True):
    """Token usage summed over every engine request of the run (OpenAI's meaning: a request with
    `n` samples counts its prompt once)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class EarlyExitTrace(msgspec.Struct, frozen=True):
    """The sink did not run: `quorum` of its inputs, `agreeing` (in the order they finished),
    gave the same `answer` (canonical form), and the run returned the output of the first."""

    answer: str
    quorum: int
    agreeing: tuple[str, ...]


class RunTrace(msgspec.Struct, frozen=True):
    """`nodes` are the node calls that were made; with an early exit the sink is not among them
    and calls it cut short are `cancelled` (their tokens so far counted)."""

    request_id: str
    nodes: tuple[NodeTrace, ...]
    usage: Usage
    flops: float
    total_s: float
    engine_s: float
    early_exit: EarlyExitTrace | None = None

    @property
    def replayed(self) -> bool:
        """Some node replayed samples: `total_s` is then not the graph's latency."""
        return any(node.replayed for node in self.nodes)

    @property
    def overhead_s(self) -> float:
        """Wall time not covered by any engine request: the orchestration's own cost."""
        return max(0.0, self.total_s - self.engine_s)
