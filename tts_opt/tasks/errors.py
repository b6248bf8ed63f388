"""Errors of the tasks package, apart so that every module and its callers can import them."""

from __future__ import annotations


class TaskError(ValueError):
    """A task cannot be built: unknown name, bad spec, malformed data. The message names the
    problem (and, for data, the file and line)."""


class DatasetError(RuntimeError):
    """A benchmark dataset could not be provisioned (download failed, hash mismatch)."""


class DatasetNotPulledError(DatasetError):
    """A built-in task's data is used before `tts-opt tasks pull` put it into the cache."""
