"""End to end on the real embedded model: optimize, save, load and run the artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from tts_opt.engines.base import ChatMessage, Engine
from tts_opt.graph import Budget, Decoding, TaskLengths, load_artifact, save_artifact
from tts_opt.graph.models import spec_from_config
from tts_opt.optimizer import Limits, OptimizeSettings, SearchSpace, optimize
from tts_opt.optimizer.evaluation_scorer import EvaluationScorer
from tts_opt.runtime.executor import GraphRunner
from tts_opt.tasks import NumericScorer, Question, Task
from tts_opt.tasks.templates import NUMBER, role_templates

pytestmark = pytest.mark.engine

TASK = Task(
    name="sums",
    questions=tuple(
        Question(id=f"s{a}-{b}", prompt=f"What is {a} + {b}?", answer=str(a + b))
        for a in range(1, 9)
        for b in range(1, 5)
    ),
    templates=role_templates(NUMBER),
    scorer=NumericScorer(),
    val_fraction=0.5,
)


async def test_optimize_writes_an_artifact_the_runtime_runs(
    gemma_engine: Engine, gemma_path: Path, tmp_path: Path
) -> None:
    engines = {"gemma-3-270m": gemma_engine}

    async def start():
        return engines

    space = SearchSpace(
        task=TASK.name,
        budget=Budget(value=3.5),
        lengths=TaskLengths(prompt_tokens=60, output_tokens=24),
        pool=(spec_from_config("gemma-3-270m", gemma_path),),
        templates=TASK.templates,
        decoding=Decoding(max_tokens=24, temperature=0.7),
        max_nodes=3,
    )
    settings = OptimizeSettings(
        limits=Limits(iterations=3),
        val_questions=3,
        pretest_questions=2,
        reeval_questions=4,
        reeval_top_k=1,
        test_questions=4,
    )
    result = await optimize(
        TASK, space, settings, EvaluationScorer(TASK, start), tmp_path / "archive.jsonl"
    )
    path = save_artifact(result.artifact, tmp_path / "sums@3.5.json")
    artifact = load_artifact(path)
    assert artifact.accuracy[1].n == 4 and artifact.latency is not None
    assert artifact.latency.p50_s > 0
    finished = await GraphRunner(artifact, engines).run([ChatMessage("user", "What is 2 + 2?")])
    assert finished.answer
