"""The node-output cache: keys, replay equal to the engine's own samples, sharing between graphs,
concurrent writers (tasks and processes), cancellation and the disabled cache."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import aclosing
from pathlib import Path

import pytest
from evaluation_support import LARGE, N_QUESTIONS, SMALL, SeededEngine, arithmetic_task
from hypothesis import given, settings
from hypothesis import strategies as st

from tts_opt.engines.base import ChatMessage, SamplingParams, collect
from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.evaluation import (
    CachedSample,
    CachingEngine,
    NodeCache,
    NodeCacheError,
    evaluate,
    parallel_graph,
    sample_keys,
    single_model_graph,
)
from tts_opt.tasks import Task

PROMPT = [ChatMessage("user", "What is 2 + 1?")]


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return arithmetic_task(tmp_path)


@pytest.fixture
def cache(tmp_path: Path):
    with NodeCache(tmp_path / "cache.sqlite3") as store:
        yield store


def seeded_pool() -> dict[str, SeededEngine]:
    return {m.name: SeededEngine(m.name) for m in (SMALL, LARGE)}


def test_sample_keys_follow_the_sample_seed() -> None:
    three = sample_keys("m", PROMPT, SamplingParams(n=3, seed=10))
    assert len(set(three)) == 3
    assert sample_keys("m", PROMPT, SamplingParams(n=1, seed=11)) == three[1:2]
    assert sample_keys("m", PROMPT, SamplingParams(n=2, seed=11)) == three[1:]
    for other in (
        sample_keys("other", PROMPT, SamplingParams(seed=10)),
        sample_keys("m", [ChatMessage("user", "What is 3 + 1?")], SamplingParams(seed=10)),
        sample_keys("m", PROMPT, SamplingParams(seed=10, max_tokens=7)),
        sample_keys("m", PROMPT, SamplingParams(seed=10, temperature=0.5)),
        sample_keys("m", PROMPT, SamplingParams(seed=10, stop=("\n",))),
    ):
        assert other[0] not in three
    greedy = sample_keys("m", PROMPT, SamplingParams(n=2, seed=1, temperature=0))
    assert greedy[0] == greedy[1] == sample_keys("m", PROMPT, SamplingParams(temperature=0))[0]
    unseeded = sample_keys("m", PROMPT, SamplingParams(n=2))
    assert len(set(unseeded)) == 2 and not set(unseeded) & set(three)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 5), st.sampled_from([0.0, 0.7])),
        min_size=1,
        max_size=6,
    )
)
def test_replay_equals_what_the_engine_would_produce(tmp_path_factory, requests) -> None:
    """Whatever mix of n, seeds and greedy requests comes, a cached answer is sample-for-sample
    the engine's own, and each distinct sample is stored once."""

    async def check() -> None:
        truth, inner = SeededEngine("m"), SeededEngine("m")
        with NodeCache(tmp_path_factory.mktemp("c") / "c.sqlite3") as store:
            cached = CachingEngine(inner, store)
            computed: set[str] = set()
            for i, (n, seed, temperature) in enumerate(requests):
                params = SamplingParams(n=n, seed=seed, temperature=temperature, max_tokens=50)
                expected = await collect(truth, f"t{i}", PROMPT, params)
                assert await collect(cached, f"c{i}", PROMPT, params) == expected
                computed |= set(sample_keys("m", PROMPT, params))
            samples = sum(r.params.n for r in inner.requests)
            assert cached.hits + cached.misses == sum(n for n, _, _ in requests)
            assert store.count() == len(computed) and samples >= len(computed)

    asyncio.run(check())


async def test_partial_hits_ask_the_engine_only_for_the_missing_span(cache: NodeCache) -> None:
    inner = SeededEngine("m")
    engine = CachingEngine(inner, cache)
    await collect(engine, "a", PROMPT, SamplingParams(n=1, seed=5))
    result = await collect(engine, "b", PROMPT, SamplingParams(n=3, seed=5))
    assert [s.text.split(":")[0] for s in result.samples] == ["draw 5", "draw 6", "draw 7"]
    assert [(r.params.n, r.params.seed) for r in inner.requests] == [(1, 5), (2, 6)]
    assert (engine.hits, engine.misses) == (1, 3)


