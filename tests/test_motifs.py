"""Chemistry labels on single molecules: refined-BRICS motifs, GROVER contextual labels, RDKit
functional-group flags, and vocabularies (min count, <other>, coverage, JSON)."""

from __future__ import annotations

import gzip
import itertools
import json
import random

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import Fragments

from graphmvp.chem import (
    FUNCTIONAL_GROUP_NAMES,
    OTHER,
    KeyCounts,
    Vocabulary,
    VocabularyError,
    contextual_labels,
    functional_group_flags,
    motif_decomposition,
    motif_labels,
)
from graphmvp.chem.annotate import vocabulary_from_smiles_file
from graphmvp.chem.motifs import cut_bonds

BENZENE = "C1=CC=CC=C1"


def fragments(smiles: str) -> dict[tuple[int, ...], str]:
    d = motif_decomposition(Chem.MolFromSmiles(smiles))
    return dict(zip(d.fragments, d.keys))


# ------------------------------------------------------------------------------ hand-worked motifs
@pytest.mark.parametrize(
    "smiles, expected",
    [
        # ring with a substituent chain: the ring/non-ring bond 2-3 is cut; the chain stays whole
        ("CCCc1ccccc1", {(0, 1, 2): "CCC", (3, 4, 5, 6, 7, 8): BENZENE}),
        # ester: BRICS cuts O2-C1 (L3-L4); C3 is a non-ring atom with 3 neighbours -> singleton,
        # which cuts O2-C3, C3=O4 and C3-ring (also a ring/non-ring bond)
        ("CCOC(=O)c1ccccc1", {(0, 1): "CC", (2,): "O", (3,): "C", (4,): "O", (5, 6, 7, 8, 9, 10): BENZENE}),
        # fused rings stay one motif; the methoxy loses its ring bond, C0-O1 is not a BRICS bond
        ("COc1ccc2ccccc2c1", {(0, 1): "CO", tuple(range(2, 12)): "C1=CC=C2C=CC=CC2=C1"}),
        # branching chain: C1 has 3 neighbours -> singleton; C0 and C2 become single atoms
        ("CC(C)CO", {(0,): "C", (1,): "C", (2,): "C", (3, 4): "CO"}),
        # tert-butyl on a fused aromatic system (indole)
        ("CC(C)(C)c1ccc2[nH]ccc2c1", {(0,): "C", (1,): "C", (2,): "C", (3,): "C", tuple(range(4, 13)): "C1=CC=C2NC=CC2=C1"}),
        # charged atoms keep charge (and bracket) in their keys
        ("O=[N+]([O-])c1ccccc1", {(0,): "O", (1,): "[N+]", (2,): "[O-]", (3, 4, 5, 6, 7, 8): BENZENE}),
        # BRICS cuts the biaryl bond (L16-L16): two benzene motifs
        ("c1ccccc1-c1ccccc1", {(0, 1, 2, 3, 4, 5): BENZENE, (6, 7, 8, 9, 10, 11): BENZENE}),
        # a ring-ring single bond BRICS keeps is not cut by the refined rules: one motif
        ("C1CCC(CC1)C1CCCCC1", {tuple(range(12)): "C1CCC(C2CCCCC2)CC1"}),
        # spiro rings share an atom: one ring system
        ("C1CC12CC2", {(0, 1, 2, 3, 4): "C1CC12CC2"}),
        # molecules without any cut bond: one motif each
        ("c1ccccc1", {(0, 1, 2, 3, 4, 5): BENZENE}),
        ("C1CCCCC1", {(0, 1, 2, 3, 4, 5): "C1CCCCC1"}),
        ("CCO", {(0, 1, 2): "CCO"}),
        ("C", {(0,): "C"}),
        # two components (a salt): each is decomposed
        ("[Na+].CC(=O)[O-]", {(0,): "[Na+]", (1,): "C", (2,): "C", (3,): "O", (4,): "[O-]"}),
    ],
)
def test_motifs_equal_hand_worked_fragments(smiles, expected):
    assert fragments(smiles) == expected


def test_motif_labels_returns_fragment_per_atom_and_keys():
    frag, keys = motif_labels(Chem.MolFromSmiles("CCCc1ccccc1"))
    assert frag.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert keys == ["CCC", BENZENE]


def test_keys_forget_attachment_points_and_kekule_structure():
    # toluene's ring, benzene, and the ring of a para-disubstituted benzene share one key
    assert fragments("Cc1ccccc1")[(1, 2, 3, 4, 5, 6)] == BENZENE
    assert fragments("Cc1ccc(C)cc1")[(1, 2, 3, 4, 6, 7)] == BENZENE
    # a pyridone ring without its exocyclic O: the carbonyl carbon's H count is re-derived
    assert fragments("O=c1cc[nH]cc1") == {(0,): "O", (1, 2, 3, 4, 5, 6): "C1=CNC=CC1"}


