"""The code sandbox: hostile programs are contained, and the host and the evaluation go on."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from pathlib import Path

import pytest

from tts_opt.tasks import SandboxLimits, isolation_available, run_python

FAST = SandboxLimits(wall_s=5, cpu_s=2, memory_mb=256, processes=16)
needs_isolation = pytest.mark.skipif(
    not isolation_available(),
    reason="needs kernel isolation (root and unshare); without it the sandbox cannot stop "
    "writes the calling user may do or raw sockets",
)


async def _healthy() -> None:
    """The sandbox still works right after an attack."""
    result = await run_python("print(6 * 7)", FAST)
    assert result.passed and result.stdout == "42", result


async def test_a_good_program_passes_and_prints() -> None:
    result = await run_python("import json, collections.abc\nprint(json.dumps([1]))", FAST)
    assert result.passed, result
    assert result.stdout == "[1]"


async def test_a_failing_program_reports_its_error() -> None:
    result = await run_python("def f():\n    return 1\nassert f() == 2, 'f is wrong'", FAST)
    assert (result.outcome, result.reason) == ("failed", "AssertionError: f is wrong")
    syntax = await run_python("def f(:\n", FAST)
    assert syntax.outcome == "failed" and syntax.reason.startswith("SyntaxError")


@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
async def test_exiting_early_is_not_a_pass(exit_call: str) -> None:
    result = await run_python(f"{exit_call}\nassert False", FAST)
    assert result.outcome == "failed", result


async def test_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    result = await run_python("while True:\n    pass", SandboxLimits(wall_s=600, cpu_s=2))
    # The CPU limit, not the wall clock, stopped it (however slow or busy the machine is).
    assert result.outcome == "timeout" and "CPU-time limit" in result.reason, result
    await _healthy()


async def test_sleeping_forever_is_stopped_by_the_wall_limit() -> None:
    limits = SandboxLimits(wall_s=1.5, cpu_s=2)
    result = await run_python("import time\ntime.sleep(3600)", limits)
    assert result.outcome == "timeout" and "wall" in result.reason, result
    assert result.duration_s < 5


@pytest.mark.parametrize(
    "program",
    ["x = bytearray(50 * 2**30)", "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**20)"],
)
async def test_huge_memory_is_refused(program: str) -> None:
    result = await run_python(program, FAST)
    assert result.outcome == "memory", result
    await _healthy()


def _sandbox_user_processes() -> int:
    uid = pwd.getpwnam("nobody").pw_uid if isolation_available() else os.getuid()
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owned_by(p, uid))


def _owned_by(proc: Path, uid: int) -> bool:
    try:
        return proc.stat().st_uid == uid
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    os.geteuid() == 0 and not isolation_available(),
    reason="as root without namespaces, RLIMIT_NPROC does not bind: a fork bomb is not contained",
)
async def test_fork_bomb_is_contained_and_cleaned_up() -> None:
    before = _sandbox_user_processes()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = await run_python(bomb, FAST)
    assert not result.passed
    for _ in range(50):  # the kernel reaps the namespace's processes right after its init
        if _sandbox_user_processes() <= before:
            break
        await asyncio.sleep(0.1)
    assert _sandbox_user_processes() <= before
    await _healthy()


@needs_isolation
async def test_processes_that_escape_the_process_group_die_with_the_sandbox() -> None:
    program = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(3600)\n"
    before = _sandbox_user_processes()
    assert (await run_python(program, FAST)).passed
    await asyncio.sleep(0.2)
    assert _sandbox_user_processes() <= before


async def test_network_is_refused() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    with server:
        result = await run_python(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)", FAST
        )
        assert result.outcome == "failed" and "network" in result.reason, result
        if isolation_available():  # the raw socket module gets past the Python-level block
            raw = await run_python(
                f"import _socket\ns = _socket.socket()\ns.settimeout(2)\n"
                f"s.connect(('127.0.0.1', {port}))",
                FAST,
            )
            assert raw.outcome == "failed" and "OSError" in raw.reason, raw
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever connected


@needs_isolation
async def test_writing_outside_the_sandbox_fails(tmp_path: Path) -> None:
    targets = [tmp_path / "outside.txt", Path(f"/tmp/tts-opt-outside-{os.getpid()}.txt")]
    program = "\n".join(
        f"try:\n    open({str(t)!r}, 'w').write('pwned')\nexcept OSError:\n    pass"
        for t in targets
    )
    program += "\nopen('../../outside-relative.txt', 'w').write('pwned')"
    result = await run_python(program, FAST)
    assert result.outcome == "failed" and "Permission denied" in result.reason, result
    for target in [*targets, Path("/outside-relative.txt"), Path("/tmp/outside-relative.txt")]:
        assert not target.exists()
    await _healthy()


async def test_big_files_and_endless_output_are_bounded() -> None:
    big = await run_python("open('big', 'wb').write(b'x' * (64 << 20))", FAST)
    assert big.outcome == "failed" and "File too large" in big.reason, big
    chatty = await run_python("while True:\n    print('x' * 1000)", FAST)
    assert chatty.outcome == "failed" and "File too large" in chatty.reason, chatty
    assert len(chatty.stdout) <= FAST.output_kb * 1024


async def test_a_crash_is_reported() -> None:
    result = await run_python("import ctypes\nctypes.string_at(0)", FAST)
    assert result.outcome == "crashed" and "Segmentation" in result.reason, result


async def test_environment_is_stripped_and_workdir_thrown_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TTS_OPT_SECRET", "hunter2")
    result = await run_python(
        "import os\nopen('scratch', 'w').write('x')\n"
        "assert set(os.environ) <= {'PATH', 'LANG', 'HOME'}, dict(os.environ)\nprint(os.getcwd())",
        FAST,
    )
    assert result.passed, result
    assert not await asyncio.to_thread(os.path.exists, result.stdout)


async def test_concurrent_runs_are_independent() -> None:
    program = (
        "import os\nassert os.listdir('.') == [], os.listdir('.')\n"
        "open('mine', 'w').write('{i}')\nprint(open('mine').read())"
    )
    results = await asyncio.gather(*(run_python(program.format(i=i), FAST) for i in range(8)))
    assert [r.stdout for r in results] == [str(i) for i in range(8)]
    assert all(r.passed for r in results)
