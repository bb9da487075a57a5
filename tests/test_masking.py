"""Subgraph mask, induced subgraphs, AttrMask and ContextPred on hand-checkable graphs."""

from collections import Counter, deque

import numpy as np
import pytest
from rdkit import Chem

from graphmvp.data.masking import induced_edges, induced_subgraph, num_kept_atoms, subgraph_keep
from graphmvp.data.transforms_2d import AttrMask, ContextPred, bfs_distances, num_attrmask_atoms
from graphmvp.features import graph_features
from graphmvp.molgraph import MolGraph


def mol_graph(smiles: str, hydrogens: bool = True) -> MolGraph:
    mol = Chem.MolFromSmiles(smiles)
    if hydrogens:
        mol = Chem.AddHs(mol)
    return graph_features(mol)


def undirected(pairs) -> np.ndarray:
    """[2, 2P] edge index with both directions of each pair."""
    out = []
    for a, b in pairs:
        out += [(a, b), (b, a)]
    return np.array(out, dtype=np.int64).T


def components(num_atoms: int, edge_index: np.ndarray) -> list[set]:
    """Connected components by an independent BFS."""
    adj = {a: set() for a in range(num_atoms)}
    for s, d in edge_index.T.tolist():
        adj[s].add(d)
        adj[d].add(s)
    seen, comps = set(), []
    for start in range(num_atoms):
        if start in seen:
            continue
        comp, queue = {start}, deque([start])
        while queue:
            for b in adj[queue.popleft()]:
                if b not in comp:
                    comp.add(b)
                    queue.append(b)
        seen |= comp
        comps.append(comp)
    return comps


# ------------------------------------------------------------------------------------------------
# subgraph mask
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("smiles", ["CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CCCCCCCCCCCC"])
@pytest.mark.parametrize("ratio", [0.15, 0.3, 0.5])
def test_subgraph_keep_count_and_connected(smiles, ratio):
    g = mol_graph(smiles)
    n = g.num_atoms
    for seed in range(20):
        keep = subgraph_keep(n, g.edge_index, ratio, np.random.default_rng(seed))
        assert keep.dtype == np.int64
        assert len(keep) == int(n * (1 - ratio)) + 1
        assert np.all(np.diff(keep) > 0) and keep[0] >= 0 and keep[-1] < n  # sorted, distinct
        sub = induced_subgraph(g, keep)
        assert len(components(sub.num_atoms, sub.edge_index)) == 1


def test_subgraph_keep_counts_by_hand():
    # paracetamol with hydrogens: 20 atoms; 15 % -> int(17.0) + 1 = 18 kept
    g = mol_graph("CC(=O)Nc1ccc(O)cc1")
    assert g.num_atoms == 20
    assert len(subgraph_keep(20, g.edge_index, 0.15, np.random.default_rng(0))) == 18
    assert num_kept_atoms(20, 0.15) == 18
    assert num_kept_atoms(10, 0.5) == 6
    assert num_kept_atoms(3, 0.01) == 3  # int(2.97) + 1 = 3, capped at N


def test_subgraph_keep_ratio_zero_keeps_everything_and_bad_ratio_raises():
    g = mol_graph("CCO")
    np.testing.assert_array_equal(subgraph_keep(g.num_atoms, g.edge_index, 0.0, np.random.default_rng(0)), np.arange(9))
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="mask_ratio"):
            subgraph_keep(g.num_atoms, g.edge_index, bad, np.random.default_rng(0))


def test_subgraph_keep_reproducible():
    g = mol_graph("CN1C=NC2=C1C(=O)N(C(=O)N2C)C")
    a = subgraph_keep(g.num_atoms, g.edge_index, 0.3, np.random.default_rng([1, 2, 3]))
    b = subgraph_keep(g.num_atoms, g.edge_index, 0.3, np.random.default_rng([1, 2, 3]))
    np.testing.assert_array_equal(a, b)
    others = [subgraph_keep(g.num_atoms, g.edge_index, 0.3, np.random.default_rng([1, e, 3])) for e in range(3, 8)]
    assert any(not np.array_equal(a, o) for o in others)


def test_subgraph_keep_star_distribution():
    # star: centre 0, leaves 1, 2, 3; M = 0.6 keeps int(1.6) + 1 = 2 atoms. Start uniform over 4:
    # centre (1/4) then a uniform leaf, or a leaf (3/4) then its only frontier atom, the centre.
    # So every kept pair contains the centre and each leaf has probability 1/3.
    edge_index = undirected([(0, 1), (0, 2), (0, 3)])
    counts = Counter()
    trials = 3000
    for seed in range(trials):
        keep = subgraph_keep(4, edge_index, 0.6, np.random.default_rng(seed))
        assert len(keep) == 2 and keep[0] == 0
        counts[int(keep[1])] += 1
    for leaf in (1, 2, 3):
        assert abs(counts[leaf] / trials - 1 / 3) < 0.04


