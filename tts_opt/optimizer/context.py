"""The search context: the one door through which a method evaluates graphs and asks its agent.

It enforces the stopping rules (evaluations, node calls, patience, time), keeps every method on
the same budget and questions, and makes searches resumable: a method re-runs from the start,
and every evaluation or agent decision already in the archive is replayed instead of recomputed
(checked against what the method proposes now). Randomness comes from `rng(purpose)`, seeded by
(seed, evaluations so far, purpose), so a replayed prefix leaves the method in the same state.

Evaluations race (`race_first`): a graph is first scored on the first few of the shared search
questions and gets more (doubling) only while it can still beat the incumbent, the best graph
scored on all of them. Both are scored on the same questions with the same sample seeds, so the
comparison is paired: the graph is dropped once even an optimistic projection of its margin
over the incumbent to all the questions (its rate so far, plus `RACE_Z` standard deviations of
the verdicts still to come) leaves it short of ending ahead. Most graphs of a search are worse
than the incumbent or tied with it (a tie keeps the incumbent), and most of them show it within
a few questions: their remaining questions are the node calls racing saves. Only graphs scored
on every question can become the incumbent (a lucky short run never does).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar, cast

import msgspec
import numpy as np

from tts_opt.graph import active_nodes
from tts_opt.optimizer.agents.base import HistoryItem, MultisetChoice, Proposal, ReplyCounts
from tts_opt.optimizer.archive import (
    BEST_STAGES,
    SEARCH_STAGES,
    AgentKind,
    AgentRecord,
    Archive,
    ArchiveMismatch,
    EvaluationRecord,
    Stage,
)
from tts_opt.optimizer.budget import RepairRule
from tts_opt.optimizer.objective import GraphScorer, Measurement, Objective
from tts_opt.optimizer.space import Candidate, SearchSpace
from tts_opt.tasks.schema import Question

Decision = TypeVar("Decision", MultisetChoice, Proposal)
# A raced graph is dropped once its margin over the incumbent, extrapolated to all questions
# with RACE_Z standard deviations of optimism, stays below RACE_AHEAD questions: a tie keeps the
# incumbent, so a graph must end at least one question (or its latency's worth) ahead.
RACE_Z = 1.0
RACE_AHEAD = 1.0


class SearchStopped(Exception):
    """Raised by `evaluate` once a stopping rule holds; the runner ends the search on it."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a search stops: after `iterations` evaluations, `node_calls` node calls (one node
    of a graph on one question, cached or not), `patience` evaluations without a new best, or
    `time_limit_s` seconds, whichever comes first."""

    iterations: int = 30
    patience: int = 10
    time_limit_s: float | None = None
    node_calls: int | None = None


class ProgressEvent(msgspec.Struct, frozen=True):
    stage: Stage
    evaluations: int
    best_accuracy: float | None
    best_utility: float | None
    last_accuracy: float
    tokens: int
    elapsed_s: float
    node_calls: int = 0


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
        race_first: int | None = None,
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
        self.race_first = race_first  # None: every graph is scored on all search questions
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
        self.node_calls = 0  # likewise
        self.agent_replies = ReplyCounts()  # likewise, per decision
        # Per (first question, graph): the longest measurement and the questions it covers.
        self._scored: dict[tuple[str, str], tuple[tuple[str, ...], Measurement]] = {}

    def elapsed(self) -> float:
        return self._offset + time.monotonic() - self._started

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, len(self.records), zlib.crc32(purpose.encode())])

    @property
    def best(self) -> EvaluationRecord | None:
        """The incumbent: the best graph scored on every search question."""
        return _best(self.records)

    @property
    def running(self) -> bool:
        """False once the evaluations, node calls, patience or time are used up."""
        if _used_up(self.records, self.node_calls, self.limits):
            return False
        return self.limits.time_limit_s is None or self.elapsed() < self.limits.time_limit_s

    @property
    def search_archived(self) -> bool:
        """Whether the archive holds the whole search stage (its evaluations, node calls or
        patience were used up), so that resuming replays it without scoring anything."""
        calls = sum(r.node_calls for r in self._replay)
        return _used_up(self._replay, calls, self.limits)

    def history(self) -> tuple[HistoryItem, ...]:
        return tuple(
            HistoryItem(r.index, r.candidate, r.measurement, r.cost, r.utility)
            for r in self.records
            if r.stage in BEST_STAGES
        )

    async def _score(self, candidate: Candidate, stage: Stage, k: int) -> tuple[Measurement, int]:
        """The graph on the first `k` questions of the stage, and the node calls that took.

        Verdicts already measured for the graph on the same questions (same sample seeds: the
        same draws) are reused: the stages' question sets are prefixes of one validation order,
        so a graph proposed again, raced further or re-evaluated costs only its new questions."""
        wanted = self.questions[stage][:k]
        if not wanted:
            return await self.scorer.score(self.space.artifact(candidate), wanted), 0
        ids = tuple(q.id for q in wanted)
        known_ids, known = self._scored.get((ids[0], candidate.key()), ((), None))
        shared = _common_prefix(known_ids, ids)
        if known is not None and shared == k:
            return known.head(k), 0
        start = shared if known is not None and shared == len(known_ids) else 0
        artifact = self.space.artifact(candidate)
        new = await self.scorer.score(artifact, wanted[start:])
        measurement = new if start == 0 else cast(Measurement, known).extended(new)
        self._remember(candidate, ids, measurement)
        return measurement, len(active_nodes(artifact)) * (k - start)

    def _remember(self, candidate: Candidate, ids: tuple[str, ...], m: Measurement) -> None:
        """Keep the longest measurement per graph and question order (named by its first
        question: validation stages share one order, the test split has its own)."""
        key = (ids[0], candidate.key())
        known_ids, _ = self._scored.get(key, ((), None))
        if len(ids) > len(known_ids):
            self._scored[key] = (ids, m)

    async def _race(self, candidate: Candidate, stage: Stage) -> tuple[Measurement, int]:
        """Score on a growing prefix of the stage's questions while the graph can still beat
        the incumbent (see the module docstring); all of them when not racing."""
        total = len(self.questions[stage])
        incumbent = self.best
        first = total if self.race_first is None or incumbent is None else self.race_first
        measurement, calls = await self._score(candidate, stage, min(first, total))
        while measurement.n < total and incumbent is not None:
            if self._trails(measurement, incumbent.measurement):
                break
            measurement, more = await self._score(candidate, stage, min(2 * measurement.n, total))
            calls += more
        return measurement, calls

    def _trails(self, m: Measurement, incumbent: Measurement) -> bool:
        """Whether `m` can no longer end ahead of `incumbent` on all of the incumbent's
        questions (see the module docstring). Counted in questions: the paired margin so far,
        d = wins - losses (plus the objective's latency part, in questions), extrapolated at its
        rate to the questions left, r, with `RACE_Z` standard deviations of their discordant
        verdicts on top, at the rate seen so far under a uniform prior: (w + l + 1) / (n + 2),
        so a graph that agreed on every question so far may still differ later."""
        n, left = m.n, incumbent.n - m.n
        pairs = list(zip(m.outcomes, incumbent.outcomes[:n], strict=True))
        wins = sum(a and not b for a, b in pairs)
        losses = sum(b and not a for a, b in pairs)
        # The objective's non-accuracy part (latency), at equal accuracy.
        rest = self.objective.utility(msgspec.structs.replace(m, accuracy=0.0))
        rest -= self.objective.utility(msgspec.structs.replace(incumbent, accuracy=0.0))
        margin = wins - losses + n * rest
        discordance = (wins + losses + 1) / (n + 2)
        best_case = margin * (n + left) / n + RACE_Z * math.sqrt(left * discordance)
        return best_case < RACE_AHEAD - 1e-9

    async def _measure(
        self, candidate: Candidate, stage: Stage, index: int, agent_call: int | None
    ) -> EvaluationRecord:
        self.space.check(candidate)  # methods must hand over legal, in-budget graphs
        if stage in BEST_STAGES:
            measurement, calls = await self._race(candidate, stage)
        else:
            measurement, calls = await self._score(candidate, stage, len(self.questions[stage]))
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
            node_calls=calls,
            raced_out=measurement.n < len(self.questions[stage]),
        )
        self.archive.add_evaluation(record)
        self._count(record)
        return record

    def _count(self, record: EvaluationRecord) -> None:
        self.tokens += record.measurement.tokens
        self.node_calls += record.node_calls
        if ids := tuple(q.id for q in self.questions[record.stage][: record.measurement.n]):
            self._remember(record.candidate, ids, record.measurement)

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
            self._count(record)
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
                    node_calls=self.node_calls,
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
                self._count(record)
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
        self.agent_replies = self.agent_replies.add(decision)
        return decision, index

    def agent_seed(self) -> int:
        """A seed for the agent's own randomness, fixed by (seed, agent call index)."""
        return int(np.random.default_rng([self.seed, self._agent_calls, 7]).integers(2**31))


def _best(records: Sequence[EvaluationRecord]) -> EvaluationRecord | None:
    eligible = [r for r in records if r.competes]
    return max(eligible, key=lambda r: r.utility) if eligible else None


def _used_up(records: Sequence[EvaluationRecord], node_calls: int, limits: Limits) -> bool:
    """Whether `records` (a search's evaluations in order) use up its evaluations, node calls or
    patience; the time limit is the caller's."""
    if len(records) >= limits.iterations:
        return True
    if limits.node_calls is not None and node_calls >= limits.node_calls:
        return True
    best = _best(records)
    if best is None:
        return False
    since = sum(r.index > best.index and r.stage in BEST_STAGES for r in records)
    return since >= limits.patience


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    pairs = zip(a, b, strict=False)  # up to the shorter
    return next((i for i, (x, y) in enumerate(pairs) if x != y), min(len(a), len(b)))
