"""Which engine serves which pool model, and the lifecycle of those engines.

A pool config (JSON or TOML) lists engines; each names the pool model it serves and how: `vllm`
(in-process, co-hosted) or `openai` (remote OpenAI-compatible URL). A model that the config does not
name but that is one of the embedded models runs in-process from the local model cache.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from tts_opt.engines.base import Engine, EngineError
from tts_opt.engines.openai_engine import OpenAIEngine, OpenAIEngineConfig
from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.errors import UserError
from tts_opt.models.registry import EMBEDDED_MODELS

EngineConfig = VllmEngineConfig | OpenAIEngineConfig


class PoolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    engines: tuple[EngineConfig, ...] = ()


def freeze_static_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (`gc.freeze`).

    After torch, vLLM and the tokenizers are loaded the process holds ~600k tracked objects that
    live as long as it does; each full collection walks them all (5 s measured on this 2-core
    machine under load), stalling the event loop that streams every engine's tokens. vLLM's own
    server freezes its startup heap for the same reason. The cost: cyclic garbage among these
    objects is never reclaimed, which is nothing for objects that live until exit.
    """
    gc.collect()
    gc.freeze()


class PoolConfigError(UserError, ValueError):
    """A pool config file is malformed; the message names the file and the field."""


def load_pool_config(path: Path | None) -> PoolConfig:
    """The pool config in `path` (TOML or JSON); none given: every model in-process, embedded."""
    if path is None:
        return PoolConfig()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PoolConfigError(f"cannot read the engine pool config {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            config = msgspec.toml.decode(data, type=PoolConfig)
        else:
            config = msgspec.json.decode(data, type=PoolConfig)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoolConfigError(f"{path}: {exc}") from exc
    names = [e.model for e in config.engines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PoolConfigError(f"{path}: model(s) {', '.join(duplicates)} configured twice")
    return config


def build_engine(config: EngineConfig) -> Engine:
    if isinstance(config, OpenAIEngineConfig):
        return OpenAIEngine(config)
    from tts_opt.engines.vllm_engine import VllmEngine  # imports vllm: only when one is used

    return VllmEngine(config)


def embedded_engine_config(model: str, **overrides: Any) -> VllmEngineConfig:
    """In-process engine for an embedded model, with the defaults tuned for small CPU machines."""
    from tts_opt.models import resolve

    return VllmEngineConfig(model=model, path=str(resolve(model)), **overrides)


class EnginePool:
    """Starts the engines a set of models needs and closes them together."""

    def __init__(self, config: PoolConfig = PoolConfig()) -> None:
        self.config = config
        self.engines: dict[str, Engine] = {}
        self._starting = asyncio.Lock()  # one start at a time: a model never gets two engines

    def engine_configs(self, models: Iterable[str]) -> list[EngineConfig]:
        configured = {e.model: e for e in self.config.engines}
        return [configured.get(m) or embedded_engine_config(m) for m in dict.fromkeys(models)]

    def serves(self, model: str) -> bool:
        """Whether the pool can run `model`: configured, or one of the embedded models."""
        return model in EMBEDDED_MODELS or any(e.model == model for e in self.config.engines)

    async def engine(self, model: str) -> Engine:
        """The engine of `model`, started if it is not yet."""
        return (await self.start([model]))[model]

    async def start(
        self, models: Iterable[str], on_start: Callable[[str], None] | None = None
    ) -> dict[str, Engine]:
        """Start one engine per model, one after another (loading in parallel only fights for
        the same cores and memory bandwidth); then freeze the heap they leave behind."""
        async with self._starting:
            return await self._start(models, on_start)

    async def _start(
        self, models: Iterable[str], on_start: Callable[[str], None] | None
    ) -> dict[str, Engine]:
        started = False
        for config in self.engine_configs(models):
            if config.model in self.engines:
                continue
            if on_start is not None:
                on_start(config.model)
            engine = build_engine(config)
            try:
                await engine.start()
            except UserError:
                raise
            except Exception as exc:  # vLLM's own errors: bad model files, not enough memory
                raise EngineError(f"the engine for {config.model} did not start: {exc}") from exc
            self.engines[config.model] = engine
            started = True
        if started:
            freeze_static_heap()
        return self.engines

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.close()
        self.engines.clear()
