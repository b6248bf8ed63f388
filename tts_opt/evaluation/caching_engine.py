"""An Engine that answers from the node-output cache where it can and from its inner engine
where it must, so the graph runtime gets caching without knowing about it."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

import msgspec

from tts_opt.engines.base import ChatMessage, Engine, SampleDelta, SamplingParams
from tts_opt.evaluation.cache import CachedSample, NodeCache, sample_keys

# Samples that ended like this were cut short, not completed: they are not stored.
UNFINISHED = frozenset({"abort", "error"})


class CachingEngine:
    """Wraps `engine` with `cache` (keys: `tts_opt.evaluation.cache.sample_keys`).

    Per request, stored samples are replayed first, each as one delta with its original token
    counts, marked replayed with its recorded generation time. The missing ones come from one
    inner request over the span from the first to the last missing sample index, seeded so that
    its samples are exactly the missing sample seeds (seed + first); samples inside the span
    that were hits are dropped from its stream. Missing samples stream through as the inner
    engine produces them and are stored as each finishes, with its times measured from the
    start of the inner request.
    `hits` and `misses` count samples.
    """

    def __init__(self, engine: Engine, cache: NodeCache) -> None:
        self.inner = engine
        self.cache = cache
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        return self.inner.model

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return await self.inner.count_tokens(messages)

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        keys = sample_keys(self.model, messages, params)
        stored = await self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in stored]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        for index, key in enumerate(keys):
            if key in stored:
                s = stored[key]
                yield SampleDelta(
                    index,
                    s.text,
                    s.prompt_tokens,
                    s.output_tokens,
                    s.finish_reason,
                    replayed=True,
                    recorded_s=s.generation_s,
                )
        if not missing:
            return
        first = missing[0]
        span = msgspec.structs.replace(
            params,
            n=missing[-1] - first + 1,
            seed=None if params.seed is None else params.seed + first,
        )
        texts: dict[int, list[str]] = {i: [] for i in missing}
        first_token_s: dict[int, float] = {}
        start = time.perf_counter()
        async with aclosing(self.inner.generate(request_id, messages, span)) as deltas:
            async for delta in deltas:
                elapsed = time.perf_counter() - start
                index = first + delta.index
                if index not in texts:  # a hit recomputed inside the span
                    continue
                texts[index].append(delta.text)
                if delta.text:
                    first_token_s.setdefault(index, elapsed)
                yield msgspec.structs.replace(delta, index=index)
                reason = delta.finish_reason
                if reason is not None and reason not in UNFINISHED:
                    sample = CachedSample(
                        "".join(texts[index]),
                        delta.prompt_tokens,
                        delta.output_tokens,
                        reason,
                        generation_s=elapsed,
                        first_token_s=first_token_s.get(index),
                    )
                    await self.cache.put(keys[index], self.model, sample)
