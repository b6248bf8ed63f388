"""Errors of the tasks package, apart so that every module and its callers can import them."""

from __future__ import annotations

from tts_opt.errors import UserError


class TaskError(UserError, ValueError):
    """A task cannot be built: unknown name, bad spec, malformed data. The message names the
    problem (and, for data, the file and line)."""


class DatasetError(UserError, RuntimeError):
    """A benchmark dataset could not be provisioned (download failed, hash mismatch)."""
