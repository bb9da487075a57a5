"""Graph augmentations of GraphCL/JOAO (graphmvp.data.augment) against hand-derived results on
small molecules, and the two-view transform."""

from __future__ import annotations

import numpy as np
import pytest
from molecule_fixture import molecule
import torch

from graphmvp.data.augment import (
    ADDED_BOND_FEATURES,
    AUGMENTATIONS,
    AugmentedViews,
    ViewPair,
    attr_mask,
    bonded_pairs,
    edge_perturb,
    identity,
    node_drop,
    non_bonded_pairs,
    num_perturbed,
    subgraph,
)
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.features import graph_features, parse_smiles
from graphmvp.molgraph import MolGraph


def mol_graph(smiles: str) -> MolGraph:
    return graph_features(parse_smiles(smiles))


def undirected(graph: MolGraph) -> dict[tuple[int, int], tuple[int, int]]:
    """{(i, j) with i < j: bond features}, checking that both directions are present and agree."""
    out = {}
    for e in range(graph.num_edges):
        i, j = int(graph.edge_index[0, e]), int(graph.edge_index[1, e])
        key = (min(i, j), max(i, j))
        out.setdefault(key, []).append((i, j, tuple(int(x) for x in graph.edge_features[e])))
    result = {}
    for key, entries in out.items():
        assert sorted((i, j) for i, j, _ in entries) == sorted([key, key[::-1]]), f"bond {key} not in both directions"
        assert entries[0][2] == entries[1][2]
        result[key] = entries[0][2]
    return result


def seed_where(condition) -> int:
    """The first seed whose fresh generator satisfies ``condition(rng)``."""
    for seed in range(10_000):
        if condition(np.random.default_rng(seed)):
            return seed
    raise AssertionError("no seed found")


# N0-C1-C2(-O3)-C4: atom types N=6, C=5, O=7 (Z - 1)
AMINO_ALCOHOL = "NCC(O)C"
# N0-C1-C2(=O3)-C4
AMINO_KETONE = "NCC(=O)C"


def test_registry_names():
    assert AUGMENTATIONS.names() == ["attr_mask", "edge_perturb", "identity", "node_drop", "subgraph"]


@pytest.mark.parametrize("n, ratio, changed", [(5, 0.2, 1), (4, 0.2, 0), (10, 0.2, 2), (9, 0.2, 1), (5, 0.5, 2), (7, 0.0, 0)])
def test_count_rule_is_floor_of_ratio_times_count(n, ratio, changed):
    assert num_perturbed(n, ratio) == changed


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, True, "0.2"])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(ValueError, match="ratio"):
        node_drop(mol_graph("CCO"), ratio, np.random.default_rng(0))


def test_identity_returns_the_graph_and_draws_nothing():
    g = mol_graph(AMINO_ALCOHOL)
    rng = np.random.default_rng(5)
    assert identity(g, 0.2, rng) is g
    assert rng.random() == np.random.default_rng(5).random()


# hand-derived: dropping one atom of N0-C1-C2(-O3)-C4, remaining atoms relabelled in order
NODE_DROP_EXPECTED = {
    0: ([5, 5, 7, 5], {(0, 1), (1, 2), (1, 3)}),
    1: ([6, 5, 7, 5], {(1, 2), (1, 3)}),
    2: ([6, 5, 7, 5], {(0, 1)}),
    3: ([6, 5, 5, 5], {(0, 1), (1, 2), (2, 3)}),
    4: ([6, 5, 5, 7], {(0, 1), (1, 2), (2, 3)}),
}


@pytest.mark.parametrize("dropped", [0, 1, 2, 3, 4])
def test_node_drop_equals_the_hand_derived_graph(dropped):
    g = mol_graph(AMINO_ALCOHOL)
    # the documented draw: rng.choice(n, int(0.2 * 5) = 1, replace=False)
    seed = seed_where(lambda r: int(r.choice(5, size=1, replace=False)[0]) == dropped)
    out = node_drop(g, 0.2, np.random.default_rng(seed))
    types, bonds = NODE_DROP_EXPECTED[dropped]
    assert out.atom_features[:, 0].tolist() == types
    assert set(undirected(out)) == bonds
    assert out.num_edges == 2 * len(bonds)
    assert g.num_atoms == 5 and g.num_edges == 8  # the input is untouched


def test_node_drop_count_and_small_molecules():
    g = mol_graph("c1ccccc1CCN")  # 9 atoms: int(0.2 * 9) = 1 dropped
    assert node_drop(g, 0.2, np.random.default_rng(0)).num_atoms == 8
    assert node_drop(g, 0.5, np.random.default_rng(0)).num_atoms == 9 - 4
    small = mol_graph("CCO")  # int(0.6) = 0: unchanged
    assert node_drop(small, 0.2, np.random.default_rng(0)) is small


