"""bench/vllm_serve_compare.py without servers: the client's arguments are ones the installed
vLLM's `bench serve` parses as meant, and the report's medians and ratios."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # scripts, not a package

from vllm.benchmarks.serve import add_cli_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm_serve_compare import GRAPH, ONE_NODE, VLLM, Target, Workload, client_args, report

LOAD = Workload(num_prompts=16, input_len=128, output_len=32, max_concurrency=8, rounds=2, seed=5)


def parsed(target: Target, tmp_path: Path):
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = client_args(target, tmp_path / "tok", LOAD, seed=7, out=tmp_path / "r.json")
    return parser.parse_args(args)


def test_the_client_runs_vllms_random_dataset_seeded_locally_at_the_set_concurrency(tmp_path):
    args = parsed(Target("http://127.0.0.1:9", "bench", greedy=True, seed_offset=0), tmp_path)
    assert (args.backend, args.endpoint, args.dataset_name) == (
        "openai-chat",
        "/v1/chat/completions",
        "random",
    )
    assert (args.base_url, args.model, args.tokenizer) == (
        "http://127.0.0.1:9",
        "bench",
        str(tmp_path / "tok"),
    )
    assert (args.random_input_len, args.random_output_len, args.num_prompts) == (128, 32, 16)
    assert (args.max_concurrency, args.seed, args.temperature) == (8, 7, 0.0)
    assert args.extra_body == {"ignore_eos": False}  # overrides the random dataset's default
    assert args.save_result and Path(args.result_dir, args.result_filename) == tmp_path / "r.json"


def test_the_graph_profile_samples_with_its_own_temperature_on_prompts_of_its_own(tmp_path):
    args = parsed(Target("http://x", "bench-graph", greedy=False, seed_offset=1000), tmp_path)
    assert args.temperature is None and args.seed == 1007


def result(ttft: float, tpot: float, tokens_per_s: float) -> dict[str, float]:
    return {
        "completed": 16,
        "failed": 0,
        "total_output_tokens": 512,
        "request_throughput": tokens_per_s / 32,
        "output_throughput": tokens_per_s,
        "median_ttft_ms": ttft,
        "p99_ttft_ms": 2 * ttft,
        "median_tpot_ms": tpot,
        "p99_tpot_ms": 2 * tpot,
        "median_itl_ms": tpot,
        "median_e2el_ms": ttft + 31 * tpot,
    }


def test_the_report_gives_medians_over_rounds_and_per_round_ratios_of_one_node_to_vllm():
    lines = report(
        {
            ONE_NODE: [result(110, 20, 90), result(130, 20, 100)],
            GRAPH: [result(900, 30, 60), result(1100, 30, 60)],
            VLLM: [result(100, 20, 100), result(100, 25, 100)],
        }
    )
    header, one_node, graph, vllm, ttft, tpot, throughput, requests = lines
    assert "TTFT p50" in header and "TPOT p50" in header and "out tok/s" in header
    assert one_node.split()[-11:-8] == ["16", "0", "512"] and "120.0" in one_node
    assert "1000.0" in graph and "100.0" in vllm
    assert ttft.split()[3:5] == ["median_ttft_ms", "1.200"] and "1.100 1.300" in ttft
    assert tpot.split()[4] == "0.900" and "1.000 0.800" in tpot
    assert throughput.split()[4] == "0.950" and "0.900 1.000" in throughput
    assert requests.split()[3] == "request_throughput"
