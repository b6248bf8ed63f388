"""Commands stopped by a signal on the real engine: the engines' processes go with them.

`optimize` stopped by SIGTERM keeps every evaluation in its archive and the same command resumes
to a finished artifact; `serve` and `run` stopped while their engine loads exit within 10 s, with
nothing on stderr that tells of a failure (tracebacks, exceptions ignored at exit).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from graph_factory import make_artifact
from vllm_server import free_port

from tts_opt.graph import load_artifact, save_artifact
from tts_opt.graph.schema import ModelSpec, TaskLengths

pytestmark = pytest.mark.engine

TTS_OPT = str(Path(sys.executable).with_name("tts-opt"))
GEMMA = "gemma-3-270m"
ENV = {**os.environ, "TERM": "dumb", "VLLM_HOST_IP": "127.0.0.1"}
# A traceback, an exception ignored at exit, an error logged, resources the resource tracker found.
FAILURE = re.compile(r"Traceback|Exception ignored|Error\b|ERROR|leaked")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def until(condition: Callable[[], object], timeout_s: float) -> bool:
    """Poll `condition()` until it holds or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def engine_core(pid: int) -> bool:
    """vLLM's engine core (it names its process `VLLM::EngineCore`) runs below `pid`: the engine
    is loading the model."""
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"VLLM::EngineCore"):
                return True
        except OSError:
            continue
    return False


def engines_toml(path: Path, gemma_path: Path) -> Path:
    path.write_text(
        f'[[engines]]\nkind = "vllm"\nmodel = "{GEMMA}"\npath = "{gemma_path}"\n'
        "max_model_len = 2048\nmax_num_seqs = 8\nkv_cache_gib = 0.5\n"
    )
    return path


def stopped_while_loading(
    command: list[str], sig: signal.Signals, stderr: Path
) -> tuple[float, set[int]]:
    """Run `command` until its engine core loads, send `sig`: the seconds until it exited, and
    every process it had below it meanwhile (the engine core's worker may start after `sig`)."""
    with stderr.open("wb") as err:
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    try:
        until(lambda: process.poll() is not None or engine_core(process.pid), 400)
        assert process.poll() is None, stderr.read_text()[-3000:]
        assert engine_core(process.pid), "no engine core in 400 s"
        below = descendants(process.pid)
        process.send_signal(sig)
        sent = time.monotonic()
        while process.poll() is None:
            below |= descendants(process.pid)
            assert time.monotonic() - sent < 120, "still running 120 s after the signal"
            time.sleep(0.05)
        stopped_s = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    return stopped_s, below


def outlived(pids: set[int]) -> list[int]:
    """Those of `pids` still alive once the dead have had a moment to be reaped."""
    until(lambda: not any(alive(pid) for pid in pids), 10)
    return [pid for pid in pids if alive(pid)]


def gemma_graphs(directory: Path) -> Path:
    """One Gemma assistant: profile `math@1`."""
    artifact = make_artifact(
        [("a", GEMMA, "assistant")],
        [],
        "a",
        budget=1,
        models=[ModelSpec(GEMMA, 100293760.0, 18, 640)],
        lengths=TaskLengths(60, 32),
    )
    directory.mkdir()
    save_artifact(artifact, directory / "math-1.json")
    return directory


def evaluations(archive: Path) -> list[bytes]:
    if not archive.exists():
        return []
    lines = archive.read_bytes().splitlines()
    for line in lines:
        msgspec.json.decode(line)  # every line written is whole
    return [line for line in lines if b'"type":"evaluation"' in line]


def test_sigterm_stops_optimize_and_its_engines_and_the_run_resumes(
    tmp_path: Path, gemma_path: Path
) -> None:
    engines = engines_toml(tmp_path / "engines.toml", gemma_path)
    out = tmp_path / "graphs"
    command = [
        TTS_OPT, "optimize", "--task", "gsm8k", "--budget", "3", "--models", "gemma-3-270m",
        "--iterations", "3", "--val-questions", "2", "--pretest-questions", "1",
        "--reeval-questions", "2", "--reeval-top-k", "1", "--test-questions", "2",
        "--max-tokens", "16", "--no-cache", "--engines", str(engines), "--out", str(out),
    ]  # fmt: skip
    archive = out / ".archive" / "gsm8k@3-agent-reinforce-s0.jsonl"
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 400
        while not evaluations(archive) and process.poll() is None:
            assert time.monotonic() < deadline, "no evaluation archived in 400 s"
            time.sleep(0.5)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        engine_processes = descendants(process.pid)
        assert engine_processes  # the in-process engine's core runs in child processes
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not outlived(engine_processes), "engine processes outlived it"
    kept = evaluations(archive)
    assert kept

    resumed = subprocess.run(command, env=ENV, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert evaluations(archive)[: len(kept)] == kept  # nothing lost, nothing redone
    artifact = load_artifact(out / "gsm8k@3.json")
    assert artifact.task == "gsm8k" and artifact.nodes


def test_sigterm_while_the_engine_loads_stops_serve_and_its_engine_within_10_s(
    tmp_path: Path, gemma_path: Path
) -> None:
    config = engines_toml(tmp_path / "server.toml", gemma_path)
    graphs = gemma_graphs(tmp_path / "graphs")
    command = [TTS_OPT, "serve", "--graphs", str(graphs), "--config", str(config)]
    command += ["--port", str(free_port())]
    stderr = tmp_path / "stderr.txt"
    stopped_s, below = stopped_while_loading(command, signal.SIGTERM, stderr)
    assert stopped_s < 10, f"serve exited {stopped_s:.1f} s after SIGTERM"
    assert not outlived(below), "engine processes outlived serve"
    assert not FAILURE.findall(stderr.read_text()), stderr.read_text()[-3000:]


def test_ctrl_c_while_the_engine_loads_stops_run_and_its_engine_within_10_s(
    tmp_path: Path, gemma_path: Path
) -> None:
    engines = engines_toml(tmp_path / "engines.toml", gemma_path)
    graph = gemma_graphs(tmp_path / "graphs") / "math-1.json"
    command = [TTS_OPT, "run", "--graph", str(graph), "--prompt", "Hi", "--engines", str(engines)]
    stderr = tmp_path / "stderr.txt"
    stopped_s, below = stopped_while_loading(command, signal.SIGINT, stderr)
    assert stopped_s < 10, f"run exited {stopped_s:.1f} s after Ctrl-C"
    assert not outlived(below), "engine processes outlived run"
    assert not FAILURE.findall(stderr.read_text()), stderr.read_text()[-3000:]