async def test_a_graph_sharing_nodes_with_an_earlier_one_hits_the_cache(
    task: Task, cache: NodeCache
) -> None:
    """single:SMALL, then 3 x SMALL -> LARGE fuser: the parallel graph's first assistant sample
    is the single graph's node (same prompt, same sample seed), the other two and the fuser are
    new. A third evaluation of the parallel graph is served entirely from the cache."""
    pool = seeded_pool()
    single = await evaluate(
        single_model_graph(task, SMALL), task, task.questions, pool, cache=cache
    )
    assert (single.cache.hits, single.cache.misses) == (0, N_QUESTIONS)
    assert len(pool[SMALL.name].requests) == N_QUESTIONS

    wide = parallel_graph(task, [SMALL, SMALL, SMALL], LARGE)
    first = await evaluate(wide, task, task.questions, pool, cache=cache)
    assert (first.cache.hits, first.cache.misses) == (N_QUESTIONS, 3 * N_QUESTIONS)
    assert all((r.cache_hits, r.cache_misses) == (1, 3) for r in first.results)
    new_small = pool[SMALL.name].requests[N_QUESTIONS:]
    assert len(new_small) == N_QUESTIONS  # one request per question, for samples 1 and 2 only
    assert {(r.params.n, r.params.seed) for r in new_small} == {(2, 1)}
    assert first.latency_uncached is None  # every run had a hit
    assert first.latency is not None and first.latency.replayed == N_QUESTIONS

    before = {m: len(e.requests) for m, e in pool.items()}
    again = await evaluate(wide, task, task.questions, pool, cache=cache)
    assert {m: len(e.requests) for m, e in pool.items()} == before
    assert (again.cache.hits, again.cache.misses) == (4 * N_QUESTIONS, 0)

    uncached = await evaluate(wide, task, task.questions, seeded_pool())
    for report in (first, again):
        assert [r.output for r in report.results] == [r.output for r in uncached.results]
        assert [r.tokens for r in report.results] == [r.tokens for r in uncached.results]
        assert report.mean_flops == uncached.mean_flops
        assert report.accuracy == uncached.accuracy


def set_times(path: Path, where: str, seconds: float | None) -> None:
    """Give the stored samples matching the SQL condition `where` a generation time (None:
    none recorded)."""
    db = sqlite3.connect(path)
    with db:
        chosen = f"SELECT key FROM samples WHERE {where}"
        db.execute(f"DELETE FROM sample_times WHERE key IN ({chosen})")
        if seconds is not None:
            db.execute(
                f"INSERT INTO sample_times SELECT key, ?, NULL FROM samples WHERE {where}",
                (seconds,),
            )
    db.close()


async def test_a_replayed_run_is_timed_by_its_recorded_node_times(task: Task, cache: NodeCache):
    """3 x SMALL -> LARGE fuser: the first evaluation measures and records every sample's time;
    replayed, each run takes the critical path over the recorded times (the assistants in
    parallel, then the fuser), marked replayed."""
    graph = parallel_graph(task, [SMALL, SMALL, SMALL], LARGE)
    first = await evaluate(graph, task, task.questions, seeded_pool(), cache=cache)
    assert first.latency == first.latency_uncached and first.latency is not None
    assert first.latency.replayed == 0
    assert all(r.latency_s is not None and not r.latency_replayed for r in first.results)
    db = sqlite3.connect(cache.path)
    times = db.execute(
        "SELECT generation_s, first_token_s FROM samples LEFT JOIN sample_times USING (key)"
    ).fetchall()
    db.close()
    assert len(times) == 4 * N_QUESTIONS
    assert all(0 <= first_token <= total for total, first_token in times)

    set_times(cache.path, f"model = '{SMALL.name}'", 2.0)
    set_times(cache.path, f"model = '{LARGE.name}'", 3.0)
    pool = seeded_pool()
    again = await evaluate(graph, task, task.questions, pool, cache=cache)
    assert not any(engine.requests for engine in pool.values())
    assert all(r.latency_s == 5.0 and r.latency_replayed for r in again.results)
    assert again.latency is not None and again.latency_uncached is None
    assert (again.latency.p50_s, again.latency.n, again.latency.replayed) == (
        5.0,
        N_QUESTIONS,
        N_QUESTIONS,
    )


async def test_a_replayed_sample_without_a_recorded_time_leaves_its_run_unknown(
    task: Task, cache: NodeCache
) -> None:
    graph = parallel_graph(task, [SMALL, SMALL], LARGE)
    await evaluate(graph, task, task.questions, seeded_pool(), cache=cache)
    set_times(cache.path, "1", 1.0)
    set_times(cache.path, f"model = '{LARGE.name}' AND text LIKE '%Adding one to 0 %'", None)
    again = await evaluate(graph, task, task.questions, seeded_pool(), cache=cache)
    unknown = [r.id for r in again.results if r.latency_s is None]
    assert unknown == ["q0"] and all(r.latency_replayed for r in again.results)
    assert all(r.latency_s == 2.0 for r in again.results if r.id != "q0")
    assert again.latency is not None and again.latency.n == N_QUESTIONS - 1

    set_times(cache.path, f"model = '{LARGE.name}'", None)
    blind = await evaluate(graph, task, task.questions, seeded_pool(), cache=cache)
    assert all(r.latency_s is None for r in blind.results) and blind.latency is None


OLD_SCHEMA = """
CREATE TABLE samples (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID
"""


