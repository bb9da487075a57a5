"""Hu et al. integer features (graphmvp.features) against values derived by hand from the SMILES.

Atom features: (Z - 1, chirality tag 0 unspecified / 1 CW (``@@``) / 2 CCW (``@``) / 3 other).
Bond features: (type 0 single / 1 double / 2 triple / 3 aromatic, direction 0 none /
1 end-up-right (``/``) / 2 end-down-right (``\\``)). Bond b gives edges 2b (begin -> end) and
2b+1 (end -> begin).
"""

import numpy as np
import pytest
from rdkit import Chem

from graphmvp.features import UnsupportedMolecule, graph_features

C, N, O, F = 5, 6, 7, 8  # Z - 1


def feats(smiles, hs=False):
    mol = Chem.MolFromSmiles(smiles)
    return graph_features(Chem.AddHs(mol) if hs else mol)


def test_chirality_tags_follow_the_smiles():
    # C[C@H](N)O: atom 1 is the stereocentre, '@' = counter-clockwise (tag 2); '@@' = clockwise (1)
    ccw = feats("C[C@H](N)O")
    cw = feats("C[C@@H](N)O")
    assert ccw.atom_features.tolist() == [[C, 0], [C, 2], [N, 0], [O, 0]]
    assert cw.atom_features.tolist() == [[C, 0], [C, 1], [N, 0], [O, 0]]
    assert ccw.atomic_num.tolist() == [6, 6, 7, 8]
    # no stereo given: unspecified
    assert feats("CC(N)O").atom_features[:, 1].tolist() == [0, 0, 0, 0]
    for g in (ccw, cw):
        assert g.atom_features.dtype == np.uint8 and g.atomic_num.dtype == np.uint8


def test_aromatic_ring_and_single_substituent_bond():
    g = feats("c1ccccc1O")
    # bonds in SMILES order: c0-c1, c1-c2, c2-c3, c3-c4, c4-c5, c5-O6, ring closure c5-c0
    assert g.edge_index[:, 0::2].T.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [5, 0]]
    types = g.edge_features[0::2, 0].tolist()
    assert types == [3, 3, 3, 3, 3, 0, 3]
    assert g.edge_features[:, 1].tolist() == [0] * 14
    assert g.atom_features.tolist() == [[C, 0]] * 6 + [[O, 0]]


def test_double_bond_directions_e_and_z():
    trans = feats("F/C=C/F")
    cis = feats("F/C=C\\F")
    # bonds F0-C1 ('/'), C1=C2, C2-F3 ('/' in E, '\' in Z)
    assert trans.edge_features.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]
    assert cis.edge_features.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0], [0, 2], [0, 2]]
    assert trans.atom_features.tolist() == [[F, 0], [C, 0], [C, 0], [F, 0]]
    # without stereo marks, no direction
    assert feats("FC=CF").edge_features[:, 1].tolist() == [0] * 6


def test_triple_bond():
    g = feats("CC#N")
    assert g.edge_features.tolist() == [[0, 0], [0, 0], [2, 0], [2, 0]]
    assert g.atom_features.tolist() == [[C, 0], [C, 0], [N, 0]]


def test_explicit_hydrogens_are_atoms():
    g = feats("C#C", hs=True)  # H-C#C-H
    assert g.atomic_num.tolist() == [6, 6, 1, 1]
    assert g.atom_features[:, 0].tolist() == [C, C, 0, 0]
    bonds = sorted(tuple(sorted(p)) + (int(t),) for p, t in zip(g.edge_index[:, 0::2].T.tolist(), g.edge_features[0::2, 0]))
    assert bonds == [(0, 1, 2), (0, 2, 0), (1, 3, 0)]


@pytest.mark.parametrize("smiles", ["C[C@H](N)O", "c1ccccc1O", "F/C=C\\F", "CC#N", "CC(=O)Oc1ccccc1C(=O)O", "[NH4+].[Cl-]", "O"])
@pytest.mark.parametrize("hs", [False, True])
def test_edges_both_directions_no_self_loops(smiles, hs):
    mol = Chem.MolFromSmiles(smiles)
    if hs:
        mol = Chem.AddHs(mol)
    g = graph_features(mol)
    nb = mol.GetNumBonds()
    assert g.edge_index.shape == (2, 2 * nb) and g.edge_index.dtype == np.int64
    assert g.edge_features.shape == (2 * nb, 2) and g.edge_features.dtype == np.uint8
    assert g.atom_features.shape == (mol.GetNumAtoms(), 2)
    assert not np.any(g.edge_index[0] == g.edge_index[1])
    for bond in mol.GetBonds():
        b, i, j = bond.GetIdx(), bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        assert g.edge_index[:, 2 * b].tolist() == [i, j]
        assert g.edge_index[:, 2 * b + 1].tolist() == [j, i]
        assert np.array_equal(g.edge_features[2 * b], g.edge_features[2 * b + 1])
    # every directed edge has its reverse
    pairs = set(map(tuple, g.edge_index.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs) and len(pairs) == 2 * nb


@pytest.mark.parametrize("smiles, what", [("*C", "atomic number 0"), ("[*]c1ccccc1", "atomic number 0"), ("[NH3]->[Fe]", "DATIVE"), ("C->[Pt]", "DATIVE")])
def test_unsupported_molecules_raise(smiles, what):
    mol = Chem.MolFromSmiles(smiles)
    assert mol is not None
    with pytest.raises(UnsupportedMolecule, match=what):
        graph_features(mol)
    assert issubclass(UnsupportedMolecule, ValueError)


def test_downstream_graph_of_a_smiles():
    """The graph fine-tuning and embed() use: the SMILES' atoms, or with explicit hydrogens."""
    from graphmvp.features import NO_ATOMS, UNPARSABLE, UNSUPPORTED, SmilesError, downstream_graph, parse_smiles

    heavy = downstream_graph(parse_smiles("CCO"))
    assert heavy.atomic_num.tolist() == [6, 6, 8]
    with_h = downstream_graph(parse_smiles("CCO"), hydrogens="keep")
    assert with_h.atomic_num.tolist() == [6, 6, 8] + [1] * 6
    assert with_h.num_edges == 2 * 8  # 2 heavy bonds + 6 C-H/O-H bonds, both directions
    for smiles, reason in (("C1CC", UNPARSABLE), ("", NO_ATOMS), ("*C", UNSUPPORTED)):
        with pytest.raises(SmilesError) as err:
            downstream_graph(parse_smiles(smiles))
        assert err.value.reason == reason
    with pytest.raises(ValueError, match="hydrogens"):
        downstream_graph(parse_smiles("C"), hydrogens="some")
