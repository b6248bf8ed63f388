"""Errors of the graph package, kept apart so every module (and its callers) can import them."""

from __future__ import annotations

from tts_opt.errors import UserError


class GraphError(UserError, ValueError):
    """An artifact or graph is not acceptable; the message names the problem."""


class GraphvizMissingError(UserError, RuntimeError):
    """Rendering an image needs the Graphviz `dot` binary, which is not installed."""
