"""CLI commands on graph artifacts: `graph show`, `graph validate` and `budget`.

`graph_app` and `budget` are mounted into the main `tts-opt` app by `tts_opt.cli.app`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tts_opt.cli.errors import CommandLineGroup, fail
from tts_opt.engines.specs import model_spec
from tts_opt.graph import (
    PAPER_TASK_LENGTHS,
    GraphvizMissingError,
    cost_in_budget_unit,
    load_artifact,
    node_flops,
    reference_graph_budget,
    render_image,
    to_dot,
    to_mermaid,
    to_text,
)

# Its own root group too, so that it ends an error the same way when used on its own.
graph_app = typer.Typer(
    cls=CommandLineGroup, help="Inspect and check graph artifacts.", no_args_is_help=True
)
_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


_RENDERERS = {Format.text: to_text, Format.mermaid: to_mermaid, Format.dot: to_dot}


@graph_app.command()
def show(
    file: Annotated[Path, typer.Argument(help="Graph artifact (JSON).")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.text,
    image: Annotated[
        Path | None, typer.Option("--image", help="Also draw the graph to a .png/.svg file.")
    ] = None,
) -> None:
    """Print an artifact as a text summary, Mermaid or Graphviz DOT."""
    artifact = load_artifact(file)  # a bad file: the app's one-line error, exit 1
    typer.echo(_RENDERERS[fmt](artifact), nl=False)
    if image is not None:
        try:
            render_image(artifact, image)
        except GraphvizMissingError as exc:
            _err.print(f"note: no image written: {exc}", markup=False)
        else:
            _err.print(f"wrote {image}", markup=False)


@graph_app.command("validate")
def validate_command(
    file: Annotated[Path, typer.Argument(help="Graph artifact (JSON).")],
) -> None:
    """Check an artifact completely; exit status 1 with the problem on stderr if it is bad."""
    artifact = load_artifact(file)
    unit = "$" if artifact.budget.unit == "usd" else "units"
    _out.print(
        f"ok: {file}: task {artifact.task}, {len(artifact.nodes)} nodes, cost "
        f"{cost_in_budget_unit(artifact):.4g} of budget {artifact.budget.value:.4g} {unit}",
        markup=False,
    )


def budget(
    task: Annotated[str, typer.Option(help="Task with paper lengths.")] = "math",
    reference_nodes: Annotated[
        int, typer.Option(help="Small nodes b of the reference graph.", min=0)
    ] = 4,
    small: Annotated[str, typer.Option(help="Small model: name or HF config path.")] = (
        "llama-3.2-1b"
    ),
    sink: Annotated[str, typer.Option(help="Sink model: name or HF config path.")] = (
        "llama-3.2-3b"
    ),
) -> None:
    """Print the budget the paper's reference graph defines: b small nodes, fully connected
    forward, all feeding the sink; in budget units and in FLOPs."""
    if task not in PAPER_TASK_LENGTHS:
        raise fail(f"no paper lengths for task {task!r}; known: {', '.join(PAPER_TASK_LENGTHS)}")
    lengths = PAPER_TASK_LENGTHS[task]
    small_spec, sink_spec = model_spec(small), model_spec(sink)
    units = reference_graph_budget(small_spec, sink_spec, lengths, reference_nodes)
    unit_flops = node_flops(small_spec, lengths.prompt_tokens, lengths.output_tokens, 0)
    table = Table(
        title=f"Reference graph budget: {task}, {reference_nodes} x {small_spec.name} "
        f"-> {sink_spec.name}"
    )
    for column in ("units", "FLOPs", "1 unit (FLOPs)", "A, B (tokens)"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{units:.4g}",
        f"{units * unit_flops:.4g}",
        f"{unit_flops:.4g}",
        f"{lengths.prompt_tokens:g}, {lengths.output_tokens:g}",
    )
    _out.print(table)
