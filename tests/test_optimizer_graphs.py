"""The probabilistic graph, sampling, multisets and repair always give legal, in-budget DAGs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from optimizer_support import paper_space

from tts_opt.graph import Budget, GraphError, Node
from tts_opt.optimizer.agents.shapes import feasible, layered, shape_of
from tts_opt.optimizer.budget import (
    BudgetError,
    maximal_multisets,
    parallel_graph,
    repair,
)
from tts_opt.optimizer.distribution import GraphDistribution, ProbabilityTable
from tts_opt.optimizer.sampling import sample_graph
from tts_opt.optimizer.space import legalize

FAST = settings(max_examples=40, deadline=None)
SPACE = paper_space(budget=18.0, max_nodes=6)
UNLIMITED = replace(SPACE, budget=Budget(value=1e300))  # for checks of the rules without cost
POOL = [m.name for m in SPACE.pool]


def random_distribution(seed: int, size: int, fixed: bool) -> GraphDistribution:
    rng = np.random.default_rng(seed)
    models = [POOL[i] for i in rng.integers(len(POOL), size=size)] if fixed else None
    dist = GraphDistribution.uniform(POOL, size, models)
    dist.theta[:] = rng.normal(0, 3, dist.theta.shape)
    dist.pi[:] = rng.normal(0, 2, dist.pi.shape)
    dist.psi[:] = rng.normal(0, 2, dist.psi.shape)
    return dist


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, 7),
    fixed=st.booleans(),
    rule=st.sampled_from(["reference", "value"]),
    allow_fuser=st.booleans(),
)
def test_sampled_and_repaired_graphs_are_legal_and_within_budget(
    seed, size, fixed, rule, allow_fuser
) -> None:
    dist = random_distribution(seed, size, fixed)
    space = replace(SPACE, allow_fuser=allow_fuser)
    sample = sample_graph(dist, np.random.default_rng(seed), allow_fuser=allow_fuser)
    candidate = sample.candidate
    replace(UNLIMITED, allow_fuser=allow_fuser).check(candidate)
    if size > 1:
        assert any(dst == candidate.sink for _, dst in candidate.edges)
    fixed_graph = repair(space, candidate, rule, dist.edge_prob_map())
    space.check(fixed_graph)
    assert fixed_graph.sink == candidate.sink or len(fixed_graph.nodes) == 1
    if not allow_fuser:
        assert all(n.role == "assistant" for n in fixed_graph.nodes)


def test_sampling_is_reproducible_from_the_seed() -> None:
    dist = random_distribution(3, 6, fixed=False)
    a = sample_graph(dist, np.random.default_rng(11)).candidate
    b = sample_graph(dist, np.random.default_rng(11)).candidate
    assert a == b


def test_initial_edges_are_sparse() -> None:
    dist = GraphDistribution.uniform(POOL, 5)
    p = dist.edge_probs()
    assert p[0, 1] == pytest.approx(1 / (1 + np.exp(2)))  # sigmoid(0 - 2) ~ 0.12
    assert p[-1].sum() == 0 and np.trace(p) == 0  # the sink has no successors, no self loops


@FAST
@given(
    nodes=st.lists(
        st.tuples(st.sampled_from(POOL), st.sampled_from(["assistant", "fuser"])),
        min_size=1,
        max_size=6,
    ),
    edge_bits=st.lists(st.booleans(), min_size=15, max_size=15),
)
def test_legalize_makes_any_forward_graph_legal(nodes, edge_bits) -> None:
    ids = [f"n{i}" for i in range(len(nodes))]
    graph_nodes = tuple(Node(id=i, model=m, role=r) for i, (m, r) in zip(ids, nodes, strict=True))
    pairs = [(a, b) for a in range(len(ids)) for b in range(a + 1, len(ids))]
    edges = tuple((ids[a], ids[b]) for (a, b), bit in zip(pairs, edge_bits, strict=False) if bit)
    c = legalize(graph_nodes, edges, ids[-1])
    UNLIMITED.check(c)


def test_gradient_of_log_prob_matches_finite_differences() -> None:
    dist = random_distribution(5, 4, fixed=False)
    sample = sample_graph(dist, np.random.default_rng(2))
    d = sample.decisions

    def log_p(theta, pi, psi) -> float:
        p = 1 / (1 + np.exp(-(theta - 2)))
        edges = np.where(d.edge_seen, np.where(d.edge_taken > 0, np.log(p), np.log(1 - p)), 0)
        log_softmax = lambda x: x - np.log(np.exp(x).sum(axis=1, keepdims=True))  # noqa: E731
        roles = np.where(d.role_seen, log_softmax(pi)[np.arange(4), d.role], 0)
        models = log_softmax(psi)[np.arange(4), d.model]
        return float(edges.sum() + roles.sum() + models.sum())

    grads = dist.log_prob_grads(d)
    params = {"theta": dist.theta, "pi": dist.pi, "psi": dist.psi}
    for name, value in params.items():
        for index in np.ndindex(value.shape):
            bumped = {k: v.copy() for k, v in params.items()}
            bumped[name][index] += 1e-6
            numeric = (log_p(**bumped) - log_p(**params)) / 1e-6
            assert grads[name][index] == pytest.approx(numeric, abs=1e-4)


def test_probability_table_round_trips_through_theta() -> None:
    dist = GraphDistribution.uniform(POOL, 3)
    dist.set_table(ProbabilityTable(edges={"n0->n2": 0.8, "n1->n2": 0.05}))
    table = dist.table().edges
    assert table["n0->n2"] == pytest.approx(0.8, abs=1e-3)
    assert table["n1->n2"] == pytest.approx(0.05, abs=1e-3)
    assert table["n0->n1"] == pytest.approx(0.119, abs=1e-3)


def test_maximal_multisets_fit_and_cannot_grow() -> None:
    space = paper_space(budget=9.0, max_nodes=6)
    multisets = maximal_multisets(space)
    assert ("llama-3.1-8b",) in multisets
    for models in multisets:
        assert space.within_budget(parallel_graph(space, list(models)))
        bigger = parallel_graph(space, ["llama-3.2-1b", *models])
        assert len(models) == space.max_nodes or not space.within_budget(bigger)


def test_budget_below_one_call_is_refused() -> None:
    with pytest.raises(BudgetError, match="does not afford"):
        maximal_multisets(paper_space(budget=0.5))


def test_value_repair_cuts_edges_where_the_reference_rule_drops_nodes() -> None:
    space = paper_space(budget=9.0)
    nodes = tuple(Node(id=f"n{i}", model="llama-3.2-1b", role="assistant") for i in range(4))
    nodes += (Node(id="n4", model="llama-3.2-3b", role="fuser"),)
    dense = tuple((f"n{i}", f"n{j}") for i in range(5) for j in range(i + 1, 5))
    c = legalize(nodes, dense, "n4")
    assert not space.within_budget(c)
    reference, value = repair(space, c, "reference"), repair(space, c, "value")
    for fixed in (reference, value):
        space.check(fixed)
    assert len(value.nodes) > len(reference.nodes)


def test_repair_keeps_a_graph_that_fits() -> None:
    c = parallel_graph(SPACE, ["llama-3.2-1b", "llama-3.2-3b"])
    assert repair(SPACE, c, "reference") == c == repair(SPACE, c, "value")


@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 3), (2, 2), (0, 0)])
def test_layered_graphs_have_their_shape(shape) -> None:
    nodes = parallel_graph(SPACE, ["llama-3.2-1b"] * 4 + ["llama-3.2-3b"]).nodes
    assert feasible(shape, len(nodes))
    c = layered(SPACE, nodes, "n4", shape)
    assert shape_of(c) == shape
    UNLIMITED.check(c)


def test_no_fuser_space_rejects_fusers() -> None:
    space = replace(SPACE, allow_fuser=False)
    with pytest.raises(GraphError, match="fuser role is disabled"):
        space.check(parallel_graph(SPACE, ["llama-3.2-1b", "llama-3.2-3b"]))
