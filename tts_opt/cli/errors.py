"""How a command ends on an error the user can cause or meet: one line on stderr, exit code 1.

Typer keeps exit code 2 for usage errors; only a bug shows a traceback. The handling lives in
the app's root group, so it holds however the app is invoked (console script, tests' runner).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from tts_opt.cache import provision_log
from tts_opt.cli.display import console
from tts_opt.errors import UserError

if TYPE_CHECKING:
    # typer's vendored click: groups are invoked with its Context, as `TyperGroup.invoke` declares
    # (typer.Context, a subclass, is what command callbacks get).
    from typer._click import Context


def fail(message: str) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    line = " ".join(message.split())
    console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


class _ProvisionLines(logging.Handler):
    """Shows on-demand provisioning (a dataset or model pulled on first use) as progress lines."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[dim]{record.getMessage()}[/]", highlight=False, soft_wrap=True)


class CommandLineGroup(TyperGroup):
    """The root group of `tts-opt`: shows provisioning progress, and turns an expected error
    (`UserError`, or an `OSError` such as a missing file) into one line and exit code 1."""

    def invoke(self, ctx: Context) -> Any:
        if not any(isinstance(h, _ProvisionLines) for h in provision_log.handlers):
            provision_log.addHandler(_ProvisionLines())
            provision_log.setLevel(logging.INFO)
            provision_log.propagate = False
        try:
            return super().invoke(ctx)
        except (UserError, OSError) as exc:
            raise fail(_message(exc)) from exc
