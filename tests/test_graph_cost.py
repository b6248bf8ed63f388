"""The cost model against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from graph_factory import make_artifact
from typer.testing import CliRunner

from tts_opt.cli.graph_commands import budget
from tts_opt.graph import (
    KNOWN_MODELS,
    PAPER_TASK_LENGTHS,
    GraphError,
    ModelSpec,
    TaskLengths,
    budget_unit_flops,
    cost_in_budget_unit,
    graph_cost_units,
    graph_cost_usd,
    graph_flops,
    known_model,
    node_flops,
    node_flops_measured,
    reference_graph_budget,
    spec_from_config,
)

# Tiny models so every number can be checked by hand: L*D = 6 for both.
SMALL = ModelSpec(
    name="s", params=10, layers=2, hidden=3, usd_per_input_token=1.0, usd_per_output_token=2.0
)
BIG = ModelSpec(
    name="g", params=20, layers=2, hidden=3, usd_per_input_token=3.0, usd_per_output_token=5.0
)
LENGTHS = TaskLengths(prompt_tokens=5, output_tokens=4)  # A = 5, B = 4

# SMALL, d=0: Np=5, Nd=4
#   prefill 2*10*5 + 2*6*5*(5+1)        = 100 + 360  = 460
#   decode  2*10*4 + 2*6*4*(2*5+4+1)    =  80 + 720  = 800   -> 1260
SMALL_D0 = 1260
# SMALL, d=1: Np=9
#   prefill 2*10*9 + 2*6*9*10           = 180 + 1080 = 1260
#   decode  2*10*4 + 2*6*4*(18+4+1)     =  80 + 1104 = 1184  -> 2444
SMALL_D1 = 2444
# SMALL, d=2: Np=13
#   prefill 2*10*13 + 2*6*13*14         = 260 + 2184 = 2444
#   decode  2*10*4 + 2*6*4*(26+4+1)     =  80 + 1488 = 1568  -> 4012
SMALL_D2 = 4012
# BIG, d=0: prefill 2*20*5 + 360 = 560; decode 2*20*4 + 720 = 880 -> 1440
BIG_D0 = 1440
# BIG, d=2: prefill 2*20*13 + 2184 = 2704; decode 2*20*4 + 1488 = 1648 -> 4352
BIG_D2 = 4352

FAN_IN = dict(
    nodes=[("a", "s", "assistant"), ("b", "s", "assistant"), ("f", "g", "fuser")],
    edges=[("a", "f"), ("b", "f")],
    sink="f",
    models=[BIG, SMALL],
    lengths=LENGTHS,
)


@pytest.mark.parametrize(("d", "expected"), [(0, SMALL_D0), (1, SMALL_D1), (2, SMALL_D2)])
def test_node_flops_by_in_degree(d: int, expected: int) -> None:
    assert node_flops(SMALL, 5, 4, d) == expected


def test_node_flops_of_other_model() -> None:
    assert node_flops(BIG, 5, 4, 0) == BIG_D0
    assert node_flops(BIG, 5, 4, 2) == BIG_D2


def test_measured_flops_uses_actual_lengths() -> None:
    # A d=1 node reads A + B = 9 tokens.
    assert node_flops_measured(SMALL, 9, 4) == SMALL_D1


def test_graph_flops_sums_running_nodes() -> None:
    # a, b: d=0; f: d=2 on the big model.
    assert graph_flops(make_artifact(**FAN_IN)) == SMALL_D0 + SMALL_D0 + BIG_D2  # 6872


def test_graph_flops_ignores_nodes_that_do_not_run() -> None:
    # x has no path to the sink (validation rejects it; the cost model must not count it).
    fields = dict(FAN_IN, nodes=[*FAN_IN["nodes"], ("x", "g", "assistant")])
    assert graph_flops(make_artifact(**fields)) == SMALL_D0 + SMALL_D0 + BIG_D2


def test_budget_unit_is_d0_call_of_smallest_model() -> None:
    assert budget_unit_flops([BIG, SMALL], LENGTHS) == SMALL_D0


def test_graph_cost_in_units() -> None:
    artifact = make_artifact(**FAN_IN)
    assert graph_cost_units(artifact) == pytest.approx(6872 / 1260)
    assert cost_in_budget_unit(artifact) == pytest.approx(6872 / 1260)


def test_graph_cost_usd() -> None:
    # a, b: 1*5 + 2*4 = 13 each; f: Np = 13 -> 3*13 + 5*4 = 59. Total 85.
    artifact = make_artifact(**FAN_IN, unit="usd")
    assert graph_cost_usd(artifact) == 85
    assert cost_in_budget_unit(artifact) == 85


def test_usd_cost_needs_prices() -> None:
    unpriced = ModelSpec(name="g", params=20, layers=2, hidden=3)
    artifact = make_artifact(**dict(FAN_IN, models=[unpriced, SMALL]), unit="usd")
    with pytest.raises(GraphError, match=r"usd_per_input_token.*'g'"):
        graph_cost_usd(artifact)


def test_reference_graph_budget() -> None:
    # b=2: small nodes with d=0 and d=1 (node 0 feeds node 1), both feed the sink (d=2).
    assert reference_graph_budget(SMALL, BIG, LENGTHS, 2) == pytest.approx(
        (SMALL_D0 + SMALL_D1 + BIG_D2) / SMALL_D0
    )
    # b=0: the sink alone.
    assert reference_graph_budget(SMALL, BIG, LENGTHS, 0) == pytest.approx(BIG_D0 / SMALL_D0)


def test_reference_graph_budget_matches_paper_values_on_math() -> None:
    small, sink = KNOWN_MODELS["llama-3.2-1b"], KNOWN_MODELS["llama-3.2-3b"]
    math = PAPER_TASK_LENGTHS["math"]
    # The paper's 9- and 18-unit MATH budgets are the b=2 and b=4 reference graphs.
    assert round(reference_graph_budget(small, sink, math, 2)) == 9
    assert round(reference_graph_budget(small, sink, math, 4)) == 18


QWEN2_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
}
# head_dim = 896/14 = 64; per layer:
#   attention q,o: 2*896*896 = 1,605,632; k,v: 2*896*(2*64) = 229,376
#   mlp 3*896*4864 = 13,074,432; norms 2*896 = 1,792          -> 14,911,232
# 24 layers = 357,869,568, + final norm 896                   -> 357,870,464
QWEN2_05B_PARAMS = 357_870_464


def test_spec_from_qwen2_config() -> None:
    spec = spec_from_config("qwen2.5-0.5b", QWEN2_05B)
    assert (spec.params, spec.layers, spec.hidden) == (QWEN2_05B_PARAMS, 24, 896)


def test_untied_head_is_counted() -> None:
    spec = spec_from_config("q", {**QWEN2_05B, "tie_word_embeddings": False})
    assert spec.params == QWEN2_05B_PARAMS + 151936 * 896


def test_spec_from_nested_text_config_and_path(tmp_path: Path) -> None:
    config = {"tie_word_embeddings": True, "text_config": QWEN2_05B, "vision_config": {}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    for source in (tmp_path, tmp_path / "config.json", config):
        assert spec_from_config("q", source).params == QWEN2_05B_PARAMS


def test_explicit_head_dim_is_used() -> None:
    # Gemma-style: head_dim 256 is not hidden/heads = 160.
    config = {
        **QWEN2_05B,
        "hidden_size": 640,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "intermediate_size": 2048,
        "num_hidden_layers": 1,
    }
    attention = 2 * 640 * 4 * 256 + 2 * 640 * 1 * 256
    assert spec_from_config("g", config).params == attention + 3 * 640 * 2048 + 2 * 640 + 640


def test_llama_config_is_close_to_paper_spec() -> None:
    llama_1b = {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "tie_word_embeddings": True,
        "vocab_size": 128256,
    }
    assert spec_from_config("l", llama_1b).params == pytest.approx(1e9, rel=0.03)


def test_config_missing_sizes_is_rejected() -> None:
    with pytest.raises(GraphError, match="hidden_size"):
        spec_from_config("broken", {"num_hidden_layers": 2})


def test_known_model_accepts_hub_ids() -> None:
    assert known_model("meta-llama/Llama-3.2-1B-Instruct") == KNOWN_MODELS["llama-3.2-1b"]
    with pytest.raises(GraphError, match="unknown model 'gpt-x'"):
        known_model("gpt-x")


def test_budget_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(budget)
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(QWEN2_05B))
    runner = CliRunner()
    result = runner.invoke(app, ["--task", "math", "--reference-nodes", "4"])
    assert result.exit_code == 0, result.output
    assert "17.79" in result.stdout and "1.724e+13" in result.stdout
    result = runner.invoke(app, ["--small", str(tmp_path / "qwen"), "--reference-nodes", "0"])
    assert result.exit_code == 0, result.output
    assert "qwen" in result.stdout
    result = runner.invoke(app, ["--task", "gsm8k"])
    assert result.exit_code == 1 and "no paper lengths for task 'gsm8k'" in result.stderr