def test_subgraph_keep_path_grows_from_whole_frontier():
    # path 0-1-2-3, keep 3 (M = 0.3: int(2.8) + 1 = 3). Start 0 -> {0,1,2}; start 1 -> frontier
    # {0, 2}: 0 gives {0,1,2}, 2 gives frontier {0, 3} -> either; so P({0,1,2} | start 1) = 3/4,
    # symmetric for starts 3 and 2: P({0,1,2}) = 1/2, P({1,2,3}) = 1/2, never a gap.
    edge_index = undirected([(0, 1), (1, 2), (2, 3)])
    counts = Counter()
    trials = 2000
    for seed in range(trials):
        counts[tuple(subgraph_keep(4, edge_index, 0.3, np.random.default_rng(seed)).tolist())] += 1
    assert set(counts) == {(0, 1, 2), (1, 2, 3)}
    assert abs(counts[(0, 1, 2)] / trials - 0.5) < 0.04


def test_subgraph_keep_salt_jumps_to_other_fragment():
    # two ethanes, 8 atoms each; M = 0.15 keeps int(13.6) + 1 = 14: one whole fragment, then a
    # jump, then a connected part of 6 atoms of the other one.
    g = mol_graph("CC.CC")
    assert g.num_atoms == 16
    frags = components(16, g.edge_index)
    assert len(frags) == 2
    for seed in range(30):
        keep = set(subgraph_keep(16, g.edge_index, 0.15, np.random.default_rng(seed)).tolist())
        assert len(keep) == 14
        sizes = sorted(len(keep & f) for f in frags)
        assert sizes == [6, 8]
        partial = next(f for f in frags if len(keep & f) == 6)
        part = np.array(sorted(keep & partial))
        sub_edges, _ = induced_edges(16, g.edge_index, part)
        assert len(components(6, sub_edges)) == 1


def test_subgraph_keep_fragments_count_sodium_chloride():
    g = mol_graph("[Na+].[Cl-]")  # two isolated atoms, no edges
    keep = subgraph_keep(2, g.edge_index, 0.4, np.random.default_rng(0))  # int(1.2) + 1 = 2
    np.testing.assert_array_equal(keep, [0, 1])


# ------------------------------------------------------------------------------------------------
# induced subgraph
# ------------------------------------------------------------------------------------------------
def test_induced_subgraph_by_hand():
    # path 0-1-2-3 with bond types 0, 1, 2 for bonds 0-1, 1-2, 2-3
    g = MolGraph(
        atomic_num=np.array([6, 7, 8, 9], dtype=np.uint8),
        atom_features=np.array([[5, 0], [6, 1], [7, 2], [8, 0]], dtype=np.uint8),
        edge_index=undirected([(0, 1), (1, 2), (2, 3)]),
        edge_features=np.array([[0, 0], [0, 0], [1, 0], [1, 0], [2, 1], [2, 1]], dtype=np.uint8),
    )
    sub = induced_subgraph(g, np.array([1, 2, 3]))
    np.testing.assert_array_equal(sub.atomic_num, [7, 8, 9])
    np.testing.assert_array_equal(sub.atom_features, [[6, 1], [7, 2], [8, 0]])
    np.testing.assert_array_equal(sub.edge_index, [[0, 1, 1, 2], [1, 0, 2, 1]])
    np.testing.assert_array_equal(sub.edge_features, [[1, 0], [1, 0], [2, 1], [2, 1]])
    edges, ids = induced_edges(4, g.edge_index, np.array([0, 3]))
    assert edges.shape == (2, 0) and ids.shape == (0,)


# ------------------------------------------------------------------------------------------------
# AttrMask
# ------------------------------------------------------------------------------------------------
def test_attrmask_count_labels_and_features():
    g = mol_graph("CC(=O)Nc1ccc(O)cc1")  # 20 atoms: int(0.15 * 20 + 1) = 4
    original = g.atom_features.copy()
    res = AttrMask(0.15)(g, np.random.default_rng(5))
    assert num_attrmask_atoms(20, 0.15) == 4
    assert len(res.index) == 4 and len(set(res.index.tolist())) == 4
    np.testing.assert_array_equal(res.label, original[res.index, 0].astype(np.int64))
    np.testing.assert_array_equal(res.atom[res.index], np.tile([119, 0], (4, 1)))
    untouched = np.setdiff1d(np.arange(20), res.index)
    np.testing.assert_array_equal(res.atom[untouched], original[untouched])
    np.testing.assert_array_equal(g.atom_features, original)  # input not modified
    assert res.bond is None and res.edge_index is None
    assert len(AttrMask(0.5)(g, np.random.default_rng(0)).index) == 11  # int(10 + 1)


