"""Run untrusted Python (model-written code) in a separate, limited, throw-away process.

Every run gets: a fresh `python -I -S` process (no site-packages, no environment variables, no
user files on `sys.path`) in a new session whose whole process group is killed at the end or on
timeout; limits on CPU time (RLIMIT_CPU), wall time, address space (RLIMIT_AS), processes
(RLIMIT_NPROC), file size (RLIMIT_FSIZE, which also bounds its output: stdout and stderr go to
files, not pipes) and no core dumps; a throw-away working directory; a
socket module that refuses sockets; a stripped environment. A run passes only if the program ran
to its end (an early `sys.exit(0)` is not a pass).

Where `unshare` works and we are root (the machines here), the run is also isolated by the kernel
(`isolated=True` in the result): new network namespace (no interfaces but a down loopback: no
network at all), new PID namespace (everything the program forked dies with it, even processes
that left the process group), new mount namespace with private tmpfs over /tmp, /var/tmp and
/dev/shm (the working directory lives there), and the program runs as the unprivileged `nobody`,
so it cannot write anything outside those and RLIMIT_NPROC is enforced (root is exempt from it).

Without that (not root, or no `unshare`), the guards are the limits, the process group and the
Python-level socket block: the program runs as the calling user, could write where that user can,
could reach the network through `_socket`, and as root RLIMIT_NPROC does not bind. Run untrusted
code that way only inside a container or VM of its own.

Runs are bounded per event loop to one per CPU, so a burst of scoring cannot overload the host
or make wall-time limits fire because of contention.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from contextlib import nullcontext, suppress
from functools import cache
from pathlib import Path
from typing import IO, Literal

import msgspec

from tts_opt.errors import UserError

BOOT = Path(__file__).with_name("sandbox_boot.py")
SETUP_FAILED = 3  # as in sandbox_boot (which cannot import this package): setup failed
MAX_CONCURRENT = os.cpu_count() or 1
_NAMESPACES = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
_MB = 1 << 20

Outcome = Literal["passed", "failed", "timeout", "memory", "crashed"]


class SandboxError(UserError, RuntimeError):
    """The sandbox itself failed (not the program): a run cannot be scored."""


class SandboxLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits of one run. `processes` counts all processes of the sandbox user, which the
    concurrent runs share; programs that do not fork need only one. `output_kb` is how much
    of the end of stdout and stderr the result keeps."""

    wall_s: float = 20.0
    cpu_s: int = 5
    memory_mb: int = 1024
    processes: int = 16
    file_mb: int = 16
    tmpfs_mb: int = 64
    output_kb: int = 64


DEFAULT_LIMITS = SandboxLimits()


class SandboxResult(msgspec.Struct, frozen=True):
    """How a run ended. `reason` is one line: the exception, the limit hit, the signal."""

    outcome: Outcome
    reason: str
    exit_code: int | None
    duration_s: float
    stdout: str
    stderr: str
    isolated: bool

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@cache
def isolation_available() -> bool:
    """Whether runs get kernel isolation (root and a working `unshare`); probed once."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return False
    try:
        probe = subprocess.run([unshare, *_NAMESPACES, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


async def run_python(source: str, limits: SandboxLimits = DEFAULT_LIMITS) -> SandboxResult:
    """Run the Python program `source` in the sandbox and tell how it ended."""
    async with _slots():
        isolated = isolation_available()
        workdir = nullcontext(None) if isolated else _host_workdir()
        with workdir as cwd:
            return await _run(source, limits, isolated, cwd)


def _host_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="tts-opt-sandbox-", ignore_cleanup_errors=True)


_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _slots() -> asyncio.Semaphore:
    """The run limiter of the running loop (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _SLOTS:
        _SLOTS[loop] = asyncio.Semaphore(MAX_CONCURRENT)
    return _SLOTS[loop]


def _command(isolated: bool) -> list[str]:
    python = [sys.executable, "-I", "-S", str(BOOT)]
    return [shutil.which("unshare") or "unshare", *_NAMESPACES, *python] if isolated else python


def _config(limits: SandboxLimits, isolated: bool, nonce: str) -> dict[str, object]:
    try:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    except KeyError:
        uid = gid = 65534
    memory, files = limits.memory_mb * _MB, limits.file_mb * _MB
    return {
        "nonce": nonce,
        "isolate": isolated,
        "uid": uid,
        "gid": gid,
        "tmpfs": f"size={limits.tmpfs_mb}m,mode=1777",
        "limits": {
            "RLIMIT_CPU": [limits.cpu_s, limits.cpu_s + 1],
            "RLIMIT_AS": [memory, memory],
            "RLIMIT_NPROC": [limits.processes, limits.processes],
            "RLIMIT_FSIZE": [files, files],
            "RLIMIT_CORE": [0, 0],
        },
    }


async def _run(
    source: str, limits: SandboxLimits, isolated: bool, cwd: str | None
) -> SandboxResult:
    nonce = secrets.token_hex(16)
    payload = (json.dumps(_config(limits, isolated, nonce)) + "\n" + source).encode()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd or "/tmp/work"}
    started = time.monotonic()
    # Files instead of pipes: RLIMIT_FSIZE bounds the output, and no process left holding a
    # pipe can keep the run from ending.
    temporary = tempfile.TemporaryFile
    with temporary() as program, temporary() as out, temporary() as err:
        program.write(payload)
        program.seek(0)
        process = await asyncio.create_subprocess_exec(
            *_command(isolated),
            stdin=program,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), limits.wall_s)
        except TimeoutError:
            timed_out = True
        finally:
            _kill_group(process.pid)
            await process.wait()
        limit = limits.output_kb * 1024
        stdout, stderr = _tail(out, limit), _tail(err, limit)
    if process.returncode == SETUP_FAILED and not timed_out:
        raise SandboxError(f"sandbox setup failed:\n{stderr.strip()}")
    outcome, reason = _classify(process.returncode, stdout, stderr, nonce, limits, timed_out)
    return SandboxResult(
        outcome=outcome,
        reason=reason,
        exit_code=None if timed_out else process.returncode,
        duration_s=time.monotonic() - started,
        stdout=stdout.replace(nonce, "").rstrip("\n"),
        stderr=stderr,
        isolated=isolated,
    )


def _tail(file: IO[bytes], limit: int) -> str:
    """The last `limit` bytes of `file`, decoded."""
    file.seek(max(0, file.seek(0, os.SEEK_END) - limit))
    return file.read().decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _classify(
    code: int | None,
    stdout: str,
    stderr: str,
    nonce: str,
    limits: SandboxLimits,
    timed_out: bool,
) -> tuple[Outcome, str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if timed_out:
        return "timeout", f"exceeded the wall-time limit of {limits.wall_s:g} s"
    if code == 0 and stdout.rstrip().endswith(nonce):
        return "passed", ""
    if code == 128 + signal.SIGXCPU:
        return "timeout", f"exceeded the CPU-time limit of {limits.cpu_s} s"
    if last.startswith("MemoryError"):
        return "memory", f"exceeded the memory limit of {limits.memory_mb} MiB"
    if code is not None and code > 128:
        return "crashed", f"killed by {signal.strsignal(code - 128) or f'signal {code - 128}'}"
    return "failed", last or f"exit status {code}"
