"""Draw the samples that many graphs share before any graph runs, in requests that fill the
engines.

Every graph that asks a model the question alone (a source assistant) draws that model's source
samples with seed offsets 0, 1, ... (`tts_opt.runtime.plan`), so the first k of them are the same
draws in every graph with k such nodes. Drawing them up front, one request per model and question
with the most samples any graph can use, lets the engine batch dozens of sequences (where
evaluating graph by graph keeps a few in flight), and the node cache then replays them to every
graph that needs them.

The requests in flight per engine are held to a full batch (`sequences`), not all questions at
once: a request queued inside the engine would count its wait in its recorded generation time,
which a replayed graph's latency is computed from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import aclosing

from tts_opt.engines.base import ChatMessage, Engine
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.evaluation.cache import NodeCache
from tts_opt.evaluation.caching_engine import CachingEngine
from tts_opt.graph.schema import Decoding, RoleTemplates
from tts_opt.runtime.plan import CallGroup, sampling_params
from tts_opt.runtime.prompts import node_messages
from tts_opt.tasks.schema import Question


async def presample(
    counts: Mapping[str, int],
    questions: Sequence[Question],
    engines: Mapping[str, Engine],
    cache: NodeCache,
    templates: RoleTemplates,
    decoding: Decoding,
    *,
    sequences: int = MAX_NUM_SEQS,
) -> int:
    """Store, for each model of `counts` and each question, the model's first `counts[model]`
    source-assistant samples under `decoding` (as evaluation runs it), with at most `sequences`
    of a model generating at once; returns the samples drawn (those already stored are not drawn
    again)."""
    drawn = 0
    batches = {model: asyncio.Semaphore(max(1, sequences // k)) for model, k in counts.items() if k}

    async def draw(model: str, k: int, index: int, question: Question) -> None:
        nonlocal drawn
        call = CallGroup(model, "assistant", tuple(f"s{i}" for i in range(k)), (), False)
        messages = node_messages(templates, "assistant", [ChatMessage("user", question.prompt)], [])
        engine = CachingEngine(engines[model], cache)
        async with batches[model]:
            stream = engine.generate(
                f"presample-{model}-{index}", messages, sampling_params(decoding, call)
            )
            async with aclosing(stream) as deltas:
                async for _ in deltas:
                    pass
        drawn += engine.misses

    await asyncio.gather(
        *(
            draw(model, k, index, question)
            for model, k in counts.items()
            if k > 0
            for index, question in enumerate(questions)
        )
    )
    return drawn
