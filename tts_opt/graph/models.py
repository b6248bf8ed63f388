"""Model specs for the cost model: the paper's models, and any other model from its HF config.

M counts the non-embedding parameters that every token passes through:
per layer the attention projections q/k/v/o (grouped-query: k and v have `num_key_value_heads`
heads of `head_dim`), the gated MLP (3 * D * intermediate: gate, up, down) and two norms; plus
the final norm. The input embedding is excluded (a lookup, no FLOPs). The output head (lm_head,
vocab * D) is counted only when `tie_word_embeddings` is false: a tied head shares its weights with
the embedding, and the paper's specs (e.g. 1e9 for the tied Llama-3.2-1B) leave it out. A missing
`tie_word_embeddings` means tied, the Hugging Face `PretrainedConfig` default. Biases and the
extra per-head norms of some families are left out: they are far below 0.1% of M.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import ModelSpec, TaskLengths

KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(name="llama-3.2-1b", params=1e9, layers=16, hidden=2048),
        ModelSpec(name="llama-3.2-3b", params=3e9, layers=28, hidden=3072),
        ModelSpec(name="llama-3.1-8b", params=8e9, layers=32, hidden=4096),
        ModelSpec(name="llama-3.1-70b", params=70e9, layers=80, hidden=8192),
    )
}

PAPER_TASK_LENGTHS: dict[str, TaskLengths] = {
    "math": TaskLengths(prompt_tokens=202, output_tokens=275),
    "mmlu": TaskLengths(prompt_tokens=213, output_tokens=215),
    "humaneval": TaskLengths(prompt_tokens=180, output_tokens=115),
}


def known_model(name: str) -> ModelSpec:
    """The paper's spec for `name`; accepts Hub ids too ("meta-llama/Llama-3.2-1B-Instruct")."""
    key = name.rsplit("/", 1)[-1].lower().removesuffix("-instruct")
    if key not in KNOWN_MODELS:
        raise GraphError(
            f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)} "
            "(for other models read the spec from their config)"
        )
    return KNOWN_MODELS[key]


def _load_config(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(config, Mapping):
        raw = dict(config)
    else:
        path = Path(config)
        if path.is_dir():
            path = path / "config.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
    text = raw.pop("text_config", None)
    # Multimodal configs nest the language model; its keys win, top-level ones fill the gaps
    # (e.g. `tie_word_embeddings` often lives at the top).
    return {**raw, **text} if isinstance(text, Mapping) else raw


def _require(cfg: Mapping[str, Any], key: str, name: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or value <= 0:
        raise GraphError(
            f"config of model {name!r} needs a positive integer {key!r}, got {value!r}"
        )
    return value


def spec_from_config(name: str, config: Mapping[str, Any] | str | Path) -> ModelSpec:
    """Spec of a decoder-only, gated-MLP transformer from its HF config (dict, dir or json file)."""
    cfg = _load_config(config)
    hidden = _require(cfg, "hidden_size", name)
    layers = _require(cfg, "num_hidden_layers", name)
    heads = _require(cfg, "num_attention_heads", name)
    intermediate = _require(cfg, "intermediate_size", name)
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads

    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * intermediate
    params = layers * (attention + mlp + 2 * hidden) + hidden
    if not cfg.get("tie_word_embeddings", True):
        params += _require(cfg, "vocab_size", name) * hidden
    return ModelSpec(name=name, params=float(params), layers=layers, hidden=hidden)
