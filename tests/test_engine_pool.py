"""The engine pool's lifecycle (scripted engines stand in for real ones: test double)."""

from __future__ import annotations

import gc

from tts_opt.engines import pool as pool_module
from tts_opt.engines.openai_engine import OpenAIEngineConfig
from tts_opt.engines.pool import EnginePool, PoolConfig
from tts_opt.engines.scripted import ScriptedEngine


async def test_starting_engines_freezes_the_heap_they_leave(monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "build_engine", lambda config: ScriptedEngine(config.model))
    config = OpenAIEngineConfig(model="m", base_url="http://127.0.0.1:9/v1")
    pool = EnginePool(PoolConfig(engines=(config,)))
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    engines = await pool.start(["m"])
    assert list(engines) == ["m"]
    frozen = gc.get_freeze_count()
    assert frozen > 0  # the startup heap is out of the collector's reach
    gc.unfreeze()
    await pool.start(["m"])  # already running: nothing started, nothing frozen
    assert gc.get_freeze_count() == 0
    await pool.close()
    assert pool.engines == {}