def test_explicit_hydrogens_do_not_change_motifs():
    mol = Chem.MolFromSmiles("CC(C)Cc1ccc(C(C)C(=O)O)cc1")  # ibuprofen
    frag, keys = motif_labels(mol)
    frag_h, keys_h = motif_labels(Chem.AddHs(mol))
    assert frag_h.tolist() == frag.tolist() and keys_h == keys


def _zinc(n: int, zinc_csv) -> list[str]:
    with gzip.open(zinc_csv, "rt") as f:
        return [line.split(",")[0].strip() for line in itertools.islice(f, 1, n + 1)]


def test_every_atom_in_exactly_one_connected_motif_and_cuts_between_motifs(zinc_csv):
    for smiles in _zinc(300, zinc_csv):
        mol = Chem.MolFromSmiles(smiles)
        d = motif_decomposition(mol)
        atoms = sorted(a for f in d.fragments for a in f)
        assert atoms == list(range(mol.GetNumAtoms()))  # a partition of the atoms
        assert [d.atom_fragment[a] for f in d.fragments for a in f] == [i for i, f in enumerate(d.fragments) for _ in f]
        cut = cut_bonds(mol)
        for bond in mol.GetBonds():
            same = d.atom_fragment[bond.GetBeginAtomIdx()] == d.atom_fragment[bond.GetEndAtomIdx()]
            assert same == (bond.GetIdx() not in cut), smiles  # motifs = components without cut bonds
            if bond.IsInRing():
                assert same, smiles  # ring systems are never split
        for frag in d.fragments:  # each motif is connected
            sub = Chem.PathToSubmol(mol, [b.GetIdx() for b in mol.GetBonds()
                                          if b.GetBeginAtomIdx() in frag and b.GetEndAtomIdx() in frag])
            assert len(frag) == 1 or len(Chem.GetMolFrags(sub)) == 1, smiles
        for atom in mol.GetAtoms():  # branching non-ring atoms are singletons
            if not atom.IsInRing() and atom.GetDegree() > 2:
                assert d.fragments[d.atom_fragment[atom.GetIdx()]] == (atom.GetIdx(),), smiles


def test_keys_do_not_depend_on_atom_order(zinc_csv):
    rng = random.Random(0)
    for smiles in _zinc(100, zinc_csv):
        mol = Chem.MolFromSmiles(smiles)
        order = list(range(mol.GetNumAtoms()))
        rng.shuffle(order)
        shuffled = Chem.RenumberAtoms(mol, order)
        frag, keys = motif_labels(mol)
        frag_s, keys_s = motif_labels(shuffled)
        per_atom = [keys[f] for f in frag]
        per_atom_s = [keys_s[f] for f in frag_s]
        assert [per_atom[o] for o in order] == per_atom_s, smiles


# ------------------------------------------------------------------------------ contextual labels
def test_contextual_labels_of_acetic_acid_by_hand():
    assert contextual_labels(Chem.MolFromSmiles("CC(=O)O")) == [
        "C_C-SINGLE1",
        "C_C-SINGLE1_O-DOUBLE1_O-SINGLE1",
        "O_C-DOUBLE1",
        "O_C-SINGLE1",
    ]


def test_contextual_labels_aromatic_bonds_isolated_atom_and_no_hydrogen_neighbours():
    assert contextual_labels(Chem.MolFromSmiles("Oc1ccccc1")) == [
        "O_C-SINGLE1", "C_C-AROMATIC2_O-SINGLE1", *["C_C-AROMATIC2"] * 5]
    assert contextual_labels(Chem.MolFromSmiles("C")) == ["C"]
    assert contextual_labels(Chem.MolFromSmiles("N#CCl")) == ["N_C-TRIPLE1", "C_Cl-SINGLE1_N-TRIPLE1", "Cl_C-SINGLE1"]
    # explicit hydrogens are removed first: same labels as from the SMILES
    assert contextual_labels(Chem.AddHs(Chem.MolFromSmiles("CC(=O)O"))) == contextual_labels(Chem.MolFromSmiles("CC(=O)O"))


# ------------------------------------------------------------------------------ functional groups
def test_functional_group_flags_of_benzocaine():
    mol = Chem.MolFromSmiles("CCOC(=O)c1ccc(N)cc1")  # ethyl 4-aminobenzoate
    flags = functional_group_flags(mol)
    assert flags.shape == (85,) and flags.dtype == np.uint8 and len(FUNCTIONAL_GROUP_NAMES) == 85
    named = dict(zip(FUNCTIONAL_GROUP_NAMES, flags.tolist()))
    for present in ("fr_ester", "fr_benzene", "fr_aniline", "fr_NH2", "fr_C_O", "fr_C_O_noCOO"):
        assert named[present] == 1, present
    for absent in ("fr_COO", "fr_Al_OH", "fr_halogen", "fr_nitro", "fr_amide", "fr_ketone", "fr_pyridine"):
        assert named[absent] == 0, absent
    # the whole vector equals RDKit's own counts thresholded at one
    assert flags.tolist() == [int(getattr(Fragments, name)(mol) > 0) for name in FUNCTIONAL_GROUP_NAMES]
    assert functional_group_flags(Chem.AddHs(mol)).tolist() == flags.tolist()


