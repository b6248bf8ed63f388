"""In-process vLLM engine (`AsyncLLM`, v1): one per model, several co-hosted in one process.

vLLM runs the model in an engine-core process it spawns; that process reads its CPU settings
(OpenMP thread binding) from environment variables inherited at spawn time. So each engine sets
them only while its engine core is spawned, under a lock, and engines with different bindings
can share one server process. The KV-cache size goes through the `kv_cache_memory_bytes` engine
argument rather than the legacy `VLLM_CPU_KVCACHE_SPACE` variable, for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from tts_opt.engines.base import ChatMessage, EngineError, SampleDelta, SamplingParams
from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.engines.vllm_metrics import ENGINE_METRICS, stat_logger

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

GiB = 1 << 30
CPU_STEP_TOKENS = 4096  # vllm-cpu's own default token budget per step
logger = logging.getLogger(__name__)


class VllmEngine:
    """`Engine` backed by an in-process vLLM `AsyncLLM`."""

    def __init__(self, config: VllmEngineConfig) -> None:
        self.config = config
        self._llm: AsyncLLM | None = None
        self._start_lock = asyncio.Lock()
        self._chat = False
        self._bos_id: int | None = None
        self._in_flight: set[str] = set()
        self._metrics: CollectorRegistry | None = None  # vLLM's metrics of the running engine

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def in_flight(self) -> int:
        """Requests the engine still holds (vLLM's own count, sub-requests of `n > 1` included)."""
        return 0 if self._llm is None else self._llm.get_num_unfinished_requests()

    async def start(self) -> None:
        async with self._start_lock:
            if self._llm is not None:
                return
            # Built in a thread: loading takes tens of seconds and the event loop keeps serving.
            self._llm = await asyncio.to_thread(self._build)
            if self._metrics is not None:
                ENGINE_METRICS.attach(self._metrics)
            tokenizer = self._llm.get_tokenizer()
            self._chat = bool(getattr(tokenizer, "chat_template", None))
            self._bos_id = None if self._chat else tokenizer.bos_token_id

    def _build(self) -> AsyncLLM:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        cfg = self.config
        on_cpu = current_platform.is_cpu()
        platform = _cpu_args(cfg) if on_cpu else {"gpu_memory_utilization": cfg.memory_share}
        args = AsyncEngineArgs(
            model=os.path.expanduser(cfg.path),
            served_model_name=cfg.model,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            enforce_eager=cfg.enforce_eager or (on_cpu and not _can_compile()),
            seed=cfg.seed,
            disable_log_stats=True,  # vLLM's periodic log lines; metrics go to `stat_loggers`
            **platform,
        )
        # A registry per start: a restarted engine creates its collectors anew.
        self._metrics = CollectorRegistry() if cfg.metrics else None
        loggers = [] if self._metrics is None else [stat_logger(self._metrics)]
        with _SPAWN_ENV.lease(_cpu_env(cfg.cpu_threads_bind) if on_cpu else {}):
            return AsyncLLM.from_engine_args(args, stat_loggers=loggers)

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        if self._metrics is not None:
            ENGINE_METRICS.detach(self._metrics)
            self._metrics = None
        if self._in_flight:
            # Aborting first hands every waiting consumer its final (aborted) output.
            await llm.abort(list(self._in_flight))
        llm.shutdown()
        # AsyncLLM.__del__ shuts down again; when the object lingers until interpreter exit,
        # that second call meets half-torn-down modules and prints a TypeError.
        llm.shutdown = lambda timeout=None: None  # type: ignore[method-assign]

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[SampleDelta]:
        from vllm.exceptions import VLLMError
        from vllm.inputs import TokensPrompt

        llm = self._started()
        output_tokens = [0] * params.n
        finished = False
        self._in_flight.add(request_id)
        try:
            prompt_ids = self.prompt_token_ids(messages)
            n_prompt = len(prompt_ids)
            (engine_input,) = await llm.renderer.render_cmpl_async(
                [TokensPrompt(prompt_token_ids=prompt_ids)]
            )
            async with aclosing(llm.generate(engine_input, _sampling(params), request_id)) as outs:
                async for out in outs:
                    for c in out.outputs:
                        output_tokens[c.index] += len(c.token_ids)
                        yield SampleDelta(
                            c.index, c.text, n_prompt, output_tokens[c.index], c.finish_reason
                        )
            finished = True
        except (VLLMError, ValueError) as error:
            raise EngineError(f"{self.model}: {error}") from error
        finally:
            self._in_flight.discard(request_id)
            if not finished:
                # vLLM aborts on cancel/close itself, except when it is cancelled while it is
                # still registering the request; aborting by our id covers that window too.
                await asyncio.shield(llm.abort(request_id))

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        self._started()
        return len(self.prompt_token_ids(messages))

    def _started(self) -> AsyncLLM:
        if self._llm is None:
            raise EngineError(f"engine for {self.model} is not started")
        return self._llm

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Chat template when the model has one, else plain text; a base model gets its <bos>."""
        tokenizer = self._started().get_tokenizer()
        if self._chat:
            text = tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            return tokenizer.encode(text, add_special_tokens=False)
        ids = tokenizer.encode("\n\n".join(m.content for m in messages), add_special_tokens=True)
        if self._bos_id is not None and ids[:1] != [self._bos_id]:
            ids.insert(0, self._bos_id)
        return ids


def _sampling(params: SamplingParams):
    from vllm.sampling_params import RequestOutputKind
    from vllm.sampling_params import SamplingParams as VllmSamplingParams

    return VllmSamplingParams(
        n=params.n,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop),
        output_kind=RequestOutputKind.DELTA,
    )


def _cpu_args(cfg: VllmEngineConfig) -> dict[str, object]:
    """KV size in bytes, and every prefill in one step.

    vllm-cpu's worker dies ("CPU Generator does not use offset") when a seeded request's prefill
    is split over steps, which chunked prefill does as soon as concurrent prompts exceed a step's
    token budget (fusers reading long answers do); whole prefills never take that path.
    """
    return {
        "kv_cache_memory_bytes": int(cfg.kv_cache_gib * GiB),
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(cfg.max_model_len, CPU_STEP_TOKENS),
    }


def _can_compile() -> bool:
    """torch.compile on CPU builds C++ kernels; without a compiler the engine runs eagerly."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler):
        return True
    logger.warning("no C++ compiler (%s): vLLM runs eagerly, decoding slower", compiler)
    return False


def _cpu_env(bind: str | None) -> dict[str, str]:
    if bind is None:
        return {}
    if bind == "all":
        bind = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    return {"VLLM_CPU_OMP_THREADS_BIND": bind, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


class _SpawnEnvironment:
    """Lends `os.environ` to engine starts. The environment is process-wide, so starts that
    want the same variables run together, and one that wants other values waits for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._values: Mapping[str, str] = {}
        self._saved: dict[str, str | None] = {}
        self._users = 0

    @contextmanager
    def lease(self, values: Mapping[str, str]) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._users == 0 or self._values == values)
            if self._users == 0:
                self._saved = {key: os.environ.get(key) for key in values}
                os.environ.update(values)
                self._values = values
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    for key, value in self._saved.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
                    self._cond.notify_all()


_SPAWN_ENV = _SpawnEnvironment()
