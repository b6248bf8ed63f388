"""The `tts-opt` command line."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from tts_opt.cli.bench_commands import bench_app
from tts_opt.cli.display import console
from tts_opt.cli.errors import CommandLineGroup
from tts_opt.cli.eval_command import eval_command
from tts_opt.cli.graph_commands import budget, graph_app
from tts_opt.cli.optimize_command import compare_command, optimize_command
from tts_opt.cli.output import library_output
from tts_opt.cli.tasks_commands import tasks_app

app = typer.Typer(
    name="tts-opt",
    cls=CommandLineGroup,
    help="Optimize and serve multi-LLM collaboration graphs (test-time compute-optimal scaling).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(help="Provision the models the embedded default runs on.")
app.add_typer(models_app, name="models")

DEMO_PROMPT = (
    "A baker makes 24 muffins. She sells 3/4 of them in the morning and half of the rest in the "
    "afternoon. How many muffins are left?"
)


@models_app.command("pull")
def models_pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to pull (default: all).")
    ] = None,
) -> None:
    """Assemble, check and convert the embedded models into the local cache (idempotent)."""
    from tts_opt.models import pull

    with console.status("pulling models") as status:
        paths = pull(names or None, progress=lambda msg: status.update(msg))
    for name, path in paths.items():
        console.print(f"[green]ready[/] {name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """List the embedded models and whether they are in the cache."""
    from tts_opt.models import EMBEDDED_MODELS, is_pulled, model_dir

    for name in EMBEDDED_MODELS:
        console.print(f"{name}: {model_dir(name) if is_pulled(name) else 'not pulled'}")


@app.command("run")
def run(
    graph: Annotated[Path, typer.Option(help="Graph artifact (JSON).")],
    prompt: Annotated[str, typer.Option(help="The user message to answer.")],
    engines: Annotated[
        Path | None, typer.Option(help="Engine pool config (JSON/TOML); default: embedded models.")
    ] = None,
    trace_out: Annotated[Path | None, typer.Option(help="Also write the trace as JSON.")] = None,
) -> None:
    """Run a graph once on real engines and print the answer and the trace."""
    from tts_opt.cli.run_command import run_sync, write_trace
    from tts_opt.engines.pool import load_pool_config
    from tts_opt.graph.io import load_artifact

    artifact = load_artifact(graph)
    finished = run_sync(artifact, prompt, load_pool_config(engines))
    if trace_out is not None:
        write_trace(finished.trace, trace_out)


@app.command("serve")
def serve(
    graphs: Annotated[Path, typer.Option(help="Directory of graph artifacts to serve.")],
    config: Annotated[
        Path | None, typer.Option(help="Server config (TOML/JSON): engines, keys, limits.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Overrides the config's host.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides the config's port.")] = None,
) -> None:
    """Serve every artifact in GRAPHS as an OpenAI-compatible profile."""
    from tts_opt.cli.serve_command import serve as run_server

    run_server(graphs, config, host=host, port=port)


@app.command("quickstart")
def quickstart() -> None:
    """The main job on the embedded default: pull the models, start the engines, optimize a tiny
    GSM8K graph, serve it on loopback and answer a request with the openai client."""
    from tts_opt.cli.quickstart import quickstart as run_quickstart

    run_quickstart(DEMO_PROMPT, pull=models_pull)


app.add_typer(graph_app, name="graph")
app.add_typer(tasks_app, name="tasks")
app.add_typer(bench_app, name="bench")
app.command("eval")(eval_command)
app.command("optimize")(optimize_command)
app.command("compare")(compare_command)
app.command("budget")(budget)


@app.callback()
def options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Engine and library output (vLLM, torch) on stderr, not in a log file.",
        ),
    ] = False,
) -> None:
    ctx.with_resource(library_output(ctx.invoked_subcommand or "tts-opt", verbose=verbose))


def main() -> None:
    # vLLM's INFO lines (one per engine config detail) bury the progress display.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # SIGTERM (kill, systemd, Kubernetes) stops a command as Ctrl-C does, so its cleanup runs:
    # without this the in-process engines' core processes outlive the command and keep the
    # cores and memory. `serve` hands SIGTERM to uvicorn, which drains instead.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app()


if __name__ == "__main__":
    main()
