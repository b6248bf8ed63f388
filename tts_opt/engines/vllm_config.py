"""Configuration of an in-process vLLM engine, importable without vLLM installed (a server whose
engines are all remote reads pool configs too)."""

from __future__ import annotations

from typing import Literal

import msgspec

# Decoding on CPU is memory-bound: tokens/s grows with the batch (32 beat 16 at 32 requests, and
# give 1.4x the tokens/s of 8). Evaluations keep this many questions in flight to fill it.
MAX_NUM_SEQS = 32

# The dtypes vLLM's `AsyncEngineArgs` accepts (vllm.config.model.ModelDType).
ModelDType = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]


class VllmEngineConfig(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="vllm",
    tag_field="kind",
):
    """How to run one model. Defaults are tuned for the embedded models on a small CPU box
    (bench/README.md, "Engine tuning on the embedded models")."""

    model: str  # pool name the engine answers to
    path: str  # local HF model directory (`~` allowed) or hub id
    dtype: ModelDType = "bfloat16"
    max_model_len: int = 4096
    max_num_seqs: int = MAX_NUM_SEQS
    kv_cache_gib: float = 2.0  # CPU only: KV-cache size in GiB
    memory_share: float = 0.9  # GPU only: share of GPU memory vLLM may take (weights + KV)
    # CPU only: cores the engine's OpenMP threads run on. "all": every core this process may
    # use and none reserved for vLLM's front end (the right choice when the front end is mostly
    # idle, as here); None: vLLM's own default (keeps one core for the front end); otherwise a
    # VLLM_CPU_OMP_THREADS_BIND list such as "0-1" or "1".
    cpu_threads_bind: str | None = "all"
    # False compiles the model (C++ kernels via torch.compile; eager if no compiler is found):
    # about 2x the decode speed for Gemma-270M, no gain measured for Qwen-1.5B, and 1.5-3 min
    # more to start an engine.
    enforce_eager: bool = True
    seed: int = 0
    # "priority": vLLM runs waiting requests lowest `SamplingParams.priority` first (ties in
    # arrival order, so with equal priorities it is first come, first served); measured on CPU
    # at no throughput cost. "fcfs": arrival order, priorities ignored.
    scheduling_policy: Literal["fcfs", "priority"] = "priority"
    # vLLM's own Prometheus metrics (`vllm:` prefix: queue, KV-cache use, tokens, TTFT/TPOT/e2e)
    # on the server's /metrics. Costs some counter and histogram updates per engine step.
    metrics: bool = True