# ------------------------------------------------------------------------------ vocabularies
def _counts() -> KeyCounts:
    c = KeyCounts(n_molecules=4, n_atoms=25)
    c.add(["A", "B"], [3, 1], [6, 2])
    c.add(["A", "B", "C", "D"], [2, 1, 1, 2], [4, 2, 3, 2])
    c.add_failure("unparsable_smiles", 3, "xx")
    return c


def test_vocabulary_min_count_other_and_coverage_arithmetic():
    v = Vocabulary.build("motif", "rules-x", _counts(), min_count=2)
    # counts A 5, B 2, D 2, C 1: C is below the cutoff; ties (B, D) sorted by key
    assert v.keys == [OTHER, "A", "B", "D"] and v.size == 4
    assert v.index("A") == 1 and v.index("C") == 0 and v.index("never seen") == 0
    assert v.encode(["D", "C", "A"]).tolist() == [3, 0, 1]
    assert v.coverage == pytest.approx((10 + 4 + 2) / 25)  # atoms of A, B, D over all 25 atoms
    assert v.n_failed == 1 and v.failures == {"unparsable_smiles": 1}
    strict = v.with_min_count(3)
    assert strict.keys == [OTHER, "A"] and strict.coverage == pytest.approx(10 / 25)
    assert Vocabulary.build("motif", "rules-x", _counts(), min_count=1).keys == [OTHER, "A", "B", "D", "C"]
    with pytest.raises(VocabularyError, match="min_count"):
        Vocabulary.build("motif", "rules-x", _counts(), min_count=0)


def test_vocabulary_json_round_trip_and_refusals(tmp_path):
    v = Vocabulary.build("motif", "rules-x", _counts(), min_count=2, source={"store": "s.h5"})
    path = v.save(tmp_path / "v.json")
    d = json.loads(path.read_text())
    assert d["format"] == "graphmvp-label-vocab" and d["format_version"] == 1 and d["rules_version"] == "rules-x"
    assert d["keys"][0] == "<other>" and d["other_index"] == 0 and d["size"] == 4 and d["min_count"] == 2
    assert d["counts"] == {"A": 5, "B": 2, "D": 2, "C": 1} and d["n_atoms"] == 25 and d["n_molecules"] == 4
    assert d["coverage"] == pytest.approx(16 / 25)
    back = Vocabulary.load(path, kind="motif", rules_version="rules-x")
    assert back.keys == v.keys and back.counts == v.counts and back.coverage == v.coverage
    with pytest.raises(VocabularyError, match="not a contextual one"):
        Vocabulary.load(path, kind="contextual")
    with pytest.raises(VocabularyError, match="rebuild"):
        Vocabulary.load(path, kind="motif", rules_version="rules-y")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(VocabularyError, match="not a graphmvp label vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(VocabularyError, match="cannot read"):
        Vocabulary.load(tmp_path / "missing.json")


def test_vocabulary_from_smiles_file_counts_failures_and_never_drops(tmp_path):
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles\nc1ccccc1\nCc1ccccc1\nCCO\nnot_a_smiles\nCCO\n")
    v, scan = vocabulary_from_smiles_file(csv, "motif", min_count=2)
    # benzene ring x2 (benzene, toluene), CCO x2, the methyl "C" x1
    assert v.counts == {BENZENE: 2, "CCO": 2, "C": 1}
    assert v.keys == [OTHER, BENZENE, "CCO"]
    assert v.n_molecules == 5 and v.n_atoms == 6 + 7 + 3 + 3
    assert v.coverage == pytest.approx((12 + 6) / 19)
    assert v.failures == {"unparsable_smiles": 1}
    assert v.failure_examples[0]["index"] == "mols.csv:5" and v.failure_examples[0]["smiles"] == "not_a_smiles"
    v2, _ = vocabulary_from_smiles_file(csv, "contextual", min_count=1, n_mol=1)
    assert v2.keys == [OTHER, "C_C-AROMATIC2"] and v2.counts == {"C_C-AROMATIC2": 6}
    with pytest.raises(VocabularyError, match="molecule-level"):
        vocabulary_from_smiles_file(csv, "functional_groups")
    (tmp_path / "empty.csv").write_text("smiles\n")
    with pytest.raises(VocabularyError, match="no molecules"):
        vocabulary_from_smiles_file(tmp_path / "empty.csv")
