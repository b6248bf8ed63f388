"""Load generation and process plumbing for bench/server.py.

A closed loop: `concurrency` clients, each sending its next request as soon as its last one is
answered, until `requests` are done. Servers run in processes of their own, so the client's work
never shares an event loop with the server it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec


class Sample(msgspec.Struct):
    """One target's measurements, pooled over rounds."""

    latencies: list[float] = msgspec.field(default_factory=list)
    first_tokens: list[float] = msgspec.field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # of the server process, where measured
    requests: int = 0
    tokens: int = 0
    round_rates: list[float] = msgspec.field(default_factory=list)  # tokens/s, where counted

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


async def closed_loop(
    send: Callable[[int], Awaitable[None]], requests: int, concurrency: int, sample: Sample
) -> None:
    """Send requests 0..requests-1 from `concurrency` clients; adds latencies and wall time."""
    indexes = iter(range(requests))

    async def client() -> None:
        for i in indexes:  # shared: each client takes the next request index
            start = time.perf_counter()
            await send(i)
            sample.latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    sample.wall_s += time.perf_counter() - start
    sample.requests += requests


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc; 10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants_cpu_seconds(pid: int) -> float:
    """CPU time so far of every process below `pid` (an engine core and its helpers)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):  # exited meanwhile
                total += cpu_seconds(int(child)) + descendants_cpu_seconds(int(child))
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process(msgspec.Struct):
    proc: subprocess.Popen
    log: Any  # the temporary file its output goes to


@contextlib.contextmanager
def process(command: Sequence[str], **env: str) -> Iterator[Process]:
    """Run `command` (output to a temporary log) until the block ends, then stop it with SIGTERM
    (SIGKILL after a minute), as an operator would."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            list(command), env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield Process(proc, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(server: Process, url: str, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:  # one client: building one costs tens of ms of CPU
        while True:
            if server.proc.poll() is not None:
                server.log.seek(0)
                tail = server.log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"{server.proc.args} exited ({server.proc.returncode}):\n{tail}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f}s")
            time.sleep(1)
