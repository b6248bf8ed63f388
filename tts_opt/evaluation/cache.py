"""The node-output cache: a persistent SQLite store of node samples, so graphs that share
sub-structure are not paid for twice during search.

What makes replaying valid is the seed. A sample is identified by the model, the full prompt
messages, the decoding parameters and its *sample seed*: the runtime sends every engine request
with a seed, and vLLM gives sample i of a request with seed s (and `n` samples) the seed s + i, so
sample i of a request equals the only sample of the same request with seed s + i and n = 1.
Identical calls with equal sample seeds are therefore the same draw, whichever graph, request or
batch they come from, and replaying the stored one is what the engine would have produced (up to
the floating-point noise of batching, which the cache removes: a replay is exactly reproducible).
Two special cases: greedy decoding (temperature 0) does not depend on the seed, so all its samples
share one key; without a seed a draw is not reproducible, and the cache then serves "the i-th
sample of this call", still a valid draw from the same distribution, keyed by sample index.

The store is one SQLite file in WAL mode: readers never block the writer, several processes can
share it (writes wait up to `busy_timeout`), and a sample is written once (`INSERT OR IGNORE`: when
two evaluations compute the same sample at once, the first stored stays the canonical one). All
database work runs on one thread of the cache, off the event loop.

A sample also keeps how long it took to generate, so a graph run that replays it can still report
an honest latency. The times are a table of their own, created on open: stores written before
times were recorded keep working (their samples have no time, and a replay of one has an unknown
latency), and so does a tts-opt of that time writing to a store this one opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

from tts_opt.cache import cache_root
from tts_opt.engines.base import ChatMessage, SamplingParams
from tts_opt.errors import UserError

KEY_VERSION = 1  # bump when the meaning of a key changes: old entries then simply miss
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sample_times (
    key TEXT PRIMARY KEY,
    generation_s REAL NOT NULL,
    first_token_s REAL
) WITHOUT ROWID;
"""

T = TypeVar("T")


class NodeCacheError(UserError):
    """The cache file exists but is not a readable node-output store."""


class CachedSample(msgspec.Struct, frozen=True):
    """One finished sample of a node call, with the token counts of the original call and its
    times: seconds from the engine request's start to the sample's finish and to its first
    token (None: not recorded)."""

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    generation_s: float | None = None
    first_token_s: float | None = None


def default_cache_path() -> Path:
    """`node-outputs.sqlite3` in the tts-opt cache dir (`$TTS_OPT_CACHE` or the platform's)."""
    return cache_root() / "node-outputs.sqlite3"


def sample_keys(model: str, messages: Sequence[ChatMessage], params: SamplingParams) -> list[str]:
    """The cache key of each of the request's `n` samples (see the module docstring)."""
    call = [
        KEY_VERSION,
        model,
        [[m.role, m.content] for m in messages],
        params.max_tokens,
        params.temperature,
        params.top_p,
        list(params.stop),
        # Only when set, so that keys stored before the field existed still match.
        *([] if params.json_schema is None else [params.json_schema]),
    ]

    def draw(index: int) -> list[object]:
        if params.temperature == 0:
            return ["greedy"]
        if params.seed is None:
            return ["unseeded", index]
        return ["seed", params.seed + index]

    return [
        hashlib.sha256(msgspec.json.encode([*call, draw(i)])).hexdigest() for i in range(params.n)
    ]


class NodeCache:
    """The SQLite store. Open it once per process and share it between engines and tasks.

    With `timed_only`, samples stored without a time are not served: they count as misses, are
    generated again and get their time recorded (the stored text stays the canonical one). A
    search that ranks latency uses it, so no replay leaves a latency unknown."""

    def __init__(self, path: str | Path | None = None, *, timed_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timed_only = timed_only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-cache")
        self._db: sqlite3.Connection = self._executor.submit(self._connect).result()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; may lose a tail
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM samples WHERE key = ''").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise NodeCacheError(
                f"{self.path} is not a usable node-output cache ({exc}): delete it, or run "
                "without the cache (--no-cache)"
            ) from exc
        return db

    async def _call(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def get_many(self, keys: Iterable[str]) -> dict[str, CachedSample]:
        """The stored samples among `keys` (with `timed_only`, those with a time)."""
        wanted = list(dict.fromkeys(keys))

        def read() -> dict[str, CachedSample]:
            marks = ",".join("?" * len(wanted))
            rows = self._db.execute(
                "SELECT key, text, prompt_tokens, output_tokens, finish_reason, generation_s, "
                "first_token_s FROM samples LEFT JOIN sample_times USING (key) "
                f"WHERE key IN ({marks})"
                + (" AND generation_s IS NOT NULL" if self.timed_only else ""),
                wanted,
            )
            return {key: CachedSample(*rest) for key, *rest in rows}

        return await self._call(read) if wanted else {}

    async def put(self, key: str, model: str, sample: CachedSample) -> None:
        """Store a sample unless one is stored under `key` already, and its times if known
        unless times are stored for `key` already."""
        row = (
            key,
            model,
            sample.text,
            sample.prompt_tokens,
            sample.output_tokens,
            sample.finish_reason,
            time.time(),
        )
        times = (key, sample.generation_s, sample.first_token_s)

        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")  # a sample is never seen without its time
            try:
                self._db.execute("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?)", row)
                if sample.generation_s is not None:
                    self._db.execute("INSERT OR IGNORE INTO sample_times VALUES (?,?,?)", times)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        await self._call(write)

    def count(self) -> int:
        """Stored samples."""
        return self._executor.submit(
            lambda: self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        ).result()

    def close(self) -> None:
        self._executor.submit(self._db.close).result()
        self._executor.shutdown()

    def __enter__(self) -> NodeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
