"""A task: questions, the role prompts graphs use on it, its scorer and its fixed splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from tts_opt.graph.schema import RoleTemplates
from tts_opt.tasks.errors import TaskError
from tts_opt.tasks.schema import SPLITS, Question, Score, Split
from tts_opt.tasks.scorers import Scorer


@dataclass(frozen=True, eq=False)
class Task:
    """A benchmark task.

    Splits are fixed and seeded: a question belongs to `val` iff the first 8 bytes of
    sha256("<split_seed>:<its prompt, whitespace-normalized>") read as a fraction of 2**64 are
    below `val_fraction`, else to `test`. Identical questions thus always share a split (no leak
    between val and test through duplicates), a question's split does not depend on which other
    questions are loaded (a subject filter keeps it), and sizes are close to, not exactly,
    `val_fraction`. Within a split, questions are ordered by that hash, a seeded shuffle, so
    `limit=N` takes a fixed random sample instead of, say, the first subject. Search uses `val`
    only; `test` is for the final report.
    """

    name: str
    questions: tuple[Question, ...]
    templates: RoleTemplates
    scorer: Scorer
    val_fraction: float
    description: str = ""
    split_seed: int = 0
    data_sha256: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise TaskError(f"task {self.name!r}: val_fraction must be in (0, 1)")

    def split(self, which: Split, limit: int | None = None) -> tuple[Question, ...]:
        """The questions of split `which`, in their fixed shuffled order, at most `limit`."""
        if which not in SPLITS:
            raise TaskError(f"unknown split {which!r}; splits: {', '.join(SPLITS)}")
        if limit is not None and limit < 0:
            raise TaskError(f"limit must be >= 0, got {limit}")
        questions = self._splits[which]
        return questions if limit is None else questions[:limit]

    @cached_property
    def _splits(self) -> dict[str, tuple[Question, ...]]:
        threshold = self.val_fraction * 2**64
        ranked = sorted(
            ((_rank(self.split_seed, q.prompt), q.id, q) for q in self.questions),
            key=lambda item: item[:2],
        )
        return {
            "val": tuple(q for rank, _, q in ranked if rank < threshold),
            "test": tuple(q for rank, _, q in ranked if rank >= threshold),
        }

    def extract(self, output: str, question: Question) -> str | None:
        """The final answer in a model's output, as the scorer reads it."""
        return self.scorer.extract(output, question)

    async def score(self, output: str, question: Question) -> Score:
        return await self.scorer.score(output, question)


def _rank(seed: int, prompt: str) -> int:
    key = f"{seed}:{' '.join(prompt.split())}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
