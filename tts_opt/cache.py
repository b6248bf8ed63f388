"""The local cache every provisioned artifact lives in (models, datasets, node outputs).

Provisioning reports its steps to the `tts_opt.provision` logger, so a library call that pulls
something on demand (a dataset, a model) shows progress wherever a front end listens to it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import platformdirs

CACHE_ENV = "TTS_OPT_CACHE"
_BLOCK = 1 << 20

Progress = Callable[[str], None]
provision_log = logging.getLogger("tts_opt.provision")


def cache_root() -> Path:
    """`$TTS_OPT_CACHE`, else the platform's user cache dir for tts-opt."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("tts-opt"))


def report_progress(progress: Progress | None) -> Progress:
    """`progress`, or the provisioning logger when the caller passed none."""
    return progress or provision_log.info


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, so two processes never provision the same thing."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def manifest(directory: Path) -> dict[str, str]:
    """The sha256 of every file below `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def matches_manifest(directory: Path, files: Mapping[str, str], *, skip: str = "") -> bool:
    """Whether `directory` holds exactly `files` (relative path -> sha256), `skip` aside.

    A file's digest is computed once per process for a given size and mtime, so a command that
    resolves the same cache entry again does not read it twice."""
    present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} - {skip}
    if present != set(files):
        return False
    return all(_file_digest(directory / name) == digest for name, digest in files.items())


def _file_digest(path: Path) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return _digest_of(path, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest_of(path: Path, _size: int, _mtime_ns: int) -> str:
    return sha256_file(path)
