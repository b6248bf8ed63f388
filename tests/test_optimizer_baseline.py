"""The single model is always in the final: a graph ships only if it beats the best single-model
call on the same validation questions by a paired test (on the synthetic scorer, whose true
accuracies are known)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from optimizer_support import fast_settings, paper_space, synthetic_task

from tts_opt.evaluation.stats import mcnemar_exact, paired_difference_interval
from tts_opt.graph import Node, load_artifact, save_artifact
from tts_opt.graph.render import to_text
from tts_opt.optimizer import SyntheticScorer, optimize
from tts_opt.optimizer.archive import EvaluationRecord
from tts_opt.optimizer.baseline import graph_wins, is_single_model, paired
from tts_opt.optimizer.budget import parallel_graph
from tts_opt.optimizer.objective import Measurement, Objective
from tts_opt.optimizer.report import run_report
from tts_opt.optimizer.space import Candidate

TASK = synthetic_task(1200)
SPACE = paper_space(budget=18.0)


def search(path: Path, scorer: SyntheticScorer, seed: int = 0):
    settings = msgspec.structs.replace(
        fast_settings("agent-reinforce", iterations=16, seed=seed),
        val_questions=100,  # enough that the search ranks the graphs it sees by their truth
        race_first=0,  # every graph on all of them: what racing loses is tested on its own
        reeval_questions=300,
        test_questions=200,
    )
    return asyncio.run(optimize(TASK, SPACE, settings, scorer, path))


def test_mcnemar_and_the_paired_interval_on_known_values() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(0.03857421875)
    assert mcnemar_exact(6, 0) == pytest.approx(0.03125)
    assert mcnemar_exact(5, 5) == mcnemar_exact(0, 0) == 1.0
    low, high = paired_difference_interval(10, 2, 50)
    assert low < 8 / 50 < high and low > 0
    assert paired_difference_interval(0, 0, 0) == (-1.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_where_the_single_model_is_truly_best_it_ships(tmp_path: Path, seed: int) -> None:
    scorer = SyntheticScorer(best_width=1, best_depth=1)  # width and depth only hurt
    result = search(tmp_path / "a.jsonl", scorer, seed)
    artifact, selection = result.artifact, result.selection
    assert len(artifact.nodes) == 1 and artifact.nodes[0].model == "llama-3.1-8b"
    assert artifact.baseline is not None and artifact.baseline.verdict == "single"
    assert "no graph beat the single llama-3.1-8b" in artifact.baseline.summary
    assert selection.validation is not None and selection.validation.difference <= 0
    # The test split still reports the best graph against the shipped single model.
    test = artifact.baseline.test
    assert test is not None and test.split == "test" and test.n == 200
    assert test.baseline_accuracy == artifact.accuracy[1].value
    assert selection.other_test is not None
    assert not is_single_model(selection.other_test.candidate)
    assert test.accuracy == selection.other_test.measurement.accuracy
    assert "test (reported, not used to choose): best graph" in to_text(artifact)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_graph_truly_better_by_a_margin_ships_with_its_paired_comparison(
    tmp_path: Path, seed: int
) -> None:
    result = search(tmp_path / "a.jsonl", SyntheticScorer(), seed)
    artifact = result.artifact
    selection = result.selection
    assert not is_single_model(selection.winner.candidate) and selection.baseline is not None
    truth = SyntheticScorer().true_accuracy
    margin = truth(artifact) - truth(SPACE.artifact(selection.baseline.candidate))
    assert margin > 0.05  # the graph shipped is truly better than the single model
    comparison = artifact.baseline
    assert comparison is not None and comparison.verdict == "graph"
    assert comparison.validation is not None and comparison.validation.p_value < 0.05
    test = comparison.test
    assert test is not None and test.split == "test" and test.n == 200
    assert test.baseline == "single llama-3.1-8b"
    assert test.accuracy == artifact.accuracy[1].value
    assert test.ci_low <= test.difference <= test.ci_high
    path = save_artifact(artifact, tmp_path / "g.json")
    assert load_artifact(path).baseline == comparison  # the comparison is part of the artifact


def test_a_search_without_test_questions_compares_on_validation_only(tmp_path: Path) -> None:
    settings = msgspec.structs.replace(
        fast_settings("agent-reinforce", iterations=8), race_first=0, test_questions=0
    )
    result = asyncio.run(optimize(TASK, SPACE, settings, SyntheticScorer(), tmp_path / "a.jsonl"))
    selection, comparison = result.selection, result.artifact.baseline
    assert selection.validation is not None and selection.test.measurement.outcomes == ()
    assert selection.other_test is None and selection.test_comparison is None
    assert comparison is not None and comparison.validation is not None
    assert comparison.test is None
    path = save_artifact(result.artifact, tmp_path / "g.json")
    assert load_artifact(path).baseline == comparison


def test_graph_show_and_the_model_card_carry_the_comparison(tmp_path: Path) -> None:
    from tts_opt.engines.scripted import ScriptedEngine
    from tts_opt.runtime.executor import GraphRunner
    from tts_opt.server.models import profile_info
    from tts_opt.server.profiles import Profile

    artifact = search(tmp_path / "a.jsonl", SyntheticScorer()).artifact
    assert artifact.baseline is not None and artifact.baseline.test is not None
    text = to_text(artifact)
    assert f"against the single model: {artifact.baseline.summary}" in text
    assert "test (reported, not used to choose): the graph" in text
    assert "on 200 test questions" in text
    assert "McNemar p = " in text
    runner = GraphRunner(artifact, {m.name: ScriptedEngine(m.name) for m in artifact.models})
    card = profile_info(Profile("math@18", tmp_path / "g.json", artifact, runner))
    assert card.baseline == artifact.baseline


def test_the_self_consistency_graph_of_the_strongest_model_is_in_the_final(tmp_path: Path) -> None:
    result = search(tmp_path / "a.jsonl", SyntheticScorer())
    consistency = result.selection.consistency
    assert consistency is not None and consistency in result.selection.finalists
    # The 8B model cannot afford two samples and a fuser at this budget; the 3B can.
    assert not SPACE.within_budget(parallel_graph(SPACE, ["llama-3.1-8b"] * 3))
    assert {node.model for node in consistency.candidate.nodes} == {"llama-3.2-3b"}
    width = len(consistency.candidate.nodes)
    assert width >= 3 and SPACE.within_budget(consistency.candidate)
    assert not SPACE.within_budget(parallel_graph(SPACE, ["llama-3.2-3b"] * (width + 1)))
    assert consistency.measurement.n == 300  # re-evaluated with the finalists
    assert "(self-consistency baseline)" in run_report(result)


def _record(correct: int, latency_s: float, n: int = 100) -> EvaluationRecord:
    outcomes = tuple(i < correct for i in range(n))
    measurement = Measurement(
        accuracy=correct / n,
        n=n,
        ci_low=0.0,
        ci_high=1.0,
        latency_p50_s=latency_s,
        latency_p95_s=latency_s,
        flops=1.0,
        outcomes=outcomes,
        latencies_s=tuple(latency_s + 0.01 * (i % 7) for i in range(n)),
    )
    graph = Candidate(nodes=(Node("a", "llama-3.1-8b", "assistant"),), edges=(), sink="a")
    return EvaluationRecord(-1, "reeval", graph, measurement, 1.0, 0.0, 0, 0.0)


@pytest.mark.parametrize(("weight", "ships"), [(0.01, True), (0.5, False)])
def test_under_accuracy_latency_a_paired_bootstrap_of_the_utility_decides(
    weight: float, ships: bool
) -> None:
    """20 points more accurate for 1 s more: worth it at 1 point per second, not at 50."""
    objective = Objective(kind="accuracy-latency", latency_weight=weight)
    graph, single = _record(60, 3.0), _record(40, 2.0)
    comparison = paired(graph, single, "val", objective)
    assert comparison.utility_difference == pytest.approx(0.2 - weight * 1.0)
    assert comparison.utility_p_value is not None
    assert (comparison.utility_p_value < 0.05) is ships
    assert graph_wins(graph, single, comparison, objective, 0.05) is ships
    assert comparison.p_value < 0.05  # McNemar alone would ship it either way
