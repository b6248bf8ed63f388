"""Terminal rendering of runs: node completions as they happen, the streamed answer, the trace."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tts_opt.runtime.trace import NodeTrace, RunTrace

console = Console(stderr=True)


def node_line(trace: NodeTrace) -> str:
    status = "[green]ok[/]" if trace.status == "ok" else f"[red]{trace.status}[/]"
    batch = f" (1 of n={trace.batch_size})" if trace.batch_size > 1 else ""
    return (
        f"  node [bold]{trace.node}[/] {trace.model} {trace.role}{batch}: {status} "
        f"{trace.output_tokens} tokens in {trace.end_s - trace.start_s:.1f}s"
    )


def trace_table(trace: RunTrace) -> Table:
    table = Table(title=f"trace {trace.request_id}", title_justify="left")
    for column in ("node", "model", "role", "status", "ready", "start", "first tok", "end"):
        table.add_column(column)
    for column in ("prompt tok", "out tok", "GFLOPs", "n"):
        table.add_column(column, justify="right")
    for t in trace.nodes:
        table.add_row(
            t.node,
            t.model,
            t.role,
            t.status,
            f"{t.ready_s:.2f}",
            f"{t.start_s:.2f}",
            "-" if t.first_token_s is None else f"{t.first_token_s:.2f}",
            f"{t.end_s:.2f}",
            str(t.prompt_tokens),
            str(t.output_tokens),
            f"{t.flops / 1e9:.1f}",
            str(t.batch_size),
        )
    table.caption = (
        f"total {trace.total_s:.2f}s, engines busy {trace.engine_s:.2f}s, "
        f"tokens {trace.usage.prompt_tokens} in / {trace.usage.completion_tokens} out, "
        f"{trace.flops / 1e12:.2f} TFLOPs"
    )
    if (exit_ := trace.early_exit) is not None:
        table.caption += (
            f"; early exit: {', '.join(exit_.agreeing)} agreed on {exit_.answer} "
            f"(quorum {exit_.quorum}), the sink did not run"
        )
    return table
