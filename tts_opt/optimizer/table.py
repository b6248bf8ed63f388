"""The replay table: every graph of a small search space scored once on fixed questions.

A JSONL file: a header (the search request, its space, the data's sha256, the question ids), then
one line per graph with its verdict, tokens, FLOPs and latency on every question. Each question
is scored alone, so a replay can answer any subset of them with exactly what was recorded.
Lines are appended and fsynced one graph at a time like the search archive, so a killed recording
resumes at the next graph; a torn last line is cut off, and resuming with other settings is
refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from tts_opt import __version__
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.errors import UserError
from tts_opt.optimizer.archive import append_line, read_records
from tts_opt.optimizer.candidate_set import all_candidates, canonical_key
from tts_opt.optimizer.objective import GraphScorer
from tts_opt.optimizer.service import SearchRequest, make_scorer, search_space
from tts_opt.optimizer.space import Candidate, SearchSpace
from tts_opt.tasks import get_task
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

# Single-question runs in flight per graph: enough for the engine's best batch (a graph's first
# layer alone then fills it).
QUESTIONS_AT_ONCE = MAX_NUM_SEQS


class TableError(UserError, ValueError):
    """A table that cannot be used as asked; the message names the file."""


class TableHeader(msgspec.Struct, frozen=True, tag="table"):
    """What the table was recorded from. `request` is the recording's search request: a replay
    takes its task, pool, budget and question counts from it."""

    request: SearchRequest
    space: SearchSpace
    data_sha256: str
    val_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    graphs: int
    command: tuple[str, ...] = ()
    created_at: str = ""
    tool_version: str = ""

    def settings(self) -> TableHeader:
        """The header without what may differ between the sessions of one recording."""
        return msgspec.structs.replace(self, command=(), created_at="", tool_version="")


class QuestionRow(msgspec.Struct, frozen=True, array_like=True):
    """One graph on one question; `latency_s` is None where the scorer measured none."""

    id: str
    correct: bool
    tokens: int
    flops: float
    latency_s: float | None


class GraphRow(msgspec.Struct, frozen=True, tag="graph"):
    """One graph (a representative of its isomorphism class; readers match graphs by
    `canonical_key`, recomputed, not by the stored names) on every question."""

    candidate: Candidate
    cost: float
    questions: tuple[QuestionRow, ...]

    @property
    def accuracy(self) -> float:
        """The graph's accuracy over every question of the table: a replay's ground truth."""
        return sum(q.correct for q in self.questions) / len(self.questions)


Line = TableHeader | GraphRow
_decoder = msgspec.json.Decoder(Line, dec_hook=lambda type_, obj: type_(obj))  # paths
_encoder = msgspec.json.Encoder(enc_hook=str)


@dataclasses.dataclass(frozen=True)
class Table:
    path: Path
    header: TableHeader
    rows: tuple[GraphRow, ...]

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.header.graphs


def read_table(path: Path) -> Table:
    """The table at `path` (a torn last line is cut off)."""
    if not path.is_file():
        raise TableError(f"{path}: no such replay table")
    lines = read_records(path, _decoder.decode, TableError)
    if not lines or not isinstance(lines[0], TableHeader):
        raise TableError(f"{path} does not start with a replay table header")
    rows = tuple(r for r in lines[1:] if isinstance(r, GraphRow))
    return Table(path, lines[0], rows)


def table_header(
    task: Task, space: SearchSpace, request: SearchRequest, graphs: int
) -> TableHeader:
    """The header of a recording of `graphs` candidates; paths that do not change what is
    recorded (output, engine config) are left out."""
    stored = msgspec.structs.replace(request, out=Path("graphs"), engines=None, fresh=False)
    val, test = table_questions(task, request)
    return TableHeader(
        request=stored,
        space=space,
        data_sha256=task.data_sha256,
        val_ids=tuple(q.id for q in val),
        test_ids=tuple(q.id for q in test),
        graphs=graphs,
        command=tuple(sys.argv),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
    )


def table_questions(
    task: Task, request: SearchRequest
) -> tuple[tuple[Question, ...], tuple[Question, ...]]:
    """The validation and test questions a search with `request` asks for (the runner's sets)."""
    val = task.split("val", limit=max(request.val_questions, request.reeval_questions))
    return val, task.split("test", limit=request.test_questions)


def differing_fields(a: msgspec.Struct, b: msgspec.Struct) -> list[str]:
    """The names of the fields two structs of one type differ in."""
    fields = msgspec.structs.fields(a)
    return [f.name for f in fields if getattr(a, f.name) != getattr(b, f.name)]


def _open(path: Path, header: TableHeader, fresh: bool) -> Table:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fresh or not path.exists() or path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        append_line(path, _encoder.encode(header))
        return Table(path, header, ())
    table = read_table(path)
    if (changed := differing_fields(table.header.settings(), header.settings())) != []:
        raise TableError(
            f"{path} was recorded with other settings ({', '.join(changed)} differ); "
            "pass --fresh to start over or record to another file"
        )
    return table


async def _score_row(
    candidate: Candidate, space: SearchSpace, scorer: GraphScorer, questions: Sequence[Question]
) -> GraphRow:
    artifact = space.artifact(candidate)
    slots = asyncio.Semaphore(QUESTIONS_AT_ONCE)

    async def one(question: Question) -> QuestionRow:
        async with slots:
            m = await scorer.score(artifact, [question])
        return QuestionRow(question.id, m.outcomes[0], m.tokens, m.flops, m.latency_p50_s)

    rows = await asyncio.gather(*(one(q) for q in questions))
    return GraphRow(candidate, space.cost(candidate), tuple(rows))


RecordProgress = Callable[[int, int], None]


async def record_table(
    path: Path,
    task: Task,
    space: SearchSpace,
    request: SearchRequest,
    scorer: GraphScorer,
    *,
    fresh: bool = False,
    on_progress: RecordProgress | None = None,
) -> Table:
    """Score every graph of `space` not yet in the table at `path` and append it there;
    `on_progress(done, total)` after each graph. `scorer` is not closed here."""
    val, test = table_questions(task, request)
    ids = [q.id for q in (*val, *test)]
    if not ids:
        raise TableError(f"{path}: no questions to record (raise --val-questions)")
    if len(set(ids)) != len(ids):
        raise TableError(f"{task.name}: question ids repeat across val and test; cannot record")
    candidates = all_candidates(space)
    table = _open(path, table_header(task, space, request, len(candidates)), fresh)
    done = {canonical_key(row.candidate) for row in table.rows}
    rows = list(table.rows)
    if on_progress is not None:
        on_progress(len(rows), len(candidates))
    for candidate in candidates:
        if canonical_key(candidate) in done:
            continue
        row = await _score_row(candidate, space, scorer, (*val, *test))
        append_line(path, _encoder.encode(row))
        rows.append(row)
        if on_progress is not None:
            on_progress(len(rows), len(candidates))
    return Table(path, table.header, tuple(rows))


async def record_request(
    path: Path, request: SearchRequest, *, on_progress: RecordProgress | None = None
) -> Table:
    """`record_table` for the task, space and scorer `request` names (`request.fresh` starts
    the table over); the scorer is closed at the end."""
    task = get_task(request.task)
    space = search_space(request, task)
    scorer = make_scorer(task, space, request)
    try:
        return await record_table(
            path, task, space, request, scorer, fresh=request.fresh, on_progress=on_progress
        )
    finally:
        await scorer.close()