async def test_a_cache_file_without_times_is_migrated_and_its_samples_replay_untimed(
    tmp_path: Path,
) -> None:
    """A store of the first schema gains the times table on open; its samples replay with no
    recorded time, new ones are timed, and a writer of the first schema can still add samples."""
    path = tmp_path / "old.sqlite3"
    params = SamplingParams(n=2, seed=5)
    old_key, new_key = sample_keys("m", PROMPT, params)
    old_insert = "INSERT INTO samples VALUES (?, 'm', 'old answer', 4, 2, 'stop', 0)"
    db = sqlite3.connect(path)
    with db:
        db.execute(OLD_SCHEMA)
        db.execute(old_insert, [old_key])
    db.close()

    with NodeCache(path) as store:
        old = CachedSample("old answer", 4, 2, "stop")
        assert old.generation_s is None and await store.get_many([old_key]) == {old_key: old}
        engine = CachingEngine(SeededEngine("m"), store)
        async with aclosing(engine.generate("r", PROMPT, params)) as stream:
            deltas = [delta async for delta in stream]
        replayed = [d for d in deltas if d.replayed]
        assert [(d.index, d.text, d.recorded_s) for d in replayed] == [(0, "old answer", None)]
        new = (await store.get_many([new_key]))[new_key]
        assert new.generation_s is not None and new.first_token_s is not None
        assert 0 <= new.first_token_s <= new.generation_s
    db = sqlite3.connect(path)
    with db:
        db.execute(old_insert, ["k-written-by-the-first-schema"])
    db.close()
    with NodeCache(path) as store:  # opening a migrated file again changes nothing
        assert store.count() == 3
        assert (await store.get_many([new_key]))[new_key] == new


async def test_a_timed_only_cache_generates_untimed_samples_again_and_records_their_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite3"
    params = SamplingParams(seed=5)
    (key,) = sample_keys("m", PROMPT, params)
    with NodeCache(path) as store:
        await store.put(key, "m", CachedSample("stored answer", 4, 2, "stop"))
    with NodeCache(path, timed_only=True) as store:
        assert await store.get_many([key]) == {}
        inner = SeededEngine("m")
        engine = CachingEngine(inner, store)
        await collect(engine, "r", PROMPT, params)
        assert len(inner.requests) == 1 and (engine.hits, engine.misses) == (0, 1)
        timed = (await store.get_many([key]))[key]
        assert timed.text == "stored answer" and timed.generation_s is not None
        replayed = await collect(engine, "r2", PROMPT, params)
        assert len(inner.requests) == 1 and replayed.samples[0].text == "stored answer"


async def test_without_cache_every_call_reaches_the_engine(task: Task) -> None:
    pool = seeded_pool()
    graph = single_model_graph(task, SMALL)
    for _ in range(2):
        report = await evaluate(graph, task, task.questions, pool)
        assert not report.cache.enabled and report.cache.path is None
        assert all(r.cache_hits == r.cache_misses == 0 for r in report.results)
    assert len(pool[SMALL.name].requests) == 2 * N_QUESTIONS


async def test_an_abandoned_stream_stores_nothing(cache: NodeCache) -> None:
    inner = ScriptedEngine("m", token_delay_s=0.01)
    engine = CachingEngine(inner, cache)
    async with aclosing(engine.generate("r", PROMPT, SamplingParams(seed=1))) as deltas:
        await anext(deltas)
    assert inner.aborted == ["r"] and cache.count() == 0
    await collect(engine, "r2", PROMPT, SamplingParams(seed=1))
    assert cache.count() == 1


async def test_concurrent_tasks_share_one_cache(cache: NodeCache) -> None:
    async def writer(worker: int) -> None:
        for i in range(20):
            key = f"k{(worker * 7 + i) % 30}"
            await cache.put(key, "m", CachedSample(f"text {key}", 1, 2, "stop"))
            stored = await cache.get_many([key, "missing"])
            assert stored == {key: CachedSample(f"text {key}", 1, 2, "stop")}

    await asyncio.gather(*(writer(w) for w in range(8)))
    assert cache.count() == 30


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from tts_opt.evaluation import CachedSample, NodeCache

    async def main(path, offset):
        with NodeCache(path) as cache:
            for i in range(offset, offset + 200):
                await cache.put(f"k{i}", "m", CachedSample(f"text {i}", i, i, "stop"))
                assert f"k{i}" in await cache.get_many([f"k{i}"])

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_two_processes_write_one_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(offset)])
        for offset in (0, 100)  # keys 100..199 are written by both
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = db.execute("SELECT key, text, prompt_tokens FROM samples").fetchall()
    db.close()
    assert len(rows) == 300
    assert all(text == f"text {key[1:]}" and tokens == int(key[1:]) for key, text, tokens in rows)


@pytest.mark.parametrize(
    "content", [b"not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 200]
)
def test_a_corrupt_cache_file_is_rejected_by_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node-outputs.sqlite3"
    path.write_bytes(content)
    with pytest.raises(NodeCacheError, match=f"{path} is not a usable node-output cache"):
        NodeCache(path)
    assert path.read_bytes() == content  # nothing of the user's is lost
