"""The replay benchmark: the candidate set, recording a table (resumable), replaying searches
against it exactly, and the report over seeds.

The recordings here score with `SyntheticScorer`, a test double: its accuracies are a known
function of the graph, not results of real models.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import msgspec
import pytest
from optimizer_support import FreeChat, fast_settings, paper_space, synthetic_task
from typer.testing import CliRunner

from tts_opt.graph import Node
from tts_opt.optimizer import SearchResult, SyntheticScorer, optimize
from tts_opt.optimizer.agents import LLMAgent, ReplyCounts, RuleBasedAgent
from tts_opt.optimizer.candidate_set import (
    CandidateSetError,
    all_candidates,
    canonical,
    canonical_key,
    signature,
)
from tts_opt.optimizer.replay import ReplayScorer, replay_request
from tts_opt.optimizer.replay_report import (
    SearchOutcome,
    Step,
    returned_close_at,
    spent_to_regret,
    summarize,
    summarize_limits,
    truth,
    write_replay_report,
)
from tts_opt.optimizer.report import replies
from tts_opt.optimizer.service import SearchRequest
from tts_opt.optimizer.space import Candidate
from tts_opt.optimizer.table import (
    GraphRow,
    QuestionRow,
    Table,
    TableError,
    read_table,
    record_table,
)

TASK = synthetic_task()
SPACE = paper_space(budget=7.0, max_nodes=3)
SETTINGS = fast_settings()  # 20 validation, 40 re-evaluation and 40 test questions
REQUEST = SearchRequest(
    task="math",
    budget=7.0,
    max_nodes=3,
    val_questions=SETTINGS.val_questions,
    reeval_questions=SETTINGS.reeval_questions,
    test_questions=SETTINGS.test_questions,
    scorer="synthetic",
)
QUESTIONS_PER_GRAPH = 40 + 40  # max(val, reeval) + test
GRAPHS = len(all_candidates(SPACE))


def record(path: Path, scorer=None, request: SearchRequest = REQUEST) -> Table:
    return asyncio.run(record_table(path, TASK, SPACE, request, scorer or SyntheticScorer()))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Table:
    return record(tmp_path_factory.mktemp("table") / "table.jsonl")


def search(path: Path, method: str, scorer, race_first: int = 5) -> SearchResult:
    settings = fast_settings(method, race_first=race_first)
    return asyncio.run(optimize(TASK, SPACE, settings, scorer, path))


def test_isomorphic_graphs_share_one_canonical_form() -> None:
    fan_in = Candidate(
        nodes=(
            Node("x", "llama-3.2-1b", "assistant"),
            Node("y", "llama-3.2-3b", "assistant"),
            Node("z", "llama-3.1-8b", "fuser"),
        ),
        edges=(("x", "z"), ("y", "z")),
        sink="z",
    )
    for order in itertools.permutations(fan_in.nodes):
        renamed = {n.id: f"v{i}" for i, n in enumerate(order)}
        other = Candidate(
            nodes=tuple(Node(renamed[n.id], n.model, n.role) for n in reversed(order)),
            edges=tuple((renamed[s], renamed[d]) for s, d in fan_in.edges),
            sink=renamed["z"],
        )
        assert canonical(other) == canonical(fan_in)
    swapped = Candidate(
        nodes=(Node("x", "llama-3.1-8b", "assistant"), *fan_in.nodes[1:]),
        edges=fan_in.edges,
        sink="z",
    )
    assert canonical_key(swapped) != canonical_key(fan_in)


def test_the_candidate_set_is_every_legal_graph_once() -> None:
    graphs = all_candidates(SPACE)
    assert len({canonical_key(c) for c in graphs}) == len(graphs) == GRAPHS
    for c in graphs:
        SPACE.check(c)
        assert canonical(c) == c and len(c.nodes) <= SPACE.max_nodes
    singles = {c.nodes[0].model for c in graphs if len(c.nodes) == 1}
    assert singles == {m.name for m in SPACE.pool if SPACE.within_budget(_single(m.name))}
    assert max(len(c.nodes) for c in graphs) == 3


def test_a_space_too_large_to_enumerate_says_what_to_lower() -> None:
    with pytest.raises(CandidateSetError, match=r"affords graphs of 6 nodes.*lower --max-nodes"):
        all_candidates(paper_space(budget=18.0, max_nodes=6))


def _single(model: str) -> Candidate:
    return Candidate(nodes=(Node("a", model, "assistant"),), edges=(), sink="a")


def test_the_table_holds_every_graph_on_every_question(table: Table) -> None:
    assert table.complete and len(table.rows) == GRAPHS
    header = table.header
    assert header.space == SPACE and header.data_sha256 == TASK.data_sha256
    assert header.val_ids == tuple(q.id for q in TASK.split("val", limit=40))
    assert header.test_ids == tuple(q.id for q in TASK.split("test", limit=40))
    assert all(
        [q.id for q in row.questions] == [*header.val_ids, *header.test_ids] for row in table.rows
    )
    assert read_table(table.path) == table


@pytest.mark.parametrize("race_first", [0, 2])  # every graph on all questions; racing from 2
@pytest.mark.parametrize("method", ["agent-reinforce", "random", "bo", "reinforce"])
def test_a_replayed_search_takes_the_live_decisions(
    method: str, race_first: int, table: Table, tmp_path
) -> None:
    live = search(tmp_path / "live.jsonl", method, SyntheticScorer(), race_first)
    replayed = search(tmp_path / "replay.jsonl", method, ReplayScorer(table), race_first)
    assert [(r.stage, r.candidate.key(), r.utility) for r in replayed.records] == [
        (r.stage, r.candidate.key(), r.utility) for r in live.records
    ]
    assert [(r.measurement.outcomes, r.raced_out) for r in replayed.records] == [
        (r.measurement.outcomes, r.raced_out) for r in live.records
    ]
    assert replayed.node_calls == live.node_calls
    assert replayed.selection.winner.candidate == live.selection.winner.candidate
    assert (replayed.artifact.nodes, replayed.artifact.edges) == (
        live.artifact.nodes,
        live.artifact.edges,
    )


def test_replay_answers_any_prefix_as_recorded(table: Table) -> None:
    replay, live = ReplayScorer(table), SyntheticScorer()
    val = TASK.split("val", limit=40)
    for candidate in all_candidates(SPACE)[::5]:
        artifact = SPACE.artifact(candidate)
        for size in (1, 5, 12, 40):
            got = asyncio.run(replay.score(artifact, val[:size]))
            want = asyncio.run(live.score(artifact, val[:size]))
            assert (got.outcomes, got.accuracy, got.n) == (want.outcomes, want.accuracy, size)
            assert (got.ci_low, got.ci_high, got.latency_p50_s) == (
                want.ci_low,
                want.ci_high,
                want.latency_p50_s,
            )
            assert got.flops == pytest.approx(want.flops)


def test_a_graph_or_question_missing_from_the_table_is_rejected_by_name(table: Table) -> None:
    partial = Table(table.path, table.header, table.rows[:-1])
    missing = SPACE.artifact(table.rows[-1].candidate)
    key = Candidate(nodes=missing.nodes, edges=missing.edges, sink=missing.sink).key()
    with pytest.raises(TableError, match="is not in the table") as err:
        asyncio.run(ReplayScorer(partial).score(missing, TASK.split("val", limit=3)))
    assert key in str(err.value)
    unrecorded = TASK.split("val", limit=41)[-1]
    with pytest.raises(TableError, match=f"question {unrecorded.id!r}"):
        asyncio.run(ReplayScorer(table).score(missing, [unrecorded]))


class Interrupted(Exception):
    pass


class StopsAfter(SyntheticScorer):
    """A test double that dies once `graphs` graphs were fully scored, like a killed process."""

    def __init__(self, graphs: int) -> None:
        super().__init__()
        self.limit = graphs * QUESTIONS_PER_GRAPH

    async def score(self, artifact, questions):
        if self.calls == self.limit:
            raise Interrupted
        return await super().score(artifact, questions)


@pytest.mark.parametrize("k", [0, 3, 11])
def test_a_stopped_recording_resumes_with_the_rest(k: int, table: Table, tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    with pytest.raises(Interrupted):
        record(path, StopsAfter(k))
    assert len(read_table(path).rows) == k
    resumed_scorer = SyntheticScorer()
    resumed = record(path, resumed_scorer)
    assert resumed_scorer.calls == (GRAPHS - k) * QUESTIONS_PER_GRAPH
    assert resumed.rows == table.rows == read_table(path).rows


def test_a_torn_last_line_is_recorded_again(table: Table, tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    data = table.path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, -1) + 40])  # the last graph half written
    assert len(read_table(path).rows) == GRAPHS - 1
    resumed_scorer = SyntheticScorer()
    assert record(path, resumed_scorer).rows == table.rows
    assert resumed_scorer.calls == QUESTIONS_PER_GRAPH
    assert read_table(path).rows == table.rows


def test_resuming_with_other_settings_names_the_file(table: Table, tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(table.path.read_bytes())
    with pytest.raises(TableError, match=f"{path}.*request, val_ids differ"):
        record(path, request=msgspec.structs.replace(REQUEST, reeval_questions=30))


def _row(model: str, nodes: int, correct: int, n: int = 10) -> GraphRow:
    candidate = Candidate(
        nodes=tuple(Node(f"n{i}", model, "assistant") for i in range(nodes)),
        edges=tuple((f"n{i}", f"n{nodes - 1}") for i in range(nodes - 1)),
        sink=f"n{nodes - 1}",
    )
    questions = tuple(QuestionRow(f"q{i}", i < correct, 10, 1.0, None) for i in range(n))
    return GraphRow(candidate, float(nodes), questions)


def test_regret_on_a_hand_made_table() -> None:
    weak, strong, pair, trio = _row("w", 1, 5), _row("s", 1, 6), _row("p", 2, 9), _row("t", 3, 7)
    returned = [pair, trio, weak, strong]  # regrets 0, 0.2, 0.4, 0.3
    outcomes = [
        SearchOutcome("m", seed, canonical_key(row.candidate), (Step(1, 5, ""),), 10 * (seed + 1))
        for seed, row in enumerate(returned)
    ]
    (s,) = summarize([weak, strong, pair, trio], outcomes)
    assert s.seeds == 4
    assert (s.regret.q25, s.regret.median, s.regret.q75) == pytest.approx((0.15, 0.25, 0.325))
    assert (s.accuracy.q25, s.accuracy.median, s.accuracy.q75) == pytest.approx((0.575, 0.65, 0.75))
    assert s.worse_than_single == 0.25  # only "weak" is below the best single model (60%)
    assert (s.search_node_calls.median, s.node_calls.median) == (5, 25)  # before / with final


def test_evaluations_to_a_close_regret_follow_the_median_best_so_far() -> None:
    weak, strong, pair = _row("w", 1, 5), _row("s", 1, 6), _row("p", 2, 9)
    acc = truth([weak, strong, pair])  # the optimum is the pair, 90%
    w, s, p = (canonical_key(r.candidate) for r in (weak, strong, pair))

    def run(seed: int, *incumbents: str) -> SearchOutcome:
        steps = tuple(Step(i, 5 * i, k) for i, k in enumerate(incumbents, start=1))
        return SearchOutcome("m", seed, incumbents[-1], steps, len(incumbents))

    climbs, late, stuck = run(0, w, s, p), run(1, "", p), run(2, w)
    # Regrets per evaluation: climbs 0.4, 0.3, 0; late none yet, then 0 (kept after it stops);
    # stuck 0.4 throughout. Medians: 0.4, 0.3, 0.
    assert spent_to_regret([climbs, late, stuck], acc, 0.02) == 3
    assert spent_to_regret([climbs, late, stuck], acc, 0.3) == 2
    assert spent_to_regret([stuck], acc, 0.02) is None
    assert spent_to_regret([climbs, late, stuck], acc, 0.02, by_calls=True) == 15
    (summary,) = summarize([weak, strong, pair], [climbs, late, stuck])
    assert (summary.evaluations_to_close, summary.node_calls_to_close) == (3, 15)


def test_the_returned_graph_by_evaluation_limit_and_when_it_stays_close() -> None:
    weak, strong, pair = _row("w", 1, 5), _row("s", 1, 6), _row("p", 2, 9)
    rows = [weak, strong, pair]

    def returned(*graphs: GraphRow) -> list[SearchOutcome]:
        return [
            SearchOutcome("m", seed, canonical_key(g.candidate), (Step(1, 1, ""),), 10)
            for seed, g in enumerate(graphs)
        ]

    # Median regret 0.3 at 2 evaluations, 0 at 4, back to 0.3 at 8, 0 at 16 (limits unsorted).
    limited = {
        16: returned(pair, pair, weak),
        2: returned(strong, strong, pair),
        8: returned(pair, strong, strong),
        4: returned(pair, pair, strong),
    }
    limits = summarize_limits(rows, limited)
    assert [s.limit for s in limits] == [2, 4, 8, 16]
    assert [s.regret.median for s in limits] == pytest.approx([0.3, 0.0, 0.3, 0.0])
    assert limits[-1].worse_than_single == pytest.approx(1 / 3)  # "weak" is below "strong"
    assert returned_close_at(limits) == {"m": 16}  # close from 16 on, not from 4 on
    assert returned_close_at(summarize_limits(rows, {2: returned(weak)})) == {"m": None}


def test_a_replay_request_takes_the_table_and_refuses_contradictions(table: Table) -> None:
    request = replay_request(table.path, {"task": None, "method": "bo", "iterations": 7})
    assert (request.task, request.budget, request.max_nodes) == ("math", 7.0, 3)
    assert (request.scorer, request.replay, request.iterations) == ("replay", table.path, 7)
    assert request.reeval_questions == 40 and request.fresh
    with pytest.raises(TableError, match=r"--budget 8\.0 contradicts the table"):
        replay_request(table.path, {"budget": 8.0})
    with pytest.raises(TableError, match=r"--test-questions 41: the table .* holds 40 test"):
        replay_request(table.path, {"test_questions": 41})


def test_bench_record_and_replay_from_the_command_line(tmp_path) -> None:
    from tts_opt.cli.app import app

    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1), "id": i} for i in range(200)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "sums.toml"
    spec.write_text(
        'name = "sums"\ndata = "data.jsonl"\nscorer = "numeric"\nquestion_field = "q"\n'
        'answer_field = "a"\nid_field = "id"\nval_fraction = 0.5\n'
    )
    path, out = tmp_path / "sums.jsonl", tmp_path / "bench"
    options = ["--task", str(spec), "--budget", "30", "--max-nodes", "3"]
    options += ["--prompt-tokens", "100", "--output-tokens", "100", "--scorer", "synthetic"]
    options += ["--val-questions", "10", "--reeval-questions", "20", "--test-questions", "10"]
    runner = CliRunner()
    recorded = runner.invoke(app, ["bench", "record", str(path), *options])
    assert recorded.exit_code == 0, recorded.output
    graphs = len(read_table(path).rows)
    assert f"{graphs} graphs" in recorded.output
    replay = ["bench", "replay", str(path), "--seeds", "3", "--method", "random", "--parallel", "2"]
    replayed = runner.invoke(app, [*replay, "--stop-at", "2", "--out", str(out)])
    assert replayed.exit_code == 0, replayed.output
    report = (out / "replay-sums.md").read_text()
    assert "| random | 3 |" in report and (out / "replay-sums.png").stat().st_size > 0
    assert "| method | N = 2 |" in report  # the searches again, stopped after 2 evaluations
    compared = runner.invoke(
        app,
        ["compare", "--replay", str(path), "--method", "bo", "--seed", "0", "--out", str(out)],
    )
    assert compared.exit_code == 0, compared.output
    assert (out / "compare-sums@30.md").exists()
    contradiction = runner.invoke(
        app, ["compare", "--replay", str(path), "--budget", "31", "--out", str(out)]
    )
    assert contradiction.exit_code == 1
    assert "--budget 31.0 contradicts the table" in contradiction.output


def test_the_signature_tells_graphs_apart_and_ignores_names() -> None:
    graphs = all_candidates(paper_space(budget=9.0, max_nodes=4))
    assert len({signature(c) for c in graphs}) == len(graphs)
    for c in graphs:
        renamed = {n.id: f"v{len(c.nodes) - i}" for i, n in enumerate(c.nodes)}
        other = Candidate(
            nodes=tuple(Node(renamed[n.id], n.model, n.role) for n in c.nodes),
            edges=tuple((renamed[s], renamed[d]) for s, d in c.edges),
            sink=renamed[c.sink],
        )
        assert signature(other) == signature(c) and canonical(other) == c


def test_a_replayed_search_with_an_llm_agent_reports_how_its_replies_came_about(
    table: Table, tmp_path
) -> None:
    agent = LLMAgent(FreeChat(), RuleBasedAgent(), model="free")
    results = [
        asyncio.run(
            optimize(
                TASK,
                SPACE,
                fast_settings(seed=seed),
                ReplayScorer(table),
                tmp_path / f"s{seed}.jsonl",
                agent=agent,
            )
        )
        for seed in range(2)
    ]
    rule_based = search(tmp_path / "rule.jsonl", "agent-reinforce", ReplayScorer(table))
    counts = sum((r.agent_replies for r in results), ReplyCounts())
    archived = [
        json.loads(line)["type"] == "agent"
        for seed in range(2)
        for line in (tmp_path / f"s{seed}.jsonl").read_text().splitlines()
    ]
    assert counts.decisions == sum(archived) > 2  # every decision, each search's picks and more
    *_, markdown = write_replay_report(table.path, table.rows, [*results, rule_based], tmp_path)
    assert "| agent-reinforce [llm:free] | 2 |" in markdown
    assert "| agent-reinforce | 1 |" in markdown
    assert f"- agent-reinforce [llm:free]: {replies(counts)}" in markdown
    assert "- agent-reinforce:" not in markdown  # the rule-based agent has no replies


def test_a_replay_request_takes_the_agent_model(table: Table) -> None:
    request = replay_request(table.path, {"agent_model": "qwen2.5-coder-1.5b"})
    assert request.agent_model == "qwen2.5-coder-1.5b" and request.agent_base_url is None
