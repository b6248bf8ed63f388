"""Text, Mermaid and DOT views show every node and edge; images need Graphviz."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
from graph_factory import make_artifact
from msgspec.structs import replace
from typer.testing import CliRunner

from tts_opt.cli.graph_commands import graph_app
from tts_opt.graph import (
    Accuracy,
    GraphArtifact,
    GraphvizMissingError,
    Latency,
    render_image,
    save_artifact,
    to_dot,
    to_mermaid,
    to_text,
)

NODES = [
    ("a", "llama-3.2-1b", "assistant"),
    ("b", "llama-3.2-1b", "assistant"),
    ("c", "llama-3.2-3b", "assistant"),
    ("d", "llama-3.2-1b", "assistant"),
    ("f", "llama-3.1-8b", "fuser"),
]
EDGES = [("a", "c"), ("b", "c"), ("a", "d"), ("c", "f"), ("d", "f"), ("b", "f")]


def hybrid() -> GraphArtifact:
    return make_artifact(
        NODES,
        EDGES,
        "f",
        budget=1000.0,
        accuracy=(Accuracy(split="test", value=0.56, n=500, ci_low=0.516, ci_high=0.603),),
        latency=Latency(p50_s=2.5, p95_s=4.0, n=200),
    )


def test_text_lists_nodes_levels_edges_and_measurements() -> None:
    text = to_text(hybrid())
    for node_id, model, role in NODES:
        assert f"{node_id}: {model} ({role})" in text
    for src, dst in EDGES:
        assert f"{src} -> {dst}" in text
    assert "level 0:" in text and "level 2:" in text  # a, b | c, d | f
    assert "f: llama-3.1-8b (fuser) <- c, d, b  [sink]" in text
    assert "sink: f" in text
    assert "accuracy (test): 56.0% (n=500" in text
    assert "p50 2.5 s, p95 4 s" in text
    assert "budget: 1000 units" in text


def test_a_replayed_latency_says_so_in_graph_show_and_the_model_card(tmp_path: Path) -> None:
    from tts_opt.engines.scripted import ScriptedEngine
    from tts_opt.runtime.executor import GraphRunner
    from tts_opt.server.models import profile_info
    from tts_opt.server.profiles import Profile

    replayed = replace(hybrid(), latency=Latency(p50_s=2.5, p95_s=4.0, n=200, replayed=True))
    path = save_artifact(replayed, tmp_path / "g.json")
    shown = CliRunner().invoke(graph_app, ["show", str(path)])
    assert shown.exit_code == 0 and "p50 2.5 s, p95 4 s (n=200, replayed)" in shown.output
    assert "replayed" not in to_text(hybrid())
    runner = GraphRunner(replayed, {m.name: ScriptedEngine(m.name) for m in replayed.models})
    card = msgspec.to_builtins(profile_info(Profile("math@1000", path, replayed, runner)))
    assert card["latency"] == {"p50_s": 2.5, "p95_s": 4.0, "n": 200, "replayed": True}


def test_mermaid_has_every_node_and_edge() -> None:
    mermaid = to_mermaid(hybrid())
    assert mermaid.startswith("flowchart LR\n")
    key = {node_id: f"n{i}" for i, (node_id, _, _) in enumerate(NODES)}
    for node_id, model, role in NODES:
        assert f'{key[node_id]}["{node_id}: {model} ({role})"]' in mermaid
    for src, dst in EDGES:
        assert f"{key[src]} --> {key[dst]}" in mermaid
    assert f"class {key['f']} sink" in mermaid


def test_dot_has_every_node_and_edge() -> None:
    dot = to_dot(hybrid())
    for node_id, model, role in NODES:
        assert f'"{node_id}" [label="{node_id}: {model} ({role})"' in dot
    for src, dst in EDGES:
        assert f'"{src}" -> "{dst}";' in dot
    assert 'label="f: llama-3.1-8b (fuser)", style="rounded,bold", peripheries=2' in dot


def test_dot_escapes_quotes() -> None:
    artifact = make_artifact([('say "hi"', "llama-3.2-1b", "assistant")], [], 'say "hi"')
    assert '"say \\"hi\\"" [label="say \\"hi\\": llama-3.2-1b (assistant)"' in to_dot(artifact)


def test_render_image_without_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(GraphvizMissingError, match="Graphviz"):
        render_image(hybrid(), tmp_path / "g.png")


def test_render_image_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'bmp'"):
        render_image(hybrid(), tmp_path / "g.bmp")


def test_render_svg(tmp_path: Path) -> None:
    assert "<svg" in render_image(hybrid(), tmp_path / "g.svg").read_text()


def test_cli_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_artifact(hybrid(), tmp_path / "g.json")
    runner = CliRunner()
    result = runner.invoke(graph_app, ["show", str(path), "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_mermaid(hybrid())
    monkeypatch.setattr(shutil, "which", lambda _: None)
    result = runner.invoke(graph_app, ["show", str(path), "--image", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_text(hybrid())
    assert "no image written" in result.stderr
