"""The cost-model spec (M, L, D) of a pool model, from wherever the model is described."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.graph.errors import GraphError
from tts_opt.graph.models import KNOWN_MODELS, known_model, spec_from_config
from tts_opt.graph.schema import ModelSpec
from tts_opt.models import EMBEDDED_MODELS, resolve

if TYPE_CHECKING:  # the pool module imports every engine client: too heavy for a type
    from tts_opt.engines.pool import PoolConfig


def model_spec(name: str, pool: PoolConfig | None = None) -> ModelSpec:
    """Spec of `name`, which is a path to an HF config directory or config.json, or a pool model:
    from the local directory the pool config gives its in-process engine, else the embedded
    model's (pulled) config, else the paper's spec."""
    path = Path(name).expanduser()
    if path.exists():
        directory = path.resolve().parent if path.is_file() else path.resolve()
        return spec_from_config(directory.name, path)
    configured = {e.model: e for e in pool.engines}.get(name) if pool else None
    if isinstance(configured, VllmEngineConfig):
        local = Path(configured.path).expanduser()
        if local.is_dir():
            return spec_from_config(name, local)
    if name in EMBEDDED_MODELS:
        return spec_from_config(name, resolve(name))
    if name in KNOWN_MODELS or name.lower().startswith("meta-llama/"):
        return known_model(name)
    raise GraphError(
        f"no spec for model {name!r}: it is neither embedded ({', '.join(EMBEDDED_MODELS)}), "
        f"nor a paper model ({', '.join(KNOWN_MODELS)}), nor an in-process engine of the pool "
        "config with a local model directory, nor a path to a model config"
    )