def test_subgraph_from_a_chain_end_is_the_chain_start():
    g = mol_graph("CCCCCO")  # chain 0-1-2-3-4-5; 6 - int(0.5 * 6) = 3 atoms kept
    # start atom = rng.integers(6); from atom 0 the frontier always holds one atom
    seed = seed_where(lambda r: int(r.integers(6)) == 0)
    out = subgraph(g, 0.5, np.random.default_rng(seed))
    assert out.atom_features[:, 0].tolist() == [5, 5, 5]
    assert set(undirected(out)) == {(0, 1), (1, 2)}
    seed = seed_where(lambda r: int(r.integers(6)) == 5)  # from the O end: atoms 3, 4, 5
    out = subgraph(g, 0.5, np.random.default_rng(seed))
    assert out.atom_features[:, 0].tolist() == [5, 5, 7]
    assert set(undirected(out)) == {(0, 1), (1, 2)}


def _connected(graph: MolGraph) -> bool:
    n = graph.num_atoms
    seen = {0}
    stack = [0]
    nbrs = {a: set() for a in range(n)}
    for i, j in graph.edge_index.T.tolist():
        nbrs[i].add(j)
    while stack:
        a = stack.pop()
        for b in nbrs[a] - seen:
            seen.add(b)
            stack.append(b)
    return len(seen) == n


def test_subgraph_is_connected_with_the_documented_size():
    g = mol_graph("CC(C)Cc1ccc(C(C)C(=O)O)cc1")  # ibuprofen, 15 atoms: 15 - int(0.2 * 15) = 12 kept
    for seed in range(30):
        out = subgraph(g, 0.2, np.random.default_rng(seed))
        assert out.num_atoms == 12
        assert _connected(out)
    # a chain of 5 keeps a contiguous run of 3 (n - int(0.4 * 5) = 3)
    chain = mol_graph("CCCCC")
    for seed in range(40):
        out = subgraph(chain, 0.4, np.random.default_rng(seed))
        assert out.num_atoms == 3 and set(undirected(out)) == {(0, 1), (1, 2)}


def test_subgraph_stops_at_the_start_fragment():
    g = mol_graph("CCC.O")  # fragments {0, 1, 2} and {3}; target 4 - int(0.5 * 4) = 2
    seed = seed_where(lambda r: int(r.integers(4)) == 3)
    out = subgraph(g, 0.5, np.random.default_rng(seed))
    assert out.atom_features[:, 0].tolist() == [7] and out.num_edges == 0
    seed = seed_where(lambda r: int(r.integers(4)) == 1)
    out = subgraph(g, 0.5, np.random.default_rng(seed))
    assert out.num_atoms == 2 and out.atom_features[:, 0].tolist() == [5, 5] and _connected(out)


def test_bond_and_non_bond_pairs_by_hand():
    g = mol_graph(AMINO_KETONE)
    assert bonded_pairs(g).T.tolist() == [[0, 1], [1, 2], [2, 3], [2, 4]]
    assert non_bonded_pairs(g).T.tolist() == [[0, 2], [0, 3], [0, 4], [1, 3], [1, 4], [3, 4]]


def test_edge_perturb_equals_the_hand_derived_graph():
    g = mol_graph(AMINO_KETONE)  # bonds (0,1) (1,2) (2,3)=double (2,4); int(0.3 * 4) = 1 swapped
    bonds = [(0, 1), (1, 2), (2, 3), (2, 4)]
    free = [(0, 2), (0, 3), (0, 4), (1, 3), (1, 4), (3, 4)]
    features = {(0, 1): (0, 0), (1, 2): (0, 0), (2, 3): (1, 0), (2, 4): (0, 0)}
    for seed in range(12):
        # the documented draws: one bond out of the 4 sorted bonds, one pair out of the 6 free pairs
        r = np.random.default_rng(seed)
        removed = bonds[int(r.choice(4, size=1, replace=False)[0])]
        added = free[int(r.choice(6, size=1, replace=False)[0])]
        out = edge_perturb(g, 0.3, np.random.default_rng(seed))
        expected = {k: v for k, v in features.items() if k != removed}
        expected[added] = ADDED_BOND_FEATURES
        assert undirected(out) == expected  # both directions, features kept
        assert out.num_edges == g.num_edges
        assert np.array_equal(out.atom_features, g.atom_features)


