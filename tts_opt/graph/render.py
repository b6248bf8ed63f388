"""Views of an artifact for people: a text summary, Mermaid, Graphviz DOT and images.

The text view is also what an optimizer agent reads, so it lists every node and edge explicitly.
Renderers expect a validated artifact (cost and levels assume a sound DAG).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tts_opt.graph.cost import cost_in_budget_unit, graph_flops
from tts_opt.graph.errors import GraphError, GraphvizMissingError
from tts_opt.graph.schema import BaselineComparison, GraphArtifact, Node, PairedComparison
from tts_opt.graph.topology import predecessors, topological_levels

IMAGE_FORMATS = ("png", "svg", "pdf")


def _label(node: Node) -> str:
    return f"{node.id}: {node.model} ({node.role})"


def _budget_line(a: GraphArtifact) -> str:
    cost = cost_in_budget_unit(a)
    share = f"{cost / a.budget.value:.1%} of budget"
    if a.budget.unit == "usd":
        return f"budget: ${a.budget.value:.6g} per query; cost: ${cost:.6g} ({share})"
    return (
        f"budget: {a.budget.value:.6g} units; cost: {cost:.4g} units ({share}), "
        f"{graph_flops(a):.4g} FLOPs"
    )


def to_text(a: GraphArtifact) -> str:
    """A human (and agent) readable summary of the artifact."""
    nodes = {n.id: n for n in a.nodes}
    pred = predecessors(a)
    lines = [f"task: {a.task}", _budget_line(a)]
    if a.description:
        lines.append(f"description: {a.description}")
    lines.append("models:")
    for m in a.models:
        price = ""
        if m.usd_per_input_token is not None and m.usd_per_output_token is not None:
            price = f", ${m.usd_per_input_token:.3g}/${m.usd_per_output_token:.3g} per in/out token"
        lines.append(f"  {m.name}: M={m.params:.4g} L={m.layers} D={m.hidden}{price}")
    lines.append("nodes by level:")
    for level, ids in enumerate(topological_levels(list(nodes), a.edges)):
        lines.append(f"  level {level}:")
        for node_id in ids:
            refs = f" <- {', '.join(pred[node_id])}" if pred[node_id] else ""
            sink = "  [sink]" if node_id == a.sink else ""
            lines.append(f"    {_label(nodes[node_id])}{refs}{sink}")
    edges = ", ".join(f"{src} -> {dst}" for src, dst in a.edges) or "(none)"
    lines += [f"edges: {edges}", f"sink: {a.sink}"]
    if (rule := a.early_exit) is not None:
        pattern = f" {rule.answer.pattern!r}" if rule.answer.kind == "regex" else ""
        lines.append(
            f"early exit: skip {a.sink} when {rule.quorum} of its inputs agree on the "
            f"{rule.answer.kind}{pattern} answer"
        )
    for acc in a.accuracy:
        lines.append(
            f"accuracy ({acc.split}): {acc.value:.1%} (n={acc.n}, "
            f"95% CI {acc.ci_low:.1%}-{acc.ci_high:.1%})"
        )
    if a.latency is not None:
        lat = a.latency
        replayed = ", replayed" if lat.replayed else ""
        lines.append(f"latency: p50 {lat.p50_s:.3g} s, p95 {lat.p95_s:.3g} s (n={lat.n}{replayed})")
    if a.baseline is not None:
        lines += baseline_lines(a.baseline)
    return "\n".join(lines) + "\n"


def baseline_lines(b: BaselineComparison) -> list[str]:
    """The verdict against the single model and, when measured, the test questions' report."""
    lines = [f"against the single model: {b.summary}"]
    if (test := b.test) is not None:
        graph = "the graph" if b.verdict == "graph" else "best graph"
        lines.append(f"  test (reported, not used to choose): {graph} {comparison_detail(test)}")
    return lines


def comparison_detail(c: PairedComparison) -> str:
    """Both accuracies, their paired difference with its interval and p-values, in one line."""
    detail = (
        f"{c.accuracy:.1%} vs {c.baseline_accuracy:.1%} for the {c.baseline} on {c.n} {c.split} "
        f"questions, difference {c.difference:+.1%} (95% CI {c.ci_low:+.1%} to {c.ci_high:+.1%}), "
        f"McNemar p = {c.p_value:.3g}"
    )
    if c.utility_difference is not None and c.utility_p_value is not None:
        detail += (
            f"; utility {c.utility_difference:+.3g}, paired bootstrap p = {c.utility_p_value:.3g}"
        )
    return detail


def to_mermaid(a: GraphArtifact) -> str:
    """Mermaid flowchart; node ids become n0, n1, ... since Mermaid reserves some words."""
    key = {n.id: f"n{i}" for i, n in enumerate(a.nodes)}
    lines = ["flowchart LR"]
    for n in a.nodes:
        label = _label(n).replace('"', "#quot;")
        lines.append(f'  {key[n.id]}["{label}"]')
    lines += [f"  {key[src]} --> {key[dst]}" for src, dst in a.edges]
    lines += ["  classDef sink stroke-width:3px,stroke:#d62728", f"  class {key[a.sink]} sink"]
    return "\n".join(lines) + "\n"


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(a: GraphArtifact) -> str:
    """Graphviz DOT, left to right, with the sink drawn bold with a double border."""
    lines = [
        f"digraph {_dot_str(a.task)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded"];',
    ]
    for n in a.nodes:
        extra = ', style="rounded,bold", peripheries=2' if n.id == a.sink else ""
        lines.append(f"  {_dot_str(n.id)} [label={_dot_str(_label(n))}{extra}];")
    lines += [f"  {_dot_str(src)} -> {_dot_str(dst)};" for src, dst in a.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_image(a: GraphArtifact, path: str | os.PathLike[str]) -> Path:
    """Draw the graph with Graphviz `dot`; the format comes from the suffix (png, svg, pdf)."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in IMAGE_FORMATS:
        raise GraphError(
            f"image format {fmt!r} not supported; use one of {', '.join(IMAGE_FORMATS)}"
        )
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissingError(
            "Graphviz `dot` is not on PATH; install Graphviz (e.g. apt-get install graphviz) "
            "or use the DOT/Mermaid text output"
        )
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(target)],
        input=to_dot(a).encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise GraphError(f"dot failed ({result.returncode}): {result.stderr.decode().strip()}")
    return target
