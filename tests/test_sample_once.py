"""Sample once: the source samples graphs share are drawn before the search in one batch per
model and question, and every graph then replays them (scripted engines, a test double)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from msgspec.structs import replace
from optimizer_support import fast_settings, paper_space
from server_support import eventually
from test_optimizer_evaluation import SPACE, TASK, engines, scorer

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.evaluation import NodeCache
from tts_opt.evaluation.presample import presample
from tts_opt.graph import Node
from tts_opt.optimizer import optimize
from tts_opt.optimizer.sample_once import SharedSampler, source_counts
from tts_opt.optimizer.space import Candidate

SMALL, MID, LARGE = (m.name for m in SPACE.pool)


def test_source_counts_are_the_most_sources_a_graph_within_the_budget_holds() -> None:
    counts = source_counts(SPACE)
    for spec in SPACE.pool:
        k = counts[spec.name]
        assert k >= 1
        sources = tuple(Node(f"s{i}", spec.name, "assistant") for i in range(k + 1))
        more = Candidate(
            nodes=(*sources, Node("f", SMALL, "fuser")),
            edges=tuple((n.id, "f") for n in sources),
            sink="f",
        )
        assert k + 1 >= SPACE.max_nodes or not SPACE.within_budget(more)
    tight = paper_space(budget=1.0)  # fits one call of the smallest model only
    assert source_counts(tight)[SMALL] == 1 and source_counts(tight)[LARGE] == 0


def test_graphs_replay_the_samples_drawn_once(tmp_path: Path) -> None:
    pool = engines()
    questions = TASK.split("val", limit=4)
    two_into_large = Candidate(
        nodes=(Node("a", MID, "assistant"), Node("b", MID, "assistant"), Node("f", LARGE, "fuser")),
        edges=(("a", "f"), ("b", "f")),
        sink="f",
    )

    async def run():
        s = scorer(pool, NodeCache(tmp_path / "cache.sqlite3"))
        assert isinstance(s, SharedSampler)
        try:
            drawn = await s.presample({MID: 3}, questions, SPACE.templates, SPACE.decoding)
            before = len(pool[MID].requests)
            await s.score(SPACE.artifact(two_into_large), questions)
            again = await s.presample({MID: 3}, questions, SPACE.templates, SPACE.decoding)
        finally:
            await s.close()
        return drawn, before, again

    drawn, before, again = asyncio.run(run())
    assert drawn == 3 * len(questions) and again == 0  # stored samples are not drawn twice
    assert [r.params.n for r in pool[MID].requests] == [3] * len(questions)
    assert len(pool[MID].requests) == before  # the graph's two MID assistants were replayed


def test_presampling_keeps_one_full_batch_per_engine_in_flight(tmp_path: Path) -> None:
    """Requests beyond the batch wait outside the engine, so no recorded generation time holds a
    wait in the engine's queue."""
    gate = asyncio.Event()
    engine = ScriptedEngine(MID, gate=gate)
    questions = TASK.split("val", limit=10)

    async def run() -> tuple[int, int]:
        with NodeCache(tmp_path / "cache.sqlite3") as cache:
            drawing = asyncio.create_task(
                presample(
                    {MID: 3},
                    questions,
                    {MID: engine},
                    cache,
                    SPACE.templates,
                    SPACE.decoding,
                    sequences=6,
                )
            )
            assert await eventually(lambda: len(engine.started) == 2)
            for _ in range(100):  # every other draw is ready to run: none may reach the engine
                await asyncio.sleep(0)
            held = len(engine.requests)
            gate.set()
            return held, await drawing

    held, drawn = asyncio.run(run())
    assert held == 2  # 6 sequences: two requests of 3 samples
    assert drawn == 30 and len(engine.requests) == len(questions)


def test_a_search_samples_once_first_and_finds_the_same_graph(tmp_path: Path) -> None:
    settings = replace(fast_settings(iterations=5), val_questions=4, pretest_questions=2)

    async def run(sample_once: bool, name: str):
        pool = engines()
        s = scorer(pool, NodeCache(tmp_path / f"{name}.sqlite3"))
        try:
            result = await optimize(
                TASK, SPACE, replace(settings, sample_once=sample_once), s, tmp_path / name
            )
        finally:
            await s.close()
        return result, pool

    once, once_pool = asyncio.run(run(True, "once"))
    live, _ = asyncio.run(run(False, "live"))
    assert once.artifact.nodes == live.artifact.nodes
    first = once_pool[SMALL].requests[0]
    assert first.params.n == source_counts(SPACE)[SMALL]  # drawn before any graph ran


def test_a_resumed_search_whose_search_stage_is_archived_draws_nothing_up_front(
    tmp_path: Path,
) -> None:
    settings = replace(fast_settings(iterations=5), val_questions=4, pretest_questions=2)

    async def run(name: str) -> dict[str, int]:
        pool = engines()
        s = scorer(pool, NodeCache(tmp_path / f"{name}.sqlite3"))
        try:
            await optimize(TASK, SPACE, settings, s, tmp_path / "archive")
        finally:
            await s.close()
        return {model: len(engine.requests) for model, engine in pool.items()}

    assert sum(asyncio.run(run("first")).values()) > 0
    # The archive replays every evaluation, so an empty node cache costs the engines nothing.
    assert asyncio.run(run("resumed")) == dict.fromkeys(engines(), 0)
