"""Where engine and library output goes: a log file, so the screen keeps only the command's own.

vLLM, torch and the engine-core processes vLLM spawns print warnings, log lines and C-level
messages (at start and at exit) that bury the progress display and the answer. From the start of
a command, file descriptor 2 points at a log file, which spawned processes inherit; `sys.stderr`,
the stream the project's consoles, typer's errors and tracebacks write to, moves to a duplicate of
the original stderr. Python-level noise of this process is sent to the log too: vLLM's logger (by
default on stdout, between the answer's lines), warnings, and loggers without handlers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TextIO

from tts_opt.cache import cache_root
from tts_opt.cli.display import console

# `serve` runs under process supervisors (systemd, Docker, Kubernetes) that collect and rotate its
# stderr; an engine core's crash report belongs there, not in a file inside the container.
SUPERVISED = frozenset({"serve"})


@contextmanager
def library_output(command: str, *, verbose: bool = False) -> Iterator[None]:
    """Library output of `command` to a log file, named at the end if it holds anything (an
    empty one is removed). With `verbose`, for `serve`, and when `sys.stderr` is already
    captured (a test runner's) it stays on stderr."""
    # vLLM logs to stdout by default, between the answer's lines. `sys.__stderr__` is fd 2, here
    # and in every process vLLM spawns (they inherit the variable).
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.__stderr__")
    if verbose or command in SUPERVISED or sys.stderr is not sys.__stderr__:
        yield
        return
    path = cache_root() / "logs" / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    _route_to(path)
    try:
        yield
    finally:
        if path.stat().st_size:
            console.print(
                f"[dim]engine and library output: {path} (tts-opt --verbose: on screen)[/]",
                soft_wrap=True,  # the path stays one piece, to copy
            )
        else:
            path.unlink()


def _route_to(path: Path) -> None:
    """fd 2 to `path`, `sys.stderr` to a duplicate of the original stderr, this process's warnings
    and handler-less log records to `path`. Never undone: what C code prints at interpreter exit
    (Triton's bindings report leaked objects there, where Triton is installed) goes to the log
    too, while the error or traceback a command ends with is written to `sys.stderr`."""
    stderr = sys.stderr
    stderr.flush()
    screen = os.dup(2)
    log = path.open("a", buffering=1)
    os.dup2(log.fileno(), 2)
    sys.stderr = open(  # noqa: SIM115
        screen, "w", buffering=1, encoding=stderr.encoding, errors=stderr.errors
    )
    warnings.showwarning = partial(_show_warning, log)
    logging.lastResort = logging.StreamHandler(log)
    logging.lastResort.setLevel(logging.WARNING)


def _show_warning(
    log: TextIO,
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning` that writes to `log` unless the caller names a file."""
    (file or log).write(warnings.formatwarning(message, category, filename, lineno, line))
