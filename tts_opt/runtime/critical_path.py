"""The latency of a graph run from its nodes' times, for runs whose wall time is not the graph's
latency: replayed nodes return at once, so a run that replays some is timed by its critical path
over each node's recorded (replayed) or measured (live) time instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tts_opt.runtime.plan import ExecutionPlan
from tts_opt.runtime.trace import RunTrace


def critical_path_s(
    durations: Mapping[str, float | None], inputs: Mapping[str, Sequence[str]], sink: str
) -> float | None:
    """When `sink` finishes if every node starts as soon as all its inputs are done (nodes
    without inputs at 0) and takes its duration, as the runtime runs a graph. None when the time
    of a node the sink waits for is unknown (None)."""
    finish: dict[str, float | None] = {}

    def finished(node: str) -> float | None:
        if node not in finish:
            starts = [finished(before) for before in inputs.get(node, ())]
            duration = durations[node]
            known = [start for start in starts if start is not None]
            finish[node] = (
                max(known, default=0.0) + duration
                if duration is not None and len(known) == len(starts)
                else None
            )
        return finish[node]

    return finished(sink)


def run_latency_s(trace: RunTrace, plan: ExecutionPlan) -> float | None:
    """The run's end-to-end latency: its wall time if it replayed nothing, else the critical
    path of `plan` over its nodes' durations (None when a replayed node's time is unknown).
    A run that exited early ended when the last of its agreeing inputs finished."""
    if not trace.replayed:
        return trace.total_s
    inputs = {node: group.inputs for group in plan.groups for node in group.nodes}
    durations = {t.node: t.duration_s for t in trace.nodes}
    if trace.early_exit is None:
        return critical_path_s(durations, inputs, plan.sink)
    ends = [critical_path_s(durations, inputs, node) for node in trace.early_exit.agreeing]
    known = [end for end in ends if end is not None]
    return max(known) if len(known) == len(ends) else None
