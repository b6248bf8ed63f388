"""The search archive: every evaluation and agent decision, appended as it happens.

JSONL, one record per line, each written with a single `write` on an O_APPEND descriptor and
fsynced before the search goes on, so a killed search loses at most the evaluation in flight.
A torn last line (killed mid-write) is cut off when the archive is reopened. The header holds a
fingerprint of everything that determines the search; resuming under different settings is
refused instead of silently mixing two searches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from tts_opt.errors import UserError
from tts_opt.optimizer.objective import Measurement
from tts_opt.optimizer.space import Candidate

Stage = Literal["pretest", "init", "search", "reeval", "test"]
SEARCH_STAGES: tuple[Stage, ...] = ("pretest", "init", "search")
BEST_STAGES: tuple[Stage, ...] = ("init", "search")  # where the search's best is found
AgentKind = Literal["multisets", "proposal"]


class RunHeader(msgspec.Struct, frozen=True, tag="run"):
    fingerprint: str
    settings: msgspec.Raw
    created_at: str


class EvaluationRecord(msgspec.Struct, frozen=True, tag="evaluation"):
    """One graph evaluated on one question set. `index` counts search-stage evaluations (the
    x axis of the search curve); selection evaluations (reeval, test) have index -1."""

    index: int
    stage: Stage
    candidate: Candidate
    measurement: Measurement
    cost: float
    utility: float
    seed: int
    elapsed_s: float
    agent_call: int | None = None
    node_calls: int = 0  # node calls it took (one node on one question, cached or not)
    # Racing stopped it before all of its stage's questions: it trailed the incumbent there,
    # and its utility (on fewer questions) does not compete for the best.
    raced_out: bool = False

    @property
    def competes(self) -> bool:
        """Whether it may be the search's best: a search-stage graph scored on every question."""
        return self.stage in BEST_STAGES and not self.raced_out


class AgentRecord(msgspec.Struct, frozen=True, tag="agent"):
    """One agent decision: `payload` is the MultisetChoice or Proposal, with every prompt and
    reply exchanged for it."""

    index: int
    kind: AgentKind
    payload: msgspec.Raw
    elapsed_s: float


Record = RunHeader | EvaluationRecord | AgentRecord


class ArchiveMismatch(UserError, RuntimeError):
    """The archive belongs to another search (settings changed) or diverged from this one."""


_decoder = msgspec.json.Decoder(Record)
_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def read_records(
    path: Path, decode: Callable[[bytes], T], corrupt: Callable[[str], Exception]
) -> list[T]:
    """The records of the JSONL file at `path`; a torn last line (a write that never completed)
    is cut off the file, a bad line before the end raises `corrupt(message)`."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[T] = []
    offset = good = 0
    for number, line in enumerate(lines):
        if line.strip():
            try:
                records.append(decode(line))
            except msgspec.DecodeError as exc:
                if any(rest.strip() for rest in lines[number + 1 :]):
                    raise corrupt(f"{path}:{number + 1}: corrupt record: {exc}") from exc
                break
        offset += len(line) + 1
        good = min(offset, len(data))
    if good < len(data):
        with path.open("r+b") as f:
            f.truncate(good)
    return records


def append_line(path: Path, line: bytes) -> None:
    """Append `line` and a newline in one write on an O_APPEND descriptor, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


class Archive:
    """Open with `Archive.open`; the records read back are in `evaluations` and `agent`."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        self.header = header
        self.evaluations: list[EvaluationRecord] = []
        self.agent: list[AgentRecord] = []

    @classmethod
    def open(cls, path: Path, header: RunHeader, *, fresh: bool = False) -> Archive:
        """Resume the archive at `path` (same fingerprint required), or start it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        archive = cls(path, header)
        if fresh or not path.exists() or path.stat().st_size == 0:
            path.unlink(missing_ok=True)
            archive._append(header)
            return archive
        records = archive._read()
        first = records[0] if records else None
        if not isinstance(first, RunHeader):
            raise ArchiveMismatch(f"{path} does not start with a run header")
        if first.fingerprint != header.fingerprint:
            raise ArchiveMismatch(
                f"{path} holds a search with other settings; pass --fresh to start over "
                "or use another output directory"
            )
        archive.header = first
        for record in records[1:]:
            if isinstance(record, EvaluationRecord):
                archive.evaluations.append(record)
            elif isinstance(record, AgentRecord):
                archive.agent.append(record)
        return archive

    def _read(self) -> list[Record]:
        return read_records(self.path, _decoder.decode, ArchiveMismatch)

    def _append(self, record: Record) -> None:
        append_line(self.path, _encoder.encode(record))

    def add_evaluation(self, record: EvaluationRecord) -> None:
        self._append(record)
        self.evaluations.append(record)

    def add_agent(self, record: AgentRecord) -> None:
        self._append(record)
        self.agent.append(record)
