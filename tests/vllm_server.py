"""Starts a real vLLM OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`)
on loopback for tests of remote engines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

PLAIN_TEMPLATE = Path(__file__).parents[1] / "tts_opt" / "data" / "chat_templates" / "plain.jinja"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def vllm_openai_server(
    model_path: Path, served_name: str, *, chat_template: Path | None = None, timeout_s: float = 300
) -> Iterator[str]:
    """Yield the server's base URL (`http://127.0.0.1:PORT/v1`) once /health answers."""
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_path), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "bfloat16", "--enforce-eager", "--max-model-len", "2048",
        "--max-num-seqs", "8",
    ]  # fmt: skip
    if chat_template is not None:
        command += ["--chat-template", str(chat_template)]
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(process, port, log, timeout_s)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_healthy(process: subprocess.Popen, port: int, log: IO[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{output[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"vLLM server not healthy after {timeout_s}s")
        time.sleep(1)
