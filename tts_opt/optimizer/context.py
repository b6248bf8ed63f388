"""The search context: the one door through which a method evaluates graphs and asks its agent.

It enforces the stopping rules (evaluations, patience, time), keeps every method on the same
evaluation budget and questions, and makes searches resumable: a method re-runs from the start,
and every evaluation or agent decision already in the archive is replayed instead of recomputed
(checked against what the method proposes now). Randomness comes from `rng(purpose)`, seeded by
(seed, evaluations so far, purpose), so a replayed prefix leaves the method in the same state.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import msgspec
import numpy as np

from tts_opt.optimizer.agents.base import HistoryItem, MultisetChoice, Proposal
from tts_opt.optimizer.archive import (
    SEARCH_STAGES,
    AgentKind,
    AgentRecord,
    Archive,
    ArchiveMismatch,
    EvaluationRecord,
    Stage,
)
from tts_opt.optimizer.budget import RepairRule
from tts_opt.optimizer.objective import GraphScorer, Objective
from tts_opt.optimizer.space import Candidate, SearchSpace
from tts_opt.tasks.schema import Question

Decision = TypeVar("Decision", MultisetChoice, Proposal)
BEST_STAGES: tuple[Stage, ...] = ("init", "search")


class SearchStopped(Exception):
    """Raised by `evaluate` once a stopping rule holds; the runner ends the search on it."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    iterations: int = 30
    patience: int = 10
    time_limit_s: float | None = None


class ProgressEvent(msgspec.Struct, frozen=True):
    stage: Stage
    evaluations: int
    best_accuracy: float | None
    best_utility: float | None
    last_accuracy: float
    tokens: int
    elapsed_s: float


class ProgressFn(Protocol):
    def __call__(self, event: ProgressEvent, /) -> None: ...


class SearchContext:
    """See the module docstring. `questions` maps each stage to its question set."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        objective: Objective,
        repair_rule: RepairRule,
        seed: int,
        limits: Limits,
        scorer: GraphScorer,
        archive: Archive,
        questions: dict[Stage, Sequence[Question]],
        on_progress: ProgressFn | None = None,
    ) -> None:
        self.space = space
        self.objective = objective
        self.repair_rule = repair_rule
        self.seed = seed
        self.limits = limits
        self.scorer = scorer
        self.archive = archive
        self.questions = questions
        self.on_progress = on_progress
        self.records: list[EvaluationRecord] = []
        self._replay = sorted(
            (r for r in archive.evaluations if r.stage in SEARCH_STAGES), key=lambda r: r.index
        )
        self._agent_calls = 0
        self._started = time.monotonic()
        past = [r.elapsed_s for r in archive.evaluations] + [r.elapsed_s for r in archive.agent]
        self._offset = max(past, default=0.0)
        self.tokens = 0  # counted as records are made or replayed

    def elapsed(self) -> float:
        return self._offset + time.monotonic() - self._started

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, len(self.records), zlib.crc32(purpose.encode())])

    @property
    def best(self) -> EvaluationRecord | None:
        eligible = [r for r in self.records if r.stage in BEST_STAGES]
        return max(eligible, key=lambda r: r.utility) if eligible else None

    @property
    def running(self) -> bool:
        """False once the evaluations, the patience or the time is used up."""
        if len(self.records) >= self.limits.iterations:
            return False
        best = self.best
        if best is not None:
            since = sum(r.index > best.index and r.stage in BEST_STAGES for r in self.records)
            if since >= self.limits.patience:
                return False
        return self.limits.time_limit_s is None or self.elapsed() < self.limits.time_limit_s

    def history(self) -> tuple[HistoryItem, ...]:
        return tuple(
            HistoryItem(r.index, r.candidate, r.measurement, r.cost, r.utility)
            for r in self.records
            if r.stage in BEST_STAGES
        )

    async def _measure(
        self, candidate: Candidate, stage: Stage, index: int, agent_call: int | None
    ) -> EvaluationRecord:
        self.space.check(candidate)  # methods must hand over legal, in-budget graphs
        artifact = self.space.artifact(candidate)
        measurement = await self.scorer.score(artifact, self.questions[stage])
        record = EvaluationRecord(
            index=index,
            stage=stage,
            candidate=candidate,
            measurement=measurement,
            cost=self.space.cost(candidate),
            utility=self.objective.utility(measurement),
            seed=self.seed,
            elapsed_s=self.elapsed(),
            agent_call=agent_call,
        )
        self.archive.add_evaluation(record)
        self.tokens += measurement.tokens
        return record

    async def evaluate(
        self, candidate: Candidate, stage: Stage, agent_call: int | None = None
    ) -> EvaluationRecord:
        """Evaluate a search-stage graph (or replay its archived evaluation)."""
        if not self.running:
            raise SearchStopped
        index = len(self.records)
        if index < len(self._replay):
            record = self._replay[index]
            if record.stage != stage or record.candidate.key() != candidate.key():
                raise ArchiveMismatch(
                    f"{self.archive.path}: evaluation {index} was {record.stage} of "
                    f"{record.candidate.key()}, the search now proposes {stage} of "
                    f"{candidate.key()}; the archive is from another version or settings"
                )
            self.tokens += record.measurement.tokens
        else:
            record = await self._measure(candidate, stage, index, agent_call)
        self.records.append(record)
        if self.on_progress is not None:
            best = self.best
            self.on_progress(
                ProgressEvent(
                    stage=stage,
                    evaluations=len(self.records),
                    best_accuracy=None if best is None else best.measurement.accuracy,
                    best_utility=None if best is None else best.utility,
                    last_accuracy=record.measurement.accuracy,
                    tokens=self.tokens,
                    elapsed_s=self.elapsed(),
                )
            )
        return record

    async def evaluate_final(self, candidate: Candidate, stage: Stage) -> EvaluationRecord:
        """Selection-stage evaluation (reeval, test), replayed when archived."""
        n = len(self.questions[stage])
        for record in self.archive.evaluations:
            if (record.stage, record.candidate.key(), record.measurement.n) == (
                stage,
                candidate.key(),
                n,
            ):
                self.tokens += record.measurement.tokens
                return record
        return await self._measure(candidate, stage, -1, None)

    async def consult(
        self, kind: AgentKind, call: Callable[[], Awaitable[Decision]], kind_type: type[Decision]
    ) -> tuple[Decision, int]:
        """Ask the agent (or replay its archived answer); returns the decision and its index."""
        index = self._agent_calls
        self._agent_calls += 1
        if index < len(self.archive.agent):
            record = self.archive.agent[index]
            if record.kind != kind:
                raise ArchiveMismatch(
                    f"{self.archive.path}: agent call {index} was {record.kind}, now {kind}"
                )
            decision = msgspec.json.decode(record.payload, type=kind_type)
        else:
            decision = await call()
            payload = msgspec.Raw(msgspec.json.encode(decision))
            self.archive.add_agent(
                AgentRecord(
                    index=index,
                    kind=kind,
                    payload=payload,
                    elapsed_s=self.elapsed(),
                )
            )
        self.tokens += sum(e.prompt_tokens + e.completion_tokens for e in decision.exchanges)
        return decision, index

    def agent_seed(self) -> int:
        """A seed for the agent's own randomness, fixed by (seed, agent call index)."""
        return int(np.random.default_rng([self.seed, self._agent_calls, 7]).integers(2**31))
