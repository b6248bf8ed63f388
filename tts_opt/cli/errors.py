"""How a command ends on an error the user can cause or meet: one line on stderr, exit code 1.

Typer keeps exit code 2 for usage errors; only a bug shows a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer

from tts_opt.cache import provision_log
from tts_opt.cli.display import console
from tts_opt.errors import UserError


def fail(message: str) -> typer.Exit:
    """Print `message` as the command's one error line; raise the returned exit."""
    console.print(
        f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True
    )
    return typer.Exit(1)


class _ProvisionLines(logging.Handler):
    """Shows on-demand provisioning (a dataset or model pulled on first use) as progress lines."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[dim]{record.getMessage()}[/]", highlight=False, soft_wrap=True)


def run_command_line(app: Callable[[], object]) -> None:
    """Run the typer `app`; an expected error ends it with one line instead of a traceback."""
    provision_log.addHandler(_ProvisionLines())
    provision_log.setLevel(logging.INFO)
    provision_log.propagate = False
    try:
        app()
    except UserError as exc:
        fail(str(exc))
        sys.exit(1)
    except OSError as exc:  # a file that is missing or unreadable, a port in use
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        sys.exit(1)
