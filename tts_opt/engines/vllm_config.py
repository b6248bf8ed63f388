"""Configuration of an in-process vLLM engine, importable without vLLM installed (a server whose
engines are all remote reads pool configs too)."""

from __future__ import annotations

import msgspec


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
    dtype: str = "bfloat16"
    max_model_len: int = 4096
    max_num_seqs: int = 16
    kv_cache_gib: float = 2.0  # CPU only: KV-cache size in GiB
    memory_share: float = 0.9  # GPU only: share of GPU memory vLLM may take (weights + KV)
    # CPU only: cores the engine's OpenMP threads run on. "all": every core this process may
    # use and none reserved for vLLM's front end (the right choice when the front end is mostly
    # idle, as here); None: vLLM's own default (keeps one core for the front end); otherwise a
    # VLLM_CPU_OMP_THREADS_BIND list such as "0-1" or "1".
    cpu_threads_bind: str | None = "all"
    enforce_eager: bool = True
    seed: int = 0
