"""Masking distributions of masked-node prediction: PageRank against closed forms and a dense
solve, the documented counts, the structure-guided rule, and the curriculum's statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphmvp.data.mask_distributions import (
    MASK_DISTRIBUTIONS,
    LearnableMasking,
    PageRankMasking,
    UniformMasking,
    boost_count,
    build_mask_distribution,
    ceil_count,
    curriculum_fraction,
    hu_count,
    mask_atoms,
    pagerank,
    structure_guided_mask,
)
from graphmvp.data.transforms_2d import AttrMask
from graphmvp.molgraph import MolGraph


def graph_from_bonds(n: int, bonds: list[tuple[int, int]]) -> MolGraph:
    """A MolGraph with carbon atoms and single bonds (both directions)."""
    src = [u for u, v in bonds] + [v for u, v in bonds]
    dst = [v for u, v in bonds] + [u for u, v in bonds]
    atom = np.zeros((n, 2), np.int64)
    atom[:, 0] = 5  # carbon
    return MolGraph(atomic_num=np.full(n, 6, np.uint8), atom_features=atom,
                    edge_index=np.array([src, dst], np.int64).reshape(2, -1),
                    edge_features=np.zeros((2 * len(bonds), 2), np.int64))


def star(leaves: int) -> MolGraph:
    return graph_from_bonds(leaves + 1, [(0, i) for i in range(1, leaves + 1)])


def path(n: int) -> MolGraph:
    return graph_from_bonds(n, [(i, i + 1) for i in range(n - 1)])


def dense_pagerank(graph: MolGraph, d: float) -> np.ndarray:
    """The stationary vector of the Google matrix, by a dense linear solve (independent of the
    power iteration): x = d (P^T x + dangling mass / n) + (1 - d) / n, sum x = 1."""
    n = graph.num_atoms
    adjacency = np.zeros((n, n))
    adjacency[graph.edge_index[0], graph.edge_index[1]] = 1.0
    degree = adjacency.sum(axis=1)
    transition = np.where(degree[:, None] > 0, adjacency / np.maximum(degree, 1)[:, None], 1.0 / n)
    google = d * transition + (1 - d) / n  # row-stochastic
    a = np.eye(n) - google.T
    a[-1] = 1.0  # replace one equation by the normalisation
    b = np.zeros(n)
    b[-1] = 1.0
    return np.linalg.solve(a, b)


# -- PageRank ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("leaves", [1, 3, 9])
def test_pagerank_of_a_star_matches_its_closed_form(leaves):
    # centre c, k leaves, n = k + 1: r_c = (1 + d k) / (n (1 + d)), r_leaf = (1 - r_c) / k
    d, k, n = 0.85, leaves, leaves + 1
    r_c = (1 + d * k) / (n * (1 + d))
    got = pagerank(n, star(k).edge_index, tol=1e-13, max_iter=1000)
    assert got[0] == pytest.approx(r_c, abs=1e-11)
    np.testing.assert_allclose(got[1:], (1 - r_c) / k, atol=1e-11)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    # the default tolerance (L1 change < n * 1e-6, networkx' rule) is within 1e-5
    np.testing.assert_allclose(pagerank(n, star(k).edge_index), got, atol=1e-5)


@pytest.mark.parametrize(
    "graph",
    [
        path(6),
        graph_from_bonds(7, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (2, 6)]),  # ring + substituent
        graph_from_bonds(5, [(0, 1), (1, 2)]),  # a fragment and two isolated atoms (dangling)
        graph_from_bonds(300, [(i, i + 1) for i in range(298)]),  # > 256 atoms: sparse steps; one isolated
    ],
    ids=["path", "ring", "fragments", "large"],
)
def test_pagerank_matches_a_dense_solve(graph):
    # default stopping rule (L1 change of a step < n * 1e-6): the L1 error is at most
    # change * d / (1 - d) for a contraction by d
    error = np.abs(pagerank(graph.num_atoms, graph.edge_index) - dense_pagerank(graph, 0.85)).sum()
    assert error <= 0.85 / 0.15 * graph.num_atoms * 1e-6
    np.testing.assert_allclose(pagerank(graph.num_atoms, graph.edge_index, tol=1e-13, max_iter=1000), dense_pagerank(graph, 0.85),
                               atol=1e-11)
    np.testing.assert_allclose(pagerank(graph.num_atoms, graph.edge_index, damping=0.5, tol=1e-12, max_iter=1000),
                               dense_pagerank(graph, 0.5), atol=1e-10)


def test_pagerank_symmetric_atoms_tie_exactly_after_rounding():
    scores = PageRankMasking(0.5).scores(path(5))
    assert scores[0] == scores[4] and scores[1] == scores[3]
    assert scores[2] > scores[0] or scores[1] > scores[0]  # ends are the least central
    assert pagerank(0, np.zeros((2, 0), np.int64)).shape == (0,)


# -- counts -----------------------------------------------------------------------------------------
def test_counts():
    assert hu_count(20, 0.15) == 4 and hu_count(10, 0.5) == 6 and hu_count(2, 0.9) == 2 and hu_count(1, 0.15) == 1
    assert ceil_count(20, 0.15) == 3  # 0.15 * 20 = 3.0000000000000004 in floating point
    assert ceil_count(10, 0.5) == 5 and ceil_count(7, 0.5) == 4 and ceil_count(1, 0.15) == 1 and ceil_count(3, 1.0) == 3
    assert UniformMasking(0.15).count_rule == "hu" and PageRankMasking(0.5).count_rule == "ceil"
    assert LearnableMasking(0.5).count_rule == "ceil"
    assert UniformMasking(0.5, count="ceil").count(7) == 4 and PageRankMasking(0.5, count="hu").count(7) == 4
    # boosted atoms: ceil(rate * sqrt(e / E) * n); none at epoch 0
    assert curriculum_fraction(0.5, 0, 100) == 0.0 and boost_count(10, 0.0) == 0
    assert PageRankMasking(0.5, total_epochs=100).boost(10, 25) == 3  # ceil(0.5 * 0.5 * 10 = 2.5)
    assert PageRankMasking(0.5, total_epochs=100).boost(10, 1) == 1  # ceil(0.5)
    assert PageRankMasking(0.5, total_epochs=100, curriculum=False).boost(10, 0) == 5


def test_uniform_draws_are_attrmasks():
    g = path(20)
    for seed in range(5):
        want = AttrMask(0.15)(g, np.random.default_rng(seed)).index
        np.testing.assert_array_equal(UniformMasking(0.15).sample(g, np.random.default_rng(seed)), want)


@pytest.mark.parametrize("name", ["uniform", "pagerank"])
def test_masks_the_documented_count_per_graph(name):
    rule = {"uniform": hu_count, "pagerank": ceil_count}[name]
    dist = build_mask_distribution(name, 0.5, total_epochs=10)
    rng = np.random.default_rng(0)
    for n in range(1, 16):
        for epoch in (0, 5, 9):
            index = dist.sample(path(n), rng, epoch)
            assert index.shape == (rule(n, 0.5),)
            assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < n


def test_learnable_needs_scores_and_uses_them():
    g = star(9)
    dist = LearnableMasking(0.5, total_epochs=4)
    with pytest.raises(ValueError, match="scores"):
        dist.sample(g, np.random.default_rng(0))
    scores = np.linspace(0.9, 0.1, 10)
    a = dist.sample(g, np.random.default_rng(1), epoch=3, scores=scores)
    rng = np.random.default_rng(1)
    noise = rng.random(10)  # then the tie-break keys, unused: the scores all differ
    # epoch 3 of 4: boost ceil(0.5 sqrt(3/4) 10) = 5 top-scored atoms (0..4) by alpha 0.5
    key = noise + 0.5 * (np.arange(10) < 5)
    np.testing.assert_array_equal(a, np.sort(np.argsort(-key)[:5]))


# -- the structure-guided rule ---------------------------------------------------------------------
def test_structure_guided_mask_by_hand():
    # two graphs: [4 nodes], [3 nodes] concatenated
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.2, 0.7])
    noise = np.array([0.60, 0.10, 0.20, 0.50, 0.30, 0.90, 0.10])
    tiebreak = np.array([0.5, 0.5, 0.5, 0.5, 0.9, 0.1, 0.5])
    # graph 0: boost the top-2 scores (nodes 1, 2) by 1 -> keys .6 1.1 1.2 .5 -> mask 2: {1, 2}
    # graph 1: boost the top-1 score (node 6, local 2) -> keys .3 .9 1.1 -> mask 1: {6}
    got = structure_guided_mask(scores, noise, tiebreak, [4, 3], [2, 1], [2, 1], alpha=1.0)
    np.testing.assert_array_equal(got, [1, 2, 6])
    # graph 0 without boost: the largest key, node 0. Graph 1, boost 2: node 6, then one of the
    # tied nodes 4 and 5 (score 0.2): the smaller tie-break key ranks first, node 5 (0.1 < 0.9)
    # keys: .3 (4), 1.9 (5), 1.1 (6) -> mask 2: {5, 6}
    got = structure_guided_mask(scores, noise, tiebreak, [4, 3], [0, 2], [1, 2], alpha=1.0)
    np.testing.assert_array_equal(got, [0, 5, 6])
    # alpha 0: the scores do not matter, the largest keys win
    got = structure_guided_mask(scores, noise, tiebreak, [4, 3], [4, 3], [1, 1], alpha=0.0)
    np.testing.assert_array_equal(got, [0, 5])
    with pytest.raises(ValueError, match="shape"):
        structure_guided_mask(scores[:3], noise, tiebreak, [4, 3], [0, 0], [1, 1], 0.0)


def test_curriculum_prefers_high_pagerank_atoms_late_and_is_uniform_at_epoch_zero():
    g = star(9)  # the centre (atom 0) has by far the highest PageRank
    dist = PageRankMasking(0.5, total_epochs=10)  # mask ceil(0.5 * 10) = 5 of 10 atoms
    uniform = UniformMasking(0.5, count="ceil")
    draws = 3000

    def frequency(d, epoch):
        counts = np.zeros(10)
        for i in range(draws):
            counts[d.sample(g, np.random.default_rng([7, i]), epoch)] += 1
        return counts / draws

    # epoch 0: no boost -> every atom masked with probability 5/10 (std ~0.008 per atom)
    np.testing.assert_allclose(frequency(dist, 0), 0.5, atol=0.04)
    np.testing.assert_allclose(frequency(uniform, 0), 0.5, atol=0.04)
    # epoch 9 of 10: the top ceil(0.5 sqrt(0.9) 10) = 5 atoms by PageRank get +0.25: the centre and
    # 4 of the tied leaves. P(centre masked) = P(its key u + 0.25 is among the 5 largest)
    late = frequency(dist, 9)
    # the same probability by an independent Monte Carlo of the rule's definition: the centre's
    # key u_0 + 0.25 must beat at least 5 of the other 9 keys (4 boosted leaves u + 0.25, 5 plain u)
    rng = np.random.default_rng(123)
    u = rng.random((50000, 10))
    keys = u + 0.25 * np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    expected = float(np.mean((keys[:, 1:] < keys[:, :1]).sum(axis=1) >= 5))
    assert late[0] == pytest.approx(expected, abs=0.03)
    assert late[0] > 0.5 + 0.1  # far more often than uniform's 0.5
    assert late[1:].mean() < 0.5  # the mass moves from the leaves
    assert late.sum() == pytest.approx(5.0)
    # at epoch 1 only ceil(0.5 sqrt(0.1) 10) = 2 atoms are boosted; the centre is one of them
    assert dist.boost(10, 1) == 2
    assert frequency(dist, 1)[0] > 0.6


def test_mask_atoms_and_registry():
    g = path(4)
    atom = mask_atoms(g, np.array([1, 3]))
    assert atom[:, 0].tolist() == [5, 119, 5, 119] and atom[1:, 1].tolist() == [0, 0, 0]
    assert g.atom_features[1, 0] == 5  # a copy
    assert MASK_DISTRIBUTIONS.names() == ["learnable", "pagerank", "uniform"]
    assert build_mask_distribution("uniform", 0.3, alpha=0.9, total_epochs=5).rate == 0.3  # extra options ignored
    assert build_mask_distribution("pagerank", 0.5, alpha=None).alpha == 0.25
    assert build_mask_distribution("learnable", 0.5).alpha == 0.5
    with pytest.raises(ValueError, match="rate"):
        UniformMasking(0.0)
    with pytest.raises(ValueError, match="allowed: auto, hu, ceil"):
        UniformMasking(0.2, count="floor")
    with pytest.raises(ValueError, match="alpha"):
        PageRankMasking(0.5, alpha=-1.0)
    with pytest.raises(KeyError, match="known: learnable, pagerank, uniform"):
        build_mask_distribution("degree", 0.5)
    assert math.isclose(curriculum_fraction(0.5, 50, 100, curriculum=False), 0.5)
