"""The local cache every provisioned artifact lives in (models, datasets, node outputs)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

CACHE_ENV = "TTS_OPT_CACHE"


def cache_root() -> Path:
    """`$TTS_OPT_CACHE`, else the platform's user cache dir for tts-opt."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("tts-opt"))


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, so two processes never provision the same thing."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
