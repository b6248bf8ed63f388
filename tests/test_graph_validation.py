"""Bad artifacts are rejected with a message naming the problem; saving and loading are exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from graph_factory import make_artifact
from typer.testing import CliRunner

from tts_opt.cli.graph_commands import graph_app
from tts_opt.graph import (
    Accuracy,
    Decoding,
    GraphArtifact,
    GraphError,
    Latency,
    ModelSpec,
    Provenance,
    RoleTemplates,
    dumps_artifact,
    graph_cost_units,
    graph_flops,
    load_artifact,
    save_artifact,
    validate,
)

A, B, C, X = (
    ("a", "llama-3.2-1b", "assistant"),
    ("b", "llama-3.2-1b", "assistant"),
    ("c", "llama-3.2-1b", "assistant"),
    ("x", "llama-3.2-1b", "assistant"),
)
F = ("f", "llama-3.2-3b", "fuser")


def rejects(artifact: GraphArtifact, *fragments: str) -> str:
    """Validate, expecting a GraphError whose message contains every fragment."""
    with pytest.raises(GraphError) as info:
        validate(artifact)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_valid_fan_in_passes() -> None:
    validate(make_artifact())


def test_cycle_is_named() -> None:
    artifact = make_artifact([A, B, C, F], [("a", "b"), ("b", "c"), ("c", "b"), ("c", "f")])
    rejects(artifact, "cycle through nodes b -> c -> b")


def test_unknown_sink() -> None:
    rejects(make_artifact(sink="z"), "sink 'z' is not a node")


def test_sink_with_successors() -> None:
    rejects(make_artifact([A, B], [("a", "b")], sink="a"), "sink 'a' has successors 'b'")


def test_two_sinks() -> None:
    # b feeds nothing: it is a second node without successors.
    rejects(make_artifact([A, B, F], [("a", "f")]), "2 sinks", "'f', 'b'")


def test_dangling_nodes() -> None:
    # b -> c never reaches the sink f.
    message = rejects(make_artifact([A, B, C, F], [("a", "f"), ("b", "c")]), "Dangling")
    assert message.endswith("'b', 'c'")


def test_unknown_model() -> None:
    rejects(
        make_artifact([("a", "gpt-x", "assistant")], [], "a"), "node 'a' uses unknown model 'gpt-x'"
    )


def test_fuser_as_source() -> None:
    rejects(make_artifact([F], [], "f"), "source node 'f' (no predecessors) is a fuser")


def test_fuser_without_assistant_predecessor() -> None:
    g = ("g", "llama-3.2-3b", "fuser")
    rejects(
        make_artifact([A, F, g], [("a", "f"), ("f", "g")], "g"),
        "fuser node 'g' needs at least one assistant predecessor",
    )


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        pytest.param({"nodes": []}, "no nodes", id="empty-graph"),
        pytest.param({"nodes": [A, A, F]}, "duplicate node ids: 'a'", id="duplicate-node"),
        pytest.param(
            {"edges": [("a", "f"), ("q", "f")]}, "unknown node 'q'", id="edge-unknown-node"
        ),
        pytest.param(
            {"edges": [("a", "f"), ("b", "f"), ("f", "f")]}, "self loop on node 'f'", id="self-loop"
        ),
        pytest.param(
            {"edges": [("a", "f"), ("b", "f"), ("a", "f")]},
            "duplicate edge 'a' -> 'f'",
            id="duplicate-edge",
        ),
        pytest.param(
            {"models": [ModelSpec(name="llama-3.2-1b", params=1, layers=1, hidden=1)] * 2},
            "duplicate model names in the pool: 'llama-3.2-1b'",
            id="duplicate-model",
        ),
        pytest.param(
            {"models": [ModelSpec(name="llama-3.2-1b", params=0, layers=1, hidden=1)]},
            "params > 0",
            id="bad-model-spec",
        ),
        pytest.param(
            {"decoding": Decoding(max_tokens=0)}, "max_tokens must be >= 1", id="max-tokens"
        ),
        pytest.param(
            {"decoding": Decoding(temperature=-0.1)}, "temperature must be >= 0", id="temperature"
        ),
        pytest.param({"decoding": Decoding(top_p=0.0)}, "top_p must be in (0, 1]", id="top-p"),
        pytest.param({"budget": 0.0}, "budget value must be a positive number", id="zero-budget"),
    ],
)
def test_structural_and_setting_errors(fields: dict[str, Any], fragment: str) -> None:
    rejects(make_artifact(**fields), fragment)


@pytest.mark.parametrize(
    ("templates", "fragment"),
    [
        (
            RoleTemplates(assistant="Solve it."),
            "template 'assistant' lacks the placeholder {question}",
        ),
        (
            RoleTemplates(fuser="{question} fuse"),
            "template 'fuser' lacks the placeholder {references}",
        ),
        (
            RoleTemplates(reference="Answer {index}"),
            "template 'reference' lacks the placeholder {answer}",
        ),
    ],
)
def test_bad_template(templates: RoleTemplates, fragment: str) -> None:
    rejects(make_artifact(templates=templates), fragment)


def test_over_budget_names_both_numbers() -> None:
    artifact = make_artifact(budget=3.0)
    cost = graph_cost_units(artifact)
    rejects(artifact, "over budget", f"{cost:.6g} units", "budget is 3 units")


def test_budget_held_exactly_passes() -> None:
    validate(make_artifact(budget=graph_cost_units(make_artifact())))


def test_usd_budget_needs_prices() -> None:
    rejects(make_artifact(unit="usd", budget=1.0), "usd_per_input_token", "'llama-3.2-1b'")


def test_usd_over_budget() -> None:
    models = [
        ModelSpec(
            name=n,
            params=p,
            layers=16,
            hidden=2048,
            usd_per_input_token=1e-6,
            usd_per_output_token=2e-6,
        )
        for n, p in [("llama-3.2-1b", 1e9), ("llama-3.2-3b", 3e9)]
    ]
    # a, b: 202 + 2*275 = 752 micro-dollars each; f: (202 + 2*275) + 2*275 = 1302.
    validate(make_artifact(models=models, unit="usd", budget=2806e-6))
    rejects(make_artifact(models=models, unit="usd", budget=2.8e-3), "over budget", "$0.002806")


def test_stored_flops_must_match() -> None:
    good = graph_flops(make_artifact())
    validate(make_artifact(flops=good))
    rejects(make_artifact(flops=good * 1.01), "stored flops", "do not match")


def test_wrong_schema_version_in_struct() -> None:
    rejects(
        make_artifact(schema_version=2), "schema version 2 is not supported (this tts-opt reads 1)"
    )


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def artifact_dict() -> dict[str, Any]:
    return json.loads(dumps_artifact(make_artifact()))


def load_error(path: Path) -> str:
    with pytest.raises(GraphError) as info:
        load_artifact(path)
    return str(info.value)


def test_future_schema_version_is_named_before_its_fields(tmp_path: Path) -> None:
    document = {**artifact_dict(), "schema_version": 2, "a_field_from_the_future": 1}
    message = load_error(write_json(tmp_path / "g.json", document))
    assert message.startswith(str(tmp_path / "g.json"))
    assert "schema version 2 is not supported (this tts-opt reads 1)" in message


def test_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(dumps_artifact(make_artifact())[:200])
    message = load_error(path)
    assert "g.json" in message and "truncated" in message


def test_unknown_field(tmp_path: Path) -> None:
    document = artifact_dict()
    document["nodes"][0]["colour"] = "red"
    message = load_error(write_json(tmp_path / "g.json", document))
    assert "unknown field `colour`" in message and "$.nodes[0]" in message


def test_wrong_type(tmp_path: Path) -> None:
    document = artifact_dict()
    document["budget"]["value"] = "lots"
    assert "$.budget.value" in load_error(write_json(tmp_path / "g.json", document))


def test_graph_errors_on_load_name_the_file(tmp_path: Path) -> None:
    document = artifact_dict()
    document["nodes"][0]["model"] = "gpt-x"
    message = load_error(write_json(tmp_path / "g.json", document))
    assert message.startswith(f"{tmp_path / 'g.json'}: node 'a' uses unknown model 'gpt-x'")


def test_round_trip(tmp_path: Path) -> None:
    artifact = make_artifact(
        accuracy=(Accuracy(split="test", value=0.54, n=500, ci_low=0.5, ci_high=0.58),),
        latency=Latency(p50_s=1.5, p95_s=3.0, n=100),
        flops=graph_flops(make_artifact()),
        provenance=Provenance(
            method="agent-reinforce", seed=7, dataset_hashes={"z": "1", "a": "2"}
        ),
        decoding=Decoding(stop=("</s>",), seed=3),
    )
    path = save_artifact(artifact, tmp_path / "g.json")
    assert load_artifact(path) == artifact
    assert path.read_bytes() == dumps_artifact(artifact)
    assert msgspec.json.decode(path.read_bytes())["schema_version"] == 1


def test_save_is_atomic_and_refuses_bad_artifacts(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    save_artifact(make_artifact(), path)
    original = path.read_bytes()
    with pytest.raises(GraphError, match="over budget"):
        save_artifact(make_artifact(budget=1.0), path)
    assert path.read_bytes() == original
    save_artifact(make_artifact(budget=50.0), path)  # replacing works and leaves no temp file
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]
    assert load_artifact(path).budget.value == 50.0


def test_cli_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    good = save_artifact(make_artifact(), tmp_path / "good.json")
    ok = runner.invoke(graph_app, ["validate", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.stdout
    document = artifact_dict()
    document["edges"].append(["f", "a"])
    bad = runner.invoke(graph_app, ["validate", str(write_json(tmp_path / "bad.json", document))])
    assert bad.exit_code == 1
    assert "cycle through nodes" in bad.stderr
