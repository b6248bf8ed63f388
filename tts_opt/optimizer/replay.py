"""Searches replayed against a recorded table (`tts_opt.optimizer.table`) instead of engines.

`ReplayScorer` answers a graph on questions with exactly the verdicts, tokens, FLOPs and
latencies recorded for them, in the order asked, so a search takes the decisions it would have
taken live on the recording's scorer, in a fraction of a second. Isomorphic graphs share one row
(the table holds one per class). It never guesses: a graph or question the table lacks is an
error naming it. `replay_request` builds a search request from the table's header.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import msgspec

from tts_opt.evaluation.stats import percentile, wilson_interval
from tts_opt.graph.schema import GraphArtifact
from tts_opt.optimizer.candidate_set import canonical_key
from tts_opt.optimizer.objective import Measurement
from tts_opt.optimizer.service import SearchRequest, request_defaults
from tts_opt.optimizer.space import Candidate, SearchSpace
from tts_opt.optimizer.table import QuestionRow, Table, TableError, differing_fields, read_table
from tts_opt.tasks.schema import Question, Split
from tts_opt.tasks.task import Task

# What a replay takes from the table: options that define the graphs and their scores.
TABLE_OPTIONS = (
    "task",
    "budget",
    "budget_unit",
    "models",
    "price",
    "max_nodes",
    "max_tokens",
    "sample_seed",
    "prompt_tokens",
    "output_tokens",
)
# Question counts a replay may lower (a prefix of the recorded questions), by recorded split.
QUESTION_OPTIONS: dict[str, Split] = {
    "val_questions": "val",
    "pretest_questions": "val",
    "reeval_questions": "val",
    "test_questions": "test",
}


def measurement(rows: Sequence[QuestionRow]) -> Measurement:
    """What a scorer reports for these per-question results (latency over measured ones)."""
    n, correct = len(rows), sum(r.correct for r in rows)
    low, high = wilson_interval(correct, n)
    latencies = [r.latency_s for r in rows if r.latency_s is not None]
    return Measurement(
        accuracy=correct / n if n else 0.0,
        n=n,
        ci_low=low,
        ci_high=high,
        latency_p50_s=percentile(latencies, 50) if latencies else None,
        latency_p95_s=percentile(latencies, 95) if latencies else None,
        flops=fmean(r.flops for r in rows) if rows else 0.0,
        tokens=sum(r.tokens for r in rows),
        outcomes=tuple(r.correct for r in rows),
        latencies_s=tuple(latencies) if len(latencies) == n else (),
    )


class ReplayScorer:
    """A `GraphScorer` answering from `table`; `calls` counts scores."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._rows = {
            canonical_key(row.candidate): {q.id: q for q in row.questions} for row in table.rows
        }
        self._canonical: dict[str, str] = {}  # Candidate.key() -> canonical key, memoized
        self.calls = 0

    @classmethod
    def for_search(cls, path: Path, task: Task, space: SearchSpace) -> ReplayScorer:
        """The scorer of the complete table at `path`, checked against the search's task
        (same data, same questions) and space."""
        table = read_table(path)
        header = table.header
        if not table.complete:
            raise TableError(
                f"{path} holds {len(table.rows)} of {header.graphs} graphs: finish the "
                "recording (run `tts-opt bench record` again with the same options)"
            )
        if task.data_sha256 != header.data_sha256:
            raise TableError(f"{path} was recorded on other {task.name} data (sha256 differs)")
        splits: tuple[tuple[Split, tuple[str, ...]], ...] = (
            ("val", header.val_ids),
            ("test", header.test_ids),
        )
        for split, ids in splits:
            if tuple(q.id for q in task.split(split, limit=len(ids))) != ids:
                raise TableError(f"{path}: the task's {split} questions are not the recorded ones")
        if changed := differing_fields(space, header.space):
            raise TableError(f"{path} was recorded on another search space ({', '.join(changed)})")
        return cls(table)

    async def score(self, artifact: GraphArtifact, questions: Sequence[Question]) -> Measurement:
        self.calls += 1
        space = self.table.header.space
        if (artifact.task, artifact.budget, artifact.models) != (
            space.task,
            space.budget,
            space.pool,
        ):
            raise TableError(f"{self.table.path}: the graph is of another task, budget or pool")
        candidate = Candidate(nodes=artifact.nodes, edges=artifact.edges, sink=artifact.sink)
        key = candidate.key()
        if key not in self._canonical and len(candidate.nodes) <= space.max_nodes:
            self._canonical[key] = canonical_key(candidate)
        rows = self._rows.get(self._canonical.get(key, ""))
        if rows is None:
            raise TableError(
                f"{self.table.path}: graph {key} is not in the table (it holds "
                f"{len(self._rows)} graphs of up to {space.max_nodes} nodes)"
            )
        missing = [q.id for q in questions if q.id not in rows]
        if missing:
            raise TableError(
                f"{self.table.path}: graph {key} has no recorded verdict for question "
                f"{missing[0]!r}"
            )
        return measurement([rows[q.id] for q in questions])

    async def close(self) -> None:
        return None


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def replay_request(path: Path, params: dict[str, Any]) -> SearchRequest:
    """The search request replaying the table at `path`: task, pool, budget and questions as
    recorded, the search's own options (method, iterations, ...) from `params`.

    A parameter left at its default (or None) is not given; a given table option that differs
    from the recorded one, or more questions than were recorded, is an error. Searches start
    fresh.
    """
    table = read_table(path)
    recorded = table.header.request
    defaults = request_defaults()
    given = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in params.items()
        if value is not None
    }
    given = {k: v for k, v in given.items() if k not in defaults or v != defaults[k]}
    for name in TABLE_OPTIONS:
        if name in given and given[name] != getattr(recorded, name):
            raise TableError(
                f"{_option(name)} {given[name]!r} contradicts the table {path}, recorded with "
                f"{getattr(recorded, name)!r}: leave the option out"
            )
    if "scorer" in given:
        raise TableError(f"--scorer: a replay scores from the table {path}")
    available = {"val": len(table.header.val_ids), "test": len(table.header.test_ids)}
    for name, split in QUESTION_OPTIONS.items():
        count = given.get(name)
        if isinstance(count, int) and count > available[split]:
            raise TableError(
                f"{_option(name)} {count}: the table {path} holds {available[split]} "
                f"{split} questions"
            )
    # Replayed evaluations cost nothing: a search starts over rather than resume an archive
    # that may hold another table's answers.
    replay = {"scorer": "replay", "replay": path, "fresh": True}
    chosen = msgspec.structs.asdict(recorded) | given | replay
    return SearchRequest.of(chosen)
