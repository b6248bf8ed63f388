"""Errors a user can cause or meet end a `tts-opt` command with one line on stderr and exit code 1
(2 for usage errors), never a traceback. Each case runs the real command line."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TTS_OPT = str(Path(sys.executable).with_name("tts-opt"))
DEMO = Path(__file__).parents[1] / "examples" / "graphs" / "demo-gsm8k.json"


def tts_opt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TTS_OPT, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 1; stderr ends with one `error:` line naming `expected`; before it, at most our own
    progress lines (a dataset provisioned on first use)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert lines and lines[-1].startswith("error: "), done.stderr
    assert all(line.endswith(" ready in " + line.rsplit(" ", 1)[-1]) for line in lines[:-1])
    for part in expected:
        assert part in lines[-1], lines[-1]


@pytest.fixture
def bound_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_missing_artifact(tmp_path: Path) -> None:
    done = tts_opt("graph", "validate", "missing.json", cwd=tmp_path)
    assert_one_error_line(done, "missing.json", "No such file or directory")


def test_unsupported_image_format(tmp_path: Path) -> None:
    done = tts_opt("graph", "show", str(DEMO), "--image", "g.bmp", cwd=tmp_path)
    assert_one_error_line(done, "image format 'bmp' not supported")


def test_corrupt_artifact_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"schema_version": 1, "task": ')
    done = tts_opt("run", "--graph", "bad.json", "--prompt", "hi", cwd=tmp_path)
    assert_one_error_line(done, "bad.json")


def test_unknown_task(tmp_path: Path) -> None:
    assert_one_error_line(tts_opt("tasks", "show", "gsm9k", cwd=tmp_path), "unknown task 'gsm9k'")
    done = tts_opt("optimize", "--task", "gsm9k", "--budget", "4", cwd=tmp_path)
    assert_one_error_line(done, "unknown task 'gsm9k'")


def test_unknown_model(tmp_path: Path) -> None:
    done = tts_opt(
        "optimize", "--task", "gsm8k", "--budget", "4", "--models", "gpt-9", cwd=tmp_path
    )
    assert_one_error_line(done, "'gpt-9'")


def test_custom_task_with_missing_data(tmp_path: Path) -> None:
    (tmp_path / "capitals.toml").write_text(
        'name = "capitals"\ndata = "capitals.jsonl"\nscorer = "exact"\n'
    )
    done = tts_opt("tasks", "show", "capitals.toml", cwd=tmp_path)
    assert_one_error_line(done, "capitals.jsonl")


def test_bad_engine_pool_config(tmp_path: Path) -> None:
    (tmp_path / "pool.toml").write_text("[[engines]]\nkind = 'warp-drive'\n")
    done = tts_opt(
        "run", "--graph", str(DEMO), "--prompt", "hi", "--engines", "pool.toml", cwd=tmp_path
    )
    assert_one_error_line(done, "pool.toml")
    done = tts_opt(
        "run", "--graph", str(DEMO), "--prompt", "hi", "--engines", "nope.toml", cwd=tmp_path
    )
    assert_one_error_line(done, "nope.toml", "No such file or directory")


def test_bad_server_config_and_graphs(tmp_path: Path) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    assert_one_error_line(
        tts_opt("serve", "--graphs", "graphs", cwd=tmp_path), "no graph artifacts"
    )
    shutil.copy(DEMO, graphs)
    (tmp_path / "server.toml").write_text("port = 'eighty'\n")
    done = tts_opt("serve", "--graphs", "graphs", "--config", "server.toml", cwd=tmp_path)
    assert_one_error_line(done, "server.toml")


def test_port_in_use(tmp_path: Path, bound_port: int) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    shutil.copy(DEMO, graphs)
    done = tts_opt("serve", "--graphs", "graphs", "--port", str(bound_port), cwd=tmp_path)
    assert_one_error_line(done, str(bound_port), "in use")


def test_engine_that_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "no-model").mkdir()
    (tmp_path / "pool.toml").write_text(
        "".join(
            f"[[engines]]\nkind = 'vllm'\nmodel = '{model}'\npath = 'no-model'\n"
            for model in ("gemma-3-270m", "qwen2.5-coder-1.5b")
        )
    )
    done = tts_opt(
        "run", "--graph", str(DEMO), "--prompt", "hi", "--engines", "pool.toml", cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: the engine for " in done.stderr and " did not start: " in done.stderr


def test_usage_errors_exit_with_2(tmp_path: Path) -> None:
    done = tts_opt("optimize", "--no-such-option", cwd=tmp_path)
    assert (
        done.returncode == 2 and "No such option" in done.stderr and "Traceback" not in done.stderr
    )