def test_attrmask_edges_mask_bonds_touching_masked_atoms():
    g = mol_graph("CC(=O)Nc1ccc(O)cc1", hydrogens=False)  # 11 heavy atoms: int(1.65 + 1) = 2
    res = AttrMask(0.15, mask_edges=True)(g, np.random.default_rng(3))
    masked = set(res.index.tolist())
    expected = [e for e, (s, d) in enumerate(g.edge_index.T.tolist()) if s in masked or d in masked]
    np.testing.assert_array_equal(res.edge_index, expected)
    np.testing.assert_array_equal(res.edge_label, g.edge_features[expected, 0])
    np.testing.assert_array_equal(res.bond[expected], np.tile([5, 0], (len(expected), 1)))
    rest = np.setdiff1d(np.arange(g.num_edges), expected)
    np.testing.assert_array_equal(res.bond[rest], g.edge_features[rest])


def test_attrmask_bad_rate():
    for bad in (0.0, -0.2, 1.2):
        with pytest.raises(ValueError, match="rate"):
            AttrMask(bad)


# ------------------------------------------------------------------------------------------------
# ContextPred
# ------------------------------------------------------------------------------------------------
DODECANE = "CCCCCCCCCCCC"  # heavy-atom chain 0-1-...-11: d(i, j) = |i - j|


def test_bfs_distances_chain_and_fragments():
    g = mol_graph(DODECANE, hydrogens=False)
    np.testing.assert_array_equal(bfs_distances(12, g.edge_index, 4), np.abs(np.arange(12) - 4))
    salt = mol_graph("CC.O", hydrogens=False)
    np.testing.assert_array_equal(bfs_distances(3, salt.edge_index, 0), [0, 1, -1])


def test_contextpred_chain_end_centre():
    g = mol_graph(DODECANE, hydrogens=False)
    pair = ContextPred(5, 4, 7).pair(g, 0)
    np.testing.assert_array_equal(pair.substruct_atoms, [0, 1, 2, 3, 4, 5])
    assert pair.center == 0
    assert pair.substruct.num_atoms == 6 and pair.substruct.num_edges == 10  # 5 bonds
    np.testing.assert_array_equal(pair.context_atoms, [5, 6, 7])
    np.testing.assert_array_equal(pair.overlap, [0])  # atom 5
    np.testing.assert_array_equal(pair.context.edge_index, [[0, 1, 1, 2], [1, 0, 2, 1]])
    assert pair.has_context


def test_contextpred_chain_middle_centre():
    g = mol_graph(DODECANE, hydrogens=False)
    pair = ContextPred().pair(g, 6)
    np.testing.assert_array_equal(pair.substruct_atoms, np.arange(1, 12))  # |i - 6| <= 5
    assert pair.center == 5  # atom 6 is the 6th of 1..11
    np.testing.assert_array_equal(pair.context_atoms, [0, 1, 11])  # d = 6, 5, 5
    np.testing.assert_array_equal(pair.overlap, [1, 2])  # atoms 1 and 11 (d = 5)
    np.testing.assert_array_equal(pair.context.edge_index, [[0, 1], [1, 0]])  # only bond 0-1
    np.testing.assert_array_equal(pair.substruct.atom_features, g.atom_features[1:12])


def test_contextpred_chain_centre_3():
    g = mol_graph(DODECANE, hydrogens=False)
    pair = ContextPred().pair(g, 3)
    np.testing.assert_array_equal(pair.substruct_atoms, np.arange(0, 9))
    assert pair.center == 3
    np.testing.assert_array_equal(pair.context_atoms, [8, 9, 10])
    np.testing.assert_array_equal(pair.overlap, [0])


def test_contextpred_small_molecule_has_no_context():
    g = mol_graph("CCC", hydrogens=False)
    pair = ContextPred()(g, np.random.default_rng(0))
    assert not pair.has_context
    assert pair.context is None and pair.overlap.shape == (0,)
    np.testing.assert_array_equal(pair.substruct_atoms, [0, 1, 2])


def test_contextpred_random_centre_uniform():
    g = mol_graph(DODECANE, hydrogens=False)
    cp = ContextPred()
    centres = Counter()
    for seed in range(1200):
        pair = cp(g, np.random.default_rng(seed))
        centres[int(pair.substruct_atoms[pair.center])] += 1
    assert set(centres) == set(range(12))
    assert all(abs(c / 1200 - 1 / 12) < 0.03 for c in centres.values())


def test_contextpred_bad_radii():
    with pytest.raises(ValueError, match="r1"):
        ContextPred(5, 5, 7)
    with pytest.raises(ValueError, match="r1"):
        ContextPred(5, 4, 4)
    with pytest.raises(ValueError, match="k"):
        ContextPred(0, 0, 2)
