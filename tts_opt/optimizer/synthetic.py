"""A deterministic stand-in for real evaluation, for tests and demos only (never a real result).

Its true accuracy is a known function of the graph that mirrors the paper's insights, so a
search on it has a right answer to find: model quality grows with log(parameters); parallel
width helps up to `best_width` then hurts; depth helps up to `best_depth` then hurts; a fuser sink
over several answers adds a little. The measured accuracy is that truth plus binomial noise from
per-question draws: the same graph (however its nodes are named) on the same question always
gets the same verdict, whatever was evaluated before, which makes searches reproducible and
resumable. Like real graphs, two graphs' verdicts are correlated through the question (a hard
question is hard for both): on most questions the verdict is "the question's difficulty is below
the graph's accuracy", on the rest an independent draw of the graph; either way a verdict is
right with the graph's true accuracy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from tts_opt.evaluation.stats import wilson_interval
from tts_opt.graph import (
    GraphArtifact,
    active_nodes,
    graph_flops,
    predecessors,
    topological_levels,
)
from tts_opt.optimizer.candidate_set import signature
from tts_opt.optimizer.objective import Measurement
from tts_opt.optimizer.space import Candidate
from tts_opt.tasks.schema import Question

SHARED_DIFFICULTY = 0.7  # share of questions whose verdict follows the question's difficulty


class SyntheticScorer:
    """Scores artifacts without running them; `calls` counts evaluations."""

    def __init__(self, seed: int = 0, best_width: int = 3, best_depth: int = 2) -> None:
        self.seed = seed
        self.best_width = best_width
        self.best_depth = best_depth
        self.calls = 0

    def true_accuracy(self, a: GraphArtifact) -> float:
        specs = {m.name: m for m in a.models}
        model = {n.id: n.model for n in a.nodes}
        role = {n.id: n.role for n in a.nodes}
        smallest = min(m.params for m in a.models)

        def quality(node: str) -> float:
            return min(0.9, 0.25 + 0.1 * math.log2(specs[model[node]].params / smallest))

        active = active_nodes(a)
        pred = predecessors(a)
        running = set(active)
        sources = [n for n in active if not any(p in running for p in pred[n])]
        depth = len(topological_levels(active, [e for e in a.edges if e[1] in running]))
        width = len(sources)
        mean_source = float(np.mean([quality(s) for s in sources]))
        acc = quality(a.sink) + 0.3 * (mean_source - quality(a.sink))
        acc += 0.08 * min(width, self.best_width) - 0.06 * max(0, width - self.best_width)
        acc += 0.05 * min(depth - 1, self.best_depth - 1) - 0.07 * max(0, depth - self.best_depth)
        if role[a.sink] == "fuser" and width > 1:
            acc += 0.03
        return min(0.98, max(0.02, acc))

    def latency(self, a: GraphArtifact) -> float:
        """Levels run one after another, nodes in a level concurrently: sum of level maxima."""
        specs = {m.name: m for m in a.models}
        model = {n.id: n.model for n in a.nodes}
        active = active_nodes(a)
        pred = predecessors(a)
        edges = [e for e in a.edges if e[1] in set(active)]
        return sum(
            max(specs[model[n]].params / 1e9 * 0.5 * (1 + 0.2 * len(pred[n])) for n in level)
            for level in topological_levels(active, edges)
        )

    async def score(self, artifact: GraphArtifact, questions: Sequence[Question]) -> Measurement:
        self.calls += 1
        # Isomorphic graphs (the same graph with its nodes named otherwise) are one graph.
        graph = signature(Candidate(nodes=artifact.nodes, edges=artifact.edges, sink=artifact.sink))
        truth = self.true_accuracy(artifact)
        outcomes = tuple(self._verdict(graph, q.id, truth) for q in questions)
        n, correct = len(outcomes), sum(outcomes)
        low, high = wilson_interval(correct, n)
        lat = self.latency(artifact)
        lengths = artifact.task_lengths
        pred = predecessors(artifact)
        tokens = sum(
            lengths.prompt_tokens + (len(pred[node]) + 1) * lengths.output_tokens
            for node in active_nodes(artifact)
        )
        return Measurement(
            accuracy=correct / n if n else 0.0,
            n=n,
            ci_low=low,
            ci_high=high,
            latency_p50_s=lat,
            latency_p95_s=1.3 * lat,
            flops=graph_flops(artifact),
            tokens=int(tokens * n),
            outcomes=outcomes,
            latencies_s=(lat,) * n,
        )

    def _verdict(self, graph: str, question: str, truth: float) -> bool:
        shared, difficulty = (
            self._uniform(question, "shared"),
            self._uniform(question, "difficulty"),
        )
        if shared < SHARED_DIFFICULTY:
            return difficulty < truth
        return self._uniform(f"{graph}|{question}", "own") < truth

    def _uniform(self, key: str, purpose: str) -> float:
        digest = hashlib.sha256(f"{self.seed}|{purpose}|{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    async def close(self) -> None:
        return None
