"""Library output of a real `tts-opt` process: in a log file, or on stderr with `--verbose`.

The command under test is `tts-opt` plus one command that makes noise the way an engine does
(vLLM's logger and a Python warning in the command's process; a child process that inherits the
file descriptors and writes to stderr, to fd 2 and through vLLM's logger), so no engine starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOISY_CLI = '''
import subprocess, sys, warnings

from tts_opt.cli.app import app, main
from tts_opt.cli.display import console

CHILD = """
import os, sys
print("noise: child print", file=sys.stderr)
os.write(2, b"noise: child fd 2\\\\n")
from vllm.config.logging import LoggingConfig
from vllm.logger import configure_logging, init_logger
configure_logging(LoggingConfig())  # as vLLM's engine-core processes do
init_logger("vllm.child").warning("noise: child vllm")
"""


@app.command("noisy")
def noisy() -> None:
    from vllm.config.logging import LoggingConfig
    from vllm.logger import configure_logging, init_logger

    configure_logging(LoggingConfig())  # as vLLM's AsyncLLM does
    init_logger("vllm.parent").warning("noise: parent vllm")
    warnings.warn("noise: parent warning", stacklevel=1)
    subprocess.run([sys.executable, "-c", CHILD], check=True)
    console.print("own line")
    print("the answer")


main()
'''

NOISE = ("child print", "child fd 2", "child vllm", "parent vllm", "parent warning")


def tts_opt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "noisy_cli.py"
    script.write_text(NOISY_CLI)
    env = {**os.environ, "TTS_OPT_CACHE": str(tmp_path / "cache"), "TERM": "dumb"}
    env.pop("VLLM_LOGGING_STREAM", None)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def logs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "logs").glob("*.log"))


def test_library_output_goes_to_a_log_file_named_once(tmp_path: Path) -> None:
    done = tts_opt(tmp_path, "noisy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the answer\n"
    (log,) = logs(tmp_path)
    assert log.name.startswith("noisy-")
    assert done.stderr.splitlines() == [
        "own line",
        f"engine and library output: {log} (tts-opt --verbose: on screen)",
    ]
    written = log.read_text()
    for noise in NOISE:
        assert f"noise: {noise}" in written


def test_verbose_shows_library_output_on_stderr(tmp_path: Path) -> None:
    done = tts_opt(tmp_path, "--verbose", "noisy")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the answer\n"  # vLLM's logger writes to stderr, not between answers
    for noise in NOISE:
        assert f"noise: {noise}" in done.stderr
    assert "own line" in done.stderr
    assert logs(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [(["graph", "validate", "missing.json"], 1, "missing.json"), (["run"], 2, "Missing option")],
)
def test_a_quiet_command_keeps_its_errors_on_stderr_and_leaves_no_log(
    tmp_path: Path, args: list[str], code: int, error: str
) -> None:
    done = tts_opt(tmp_path, *args)
    assert done.returncode == code
    assert error in done.stderr
    assert "library output" not in done.stderr
    assert logs(tmp_path) == []
