"""`tts-opt optimize` stopped by SIGTERM on the real engine: the engine's processes go with it,
the archive keeps every evaluation, and the same command resumes to a finished artifact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tts_opt.graph import load_artifact

pytestmark = pytest.mark.engine

TTS_OPT = str(Path(sys.executable).with_name("tts-opt"))


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
    engines = tmp_path / "engines.toml"
    engines.write_text(
        f'[[engines]]\nkind = "vllm"\nmodel = "gemma-3-270m"\npath = "{gemma_path}"\n'
        "max_model_len = 2048\nmax_num_seqs = 8\nkv_cache_gib = 0.5\n"
    )
    out = tmp_path / "graphs"
    command = [
        TTS_OPT, "optimize", "--task", "gsm8k", "--budget", "3", "--models", "gemma-3-270m",
        "--iterations", "3", "--val-questions", "2", "--pretest-questions", "1",
        "--reeval-questions", "2", "--reeval-top-k", "1", "--test-questions", "2",
        "--max-tokens", "16", "--no-cache", "--engines", str(engines), "--out", str(out),
    ]  # fmt: skip
    archive = out / ".archive" / "gsm8k@3-agent-reinforce-s0.jsonl"
    env = {**os.environ, "TERM": "dumb"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    time.sleep(1)
    assert not [pid for pid in engine_processes if alive(pid)], "engine processes outlived it"
    kept = evaluations(archive)
    assert kept

    resumed = subprocess.run(command, env=env, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert evaluations(archive)[: len(kept)] == kept  # nothing lost, nothing redone
    artifact = load_artifact(out / "gsm8k@3.json")
    assert artifact.task == "gsm8k" and artifact.nodes