def test_edge_perturb_keeps_count_on_a_largermolecule():
    g = mol_graph("CC(C)Cc1ccc(C(C)C(=O)O)cc1")  # 15 bonds: int(0.2 * 15) = 3 swapped
    original = undirected(g)
    for seed in range(10):
        out = undirected(edge_perturb(g, 0.2, np.random.default_rng(seed)))
        assert len(out) == len(original)
        assert len(set(out) - set(original)) == 3
        assert all(out[k] == original[k] for k in set(out) & set(original))


def test_attr_mask_uses_token_119_and_the_documented_draw():
    g = mol_graph("C[C@H](N)C(=O)O")  # alanine, 6 atoms (atom 1 chiral): int(0.5 * 6) = 3 masked
    for seed in range(6):
        masked = np.random.default_rng(seed).choice(6, size=3, replace=False)
        out = attr_mask(g, 0.5, np.random.default_rng(seed))
        expected = g.atom_features.copy()
        expected[masked] = (119, 0)
        assert out.atom_features.tolist() == expected.tolist()
        assert out.edge_index is g.edge_index and out.edge_features is g.edge_features
        assert out.atomic_num is g.atomic_num  # masked atoms keep their true atomic number
    assert g.atom_features[1, 1] != 0 and 119 not in g.atom_features[:, 0]  # input untouched


def test_pair_transform_draws_pairs_from_p_and_applies_them_in_order():
    g = mol_graph("CC(C)Cc1ccc(C(C)C(=O)O)cc1")
    views = AugmentedViews("v", ["identity", "node_drop", "attr_mask"], 0.2)
    assert views.num_pairs == 9 and np.allclose(views.probabilities, 1 / 9)
    p = np.zeros(9)
    p[1 * 3 + 2] = 1.0  # first view node_drop, second attr_mask
    views.set_probabilities(p)
    for seed in range(5):
        out = views(g, np.random.default_rng(seed))
        assert out.pair == 5 and views.pair_names(5) == ("node_drop", "attr_mask")
        r = np.random.default_rng(seed)
        r.choice(9, p=p)  # the pair draw comes first
        first = node_drop(g, 0.2, r)
        second = attr_mask(g, 0.2, r)
        assert np.array_equal(out.first.atom_features, first.atom_features) and np.array_equal(out.first.edge_index, first.edge_index)
        assert np.array_equal(out.second.atom_features, second.atom_features)
    counts = np.bincount([views(g, np.random.default_rng(s)).pair for s in range(50)], minlength=9)
    assert counts.tolist() == [0, 0, 0, 0, 0, 50, 0, 0, 0]
    views.set_probabilities(None)
    counts = np.bincount([views(g, np.random.default_rng(s)).pair for s in range(900)], minlength=9)
    assert counts.min() > 60  # uniform: ~100 each
    with pytest.raises(ValueError, match="sum to 1"):
        views.set_probabilities(np.full(9, 0.2))
    with pytest.raises(ValueError, match="9 augmentation pairs"):
        views.set_probabilities(np.full(4, 0.25))
    with pytest.raises(ValueError, match="unknown"):
        AugmentedViews("v", ["node_drop", "dropN"], 0.2)




def test_views_through_the_dataset_are_reproducible_and_batch():
    from graphmvp.data.collate import collate

    mols = [molecule(s) for s in ("CC(C)Cc1ccc(C(C)C(=O)O)cc1", "c1ccccc1CCN", "CC(=O)Nc1ccc(O)cc1")]
    make = lambda: PretrainDataset(mols, views="2d", mask_ratio=0.0, seed=4,  # noqa: E731
                                   transforms=[AugmentedViews("graphcl", ["node_drop", "subgraph"], 0.2)])
    a, b = make(), make()
    for i in range(3):
        va, vb = a[i].extras["graphcl"], b[i].extras["graphcl"]
        assert va.pair == vb.pair and np.array_equal(va.first.atom_features, vb.first.atom_features)
        assert np.array_equal(va.second.edge_index, vb.second.edge_index)
    batch = collate([a[i] for i in range(3)])
    views = batch.extras["graphcl"]
    payloads = [a[i].extras["graphcl"] for i in range(3)]
    assert views.first.batch_size == 3 and views.second.batch_size == 3
    assert views.first.batch_num_nodes().tolist() == [p.first.num_atoms for p in payloads]
    assert views.pair.tolist() == [p.pair for p in payloads]
    assert views.second.ndata["atom"].dtype == torch.int64
    assert isinstance(ViewPair.collate(payloads).first.batch_size, int)
