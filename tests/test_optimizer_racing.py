"""Racing: a search graph gets more of the shared validation questions only while it can still
beat the incumbent (on the synthetic scorer, a test double whose true accuracies are known).
Every seed also reseeds the scorer, so the 20 seeds are 20 independent noise draws."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from optimizer_support import fast_settings, paper_space, synthetic_task

from tts_opt.optimizer import SyntheticScorer, optimize
from tts_opt.optimizer.context import Limits
from tts_opt.optimizer.objective import Measurement
from tts_opt.optimizer.runner import OptimizeSettings, SearchResult

TASK = synthetic_task(1200)
SPACE = paper_space(budget=18.0)
SEEDS = range(20)


def run(path: Path, seed: int, race_first: int, val: int = 20) -> tuple[SearchResult, float]:
    settings: OptimizeSettings = msgspec.structs.replace(
        fast_settings("agent-reinforce", iterations=30, seed=seed),
        val_questions=val,
        reeval_questions=max(60, val),
        race_first=race_first,
    )
    scorer = SyntheticScorer(seed=seed)
    result = asyncio.run(optimize(TASK, SPACE, settings, scorer, path, fresh=True))
    return result, scorer.true_accuracy(result.artifact)


def search_calls(result: SearchResult) -> int:
    return sum(r.node_calls for r in result.records)


@pytest.mark.parametrize(("val", "share"), [(20, 0.5), (100, 0.4)])
def test_racing_keeps_the_final_choice_for_fewer_node_calls(
    tmp_path: Path, val: int, share: float
) -> None:
    """Measured: 0.448 of the node calls at 20 questions, 0.310 at 100 (more looks, more to
    save), the same shipped graph in 19 and 20 of 20 seeds. The rule was tuned on these seeds
    and checked on 40 others (20-59): 0.498 at 20 questions, the same graph in 40 of 40."""
    same, raced_calls, fixed_calls, raced_out = 0, 0, 0, 0
    for seed in SEEDS:
        fixed, _ = run(tmp_path / f"f{seed}.jsonl", seed, race_first=0, val=val)
        raced, _ = run(tmp_path / f"r{seed}.jsonl", seed, race_first=5, val=val)
        same += raced.artifact.nodes == fixed.artifact.nodes
        fixed_calls += search_calls(fixed)
        raced_calls += search_calls(raced)
        assert all(r.measurement.n == val for r in fixed.records if r.stage != "pretest")
        raced_out += sum(r.raced_out for r in raced.records)
    print(f"same final choice {same}/20, node calls {raced_calls / fixed_calls:.3f} of fixed")
    assert same >= 18 and raced_out > 0
    assert raced_calls <= share * fixed_calls


def test_a_graph_raced_out_never_becomes_the_incumbent(tmp_path: Path) -> None:
    result, _ = run(tmp_path / "a.jsonl", 0, race_first=5)
    raced = [r for r in result.records if r.raced_out]
    assert raced and all(r.measurement.n < 20 for r in raced)
    assert result.selection.search_best.measurement.n == 20
    assert not result.selection.search_best.raced_out


def test_a_graph_scored_again_reuses_its_verdicts(tmp_path: Path) -> None:
    result, _ = run(tmp_path / "a.jsonl", 3, race_first=0)
    seen: set[str] = set()
    for record in result.records:
        key = f"{record.stage == 'pretest'}|{record.candidate.key()}"
        if key in seen:
            assert record.node_calls == 0
        seen.add(key)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_a_measurement_splits_and_joins_exactly(k: int) -> None:
    m = Measurement(
        accuracy=0.6,
        n=5,
        ci_low=0.0,
        ci_high=1.0,
        latency_p50_s=3.0,
        latency_p95_s=4.8,
        flops=2.0,
        tokens=50,
        outcomes=(True, False, True, True, False),
        latencies_s=(1.0, 2.0, 3.0, 4.0, 5.0),
    )
    head = m.head(k)
    assert head.outcomes == m.outcomes[:k] and head.accuracy == sum(m.outcomes[:k]) / k
    rest = Measurement(**{**msgspec.structs.asdict(m)}).head(5)
    joined = head.extended(
        msgspec.structs.replace(
            rest,
            n=5 - k,
            outcomes=m.outcomes[k:],
            latencies_s=m.latencies_s[k:],
            tokens=m.tokens - head.tokens,
        )
    )
    assert joined.outcomes == m.outcomes and joined.tokens == m.tokens
    assert joined.latency_p50_s == m.latency_p50_s and joined.accuracy == m.accuracy


def test_a_node_call_budget_stops_the_search(tmp_path: Path) -> None:
    settings = msgspec.structs.replace(
        fast_settings("random", iterations=1000),
        limits=Limits(iterations=1000, patience=1000, node_calls=500),
    )
    result = asyncio.run(optimize(TASK, SPACE, settings, SyntheticScorer(), tmp_path / "a.jsonl"))
    spent = search_calls(result)
    last = result.records[-1].node_calls
    assert spent - last < 500 <= spent  # it stops at the first evaluation that reaches it
    assert result.node_calls > spent  # selection's evaluations are counted on top
