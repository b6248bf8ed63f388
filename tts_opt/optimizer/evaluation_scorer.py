"""The real `GraphScorer`: runs graphs on engines through `tts_opt.evaluation`.

Engines start on first use (in the search's event loop) and stay up for the whole search; with a
node cache, a node already run with the same prompt and seed is replayed, so re-evaluating a
finalist or a graph that shares nodes with earlier ones costs little. A replayed node returns at
once, so the latency of a run that replays some is its critical path over the nodes' recorded
times (the measurement says so: `latency_replayed`); it is unknown only where a replayed node's
time was not recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tts_opt.engines.base import Engine
from tts_opt.engines.vllm_config import MAX_NUM_SEQS
from tts_opt.evaluation import NodeCache, evaluate
from tts_opt.evaluation.presample import presample
from tts_opt.evaluation.runner import evaluated_decoding
from tts_opt.graph.schema import Decoding, GraphArtifact, RoleTemplates
from tts_opt.optimizer.objective import Measurement
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task


class EvaluationScorer:
    """Scores artifacts of one task on engines that `start` provides at the first score;
    `stop` (e.g. `EnginePool.close`) runs on `close`, when the search ends."""

    def __init__(
        self,
        task: Task,
        start: Callable[[], Awaitable[Mapping[str, Engine]]],
        stop: Callable[[], Awaitable[None]] | None = None,
        *,
        cache: NodeCache | None = None,
        concurrency: int = MAX_NUM_SEQS,
        seed: int = 0,
    ) -> None:
        self.task = task
        self.start = start
        self.stop = stop
        self.cache = cache
        self.concurrency = concurrency
        self.seed = seed
        self._engines: Mapping[str, Engine] | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> Mapping[str, Engine]:
        async with self._lock:
            if self._engines is None:
                self._engines = await self.start()
            return self._engines

    async def score(self, artifact: GraphArtifact, questions: Sequence[Question]) -> Measurement:
        report = await evaluate(
            artifact,
            self.task,
            questions,
            await self._started(),
            cache=self.cache,
            concurrency=self.concurrency,
            seed=self.seed,
        )
        latency = report.latency
        latencies = [result.latency_s for result in report.results]
        return Measurement(
            accuracy=report.accuracy.value,
            n=report.n,
            ci_low=report.accuracy.ci_low,
            ci_high=report.accuracy.ci_high,
            latency_p50_s=None if latency is None else latency.p50_s,
            latency_p95_s=None if latency is None else latency.p95_s,
            flops=report.mean_flops,
            tokens=round(report.mean_tokens * report.n),
            outcomes=tuple(result.correct for result in report.results),
            latencies_s=() if None in latencies else tuple(t for t in latencies if t is not None),
            latency_replayed=latency is not None and latency.replayed > 0,
        )

    async def presample(
        self,
        counts: Mapping[str, int],
        questions: Sequence[Question],
        templates: RoleTemplates,
        decoding: Decoding,
    ) -> int:
        """Draw and store the source samples of `counts` (`tts_opt.optimizer.sample_once`) as
        this scorer's evaluations will ask for them; nothing without a node cache to keep them."""
        if self.cache is None:
            return 0
        return await presample(
            counts,
            questions,
            await self._started(),
            self.cache,
            templates,
            evaluated_decoding(decoding, self.seed, None),
        )

    async def close(self) -> None:
        if self.stop is not None:
            await self.stop()
        if self.cache is not None:
            self.cache.close()
