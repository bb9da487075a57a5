"""GEOM reader on a GEOM-format fixture written here: which conformers each rule selects, and that
their positions, energies and weights are exactly the fixture's."""

import pickle

import numpy as np
import pytest
from rdkit import Chem

from geom_fixture import (
    GeomEntry,
    conformer_positions,
    conformer_records,
    embed_conformers,
    write_geom_folder,
)
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import HARTREE_TO_KCAL, ConformerStore
from graphmvp.features import graph_features

# Molecule A: 4 conformers stored in this (shuffled) file order.
A_SMILES = "CC(=O)Nc1ccccc1"
A_REL_KCAL = [0.9, 0.0, 0.5, 0.3]
A_DEGENERACY = [1, 1, 4, 1]
# Hand-derived with kT = 0.5925 kcal/mol:  g * exp(-E/kT) = 0.219, 1.000, 4 * 0.430 = 1.720, 0.603
#   energy order (lowest first):    1, 3, 2, 0
#   Boltzmann order (highest first): 2, 1, 3, 0
#   file order:                      0, 1, 2, 3
EXPECTED = {"energy": [1, 3, 2, 0], "boltzmann": [2, 1, 3, 0], "file": [0, 1, 2, 3]}

# Molecule B: 3 conformers, plain degeneracy, so all rules but 'file' agree
B_SMILES = "OCC(=O)Nc1ccncc1"
B_REL_KCAL = [0.4, 0.0, 0.2]
B_EXPECTED = {"energy": [1, 2, 0], "boltzmann": [1, 2, 0], "file": [0, 1, 2]}


@pytest.fixture(scope="module")
def geom(tmp_path_factory):
    root = tmp_path_factory.mktemp("geom")
    a = conformer_records(embed_conformers(A_SMILES, 4, seed=11), A_REL_KCAL, A_DEGENERACY, base_hartree=-440.0)
    b = conformer_records(embed_conformers(B_SMILES, 3, seed=12), B_REL_KCAL, base_hartree=-530.0)
    folder = write_geom_folder(root, [GeomEntry(A_SMILES, "molA", a), GeomEntry(B_SMILES, "molB", b)])
    return {"folder": folder, "root": root, A_SMILES: a, B_SMILES: b}


def run(geom, tmp_path, **kw):
    out = tmp_path / f"store_{len(list(tmp_path.iterdir()))}.h5"
    prepare(PrepConfig(input=str(kw.pop("input", geom["folder"])), output=str(out), **kw))
    return ConformerStore(out)


def by_smiles(store):
    return {m.smiles: m for m in store}


def test_fixture_weights_disagree_with_energies(geom):
    recs = geom[A_SMILES]
    w = [r["boltzmannweight"] for r in recs]
    e = [r["totalenergy"] for r in recs]
    assert list(np.argsort(e)) == EXPECTED["energy"]
    assert list(np.argsort(w)[::-1]) == EXPECTED["boltzmann"]
    assert np.isclose(sum(w), 1.0)


@pytest.mark.parametrize("rule", ["energy", "boltzmann", "file"])
@pytest.mark.parametrize("n_conf", [2, 4])
def test_rule_selects_expected_conformers_exactly(geom, tmp_path, rule, n_conf):
    store = run(geom, tmp_path, select=rule, n_conf=n_conf, min_confs=2)
    mols = by_smiles(store)
    assert set(mols) == {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in (A_SMILES, B_SMILES)}
    for smiles, expected_order, name in ((A_SMILES, EXPECTED[rule], "molA"), (B_SMILES, B_EXPECTED[rule], "molB")):
        recs = geom[smiles]
        want = expected_order[: min(n_conf, len(recs))]
        m = mols[Chem.MolToSmiles(Chem.MolFromSmiles(smiles))]
        assert m.conf_source_index.tolist() == want
        assert m.source_id == f"drugs/{name}.pickle"
        # positions are exactly those of the chosen rd_mols, in selection order
        expected_pos = np.stack([conformer_positions(recs[i]["rd_mol"]) for i in want])
        assert m.positions.dtype == np.float32
        assert np.array_equal(m.positions, expected_pos)
        # energies in kcal/mol from Hartree, GEOM's own weights
        np.testing.assert_allclose(m.energy, [recs[i]["totalenergy"] * HARTREE_TO_KCAL for i in want], rtol=1e-13)
        np.testing.assert_array_equal(m.boltzmann_weight, [recs[i]["boltzmannweight"] for i in want])
        # the graph is the explicit-H graph of the GEOM molecule
        g = graph_features(recs[want[0]]["rd_mol"])
        for key in ("atomic_num", "atom_features", "edge_index", "edge_features"):
            assert np.array_equal(getattr(m, key), getattr(g, key)), key
        assert m.num_atoms == recs[0]["rd_mol"].GetNumAtoms()
    if rule == "energy":
        for m in mols.values():
            assert np.all(np.diff(m.energy) > 0)
    if rule == "boltzmann":
        for m in mols.values():
            assert np.all(np.diff(m.boltzmann_weight) < 0)


def test_hydrogens_drop_keeps_heavy_atom_rows(geom, tmp_path):
    keep = by_smiles(run(geom, tmp_path, n_conf=2))
    drop = run(geom, tmp_path, n_conf=2, hydrogens="drop")
    assert drop.hydrogens == "drop" and len(drop) == 2
    for m in drop:
        k = keep[m.smiles]
        heavy = k.atomic_num != 1
        assert np.all(m.atomic_num != 1)
        assert np.array_equal(m.positions, k.positions[:, heavy])
        assert np.array_equal(m.conf_source_index, k.conf_source_index)
        recs = geom[A_SMILES if m.source_id.endswith("molA.pickle") else B_SMILES]
        g = graph_features(Chem.RemoveHs(recs[int(m.conf_source_index[0])]["rd_mol"]))
        for key in ("atomic_num", "atom_features", "edge_index", "edge_features"):
            assert np.array_equal(getattr(m, key), getattr(g, key)), key


def test_conformer_with_other_atom_order_is_aligned(tmp_path):
    """A conformer whose rd_mol lists the same atoms in another order is mapped back onto the
    first conformer's atom order (the molecule has no graph symmetry, so the map is unique)."""
    smiles = "OC(F)(Cl)Br"
    mols = embed_conformers(smiles, 3, seed=5)
    original = [conformer_positions(m) for m in mols]
    n = mols[1].GetNumAtoms()
    perm = [int(i) for i in np.random.default_rng(0).permutation(n)]
    assert perm != list(range(n))
    mols[1] = Chem.RenumberAtoms(mols[1], perm)
    assert not np.array_equal(conformer_positions(mols[1]), original[1])
    recs = conformer_records(mols, [0.0, 0.1, 0.2])
    folder = write_geom_folder(tmp_path, [GeomEntry(smiles, "halo", recs)])
    out = tmp_path / "s.h5"
    result = prepare(PrepConfig(input=str(folder), output=str(out), n_conf=3))
    assert result.counts["dropped_conformers"] == {}
    (m,) = list(ConformerStore(out))
    assert m.conf_source_index.tolist() == [0, 1, 2]
    assert np.array_equal(m.positions, np.stack(original))


def test_summary_json_path_and_subset(geom, tmp_path):
    """INPUT may be the rdkit_folder, its parent, or the summary JSON itself; other subsets by name."""
    ref = [m.positions for m in run(geom, tmp_path, n_conf=2, shuffle=False)]
    for inp in (geom["root"], geom["folder"] / "summary_drugs.json"):
        got = [m.positions for m in run(geom, tmp_path, n_conf=2, shuffle=False, input=inp)]
        assert all(np.array_equal(a, b) for a, b in zip(ref, got)) and len(ref) == len(got) == 2
    qm9 = write_geom_folder(tmp_path / "q", [GeomEntry(B_SMILES, "molB", geom[B_SMILES])], subset="qm9")
    store = run(geom, tmp_path, n_conf=2, input=qm9, geom_subset="qm9")
    assert [m.source_id for m in store] == ["qm9/molB.pickle"]


def test_geom_sample_energies_match_pickles(geom_sample, tmp_path):
    """On the shared GEOM-layout sample: every kept molecule holds the 5 lowest-energy conformers
    of its pickle, in order, and the counts add up."""
    import json

    out = tmp_path / "sample.h5"
    result = prepare(PrepConfig(input=str(geom_sample), output=str(out)))
    summary = json.loads((geom_sample / "summary_drugs.json").read_text())
    c = result.counts
    assert c["candidates"] == len(summary)
    assert c["kept"] + sum(c["skipped"].values()) == c["candidates"]
    store = ConformerStore(out)
    assert len(store) == c["kept"] > 0
    for m in store:
        with open(geom_sample / m.source_id, "rb") as f:
            confs = pickle.load(f)["conformers"]
        energy = np.array([x["totalenergy"] for x in confs]) * HARTREE_TO_KCAL
        want = np.argsort(energy, kind="stable")[:5]
        assert m.conf_source_index.tolist() == want.tolist()
        np.testing.assert_allclose(m.energy, energy[want], rtol=1e-13)
        assert np.array_equal(m.positions[0], conformer_positions(confs[want[0]]["rd_mol"]))
    for s in store.skipped():
        assert s.reason == "too_few_conformers", s
        with open(geom_sample / s.source_id, "rb") as f:
            assert len(pickle.load(f)["conformers"]) < 5


def test_max_and_min_confs(geom, tmp_path):
    """molA has 4 conformers, molB 3: --max-confs 3 skips molA, --min-confs 4 skips molB."""
    store = run(geom, tmp_path, n_conf=2, max_confs=3)
    assert [m.source_id for m in store] == ["drugs/molB.pickle"]
    assert [(s.source_id, s.reason) for s in store.skipped()] == [("drugs/molA.pickle", "too_many_conformers")]
    store = run(geom, tmp_path, n_conf=2, min_confs=4)
    assert [m.source_id for m in store] == ["drugs/molA.pickle"]
    assert [(s.source_id, s.reason) for s in store.skipped()] == [("drugs/molB.pickle", "too_few_conformers")]
    # the default --min-confs is --n-conf (upstream): 4 conformers wanted, molB has 3
    store = run(geom, tmp_path, n_conf=4)
    assert [m.source_id for m in store] == ["drugs/molA.pickle"]


def test_exclude_with_and_without_stereo(tmp_path):
    """--exclude matches canonical isomeric SMILES; with --exclude-ignore-stereo, stereo is ignored."""
    chiral, other = "C[C@H](N)c1ccccc1", "CC(=O)Nc1ccccc1"
    folder = write_geom_folder(
        tmp_path,
        [
            GeomEntry(chiral, "chiral", conformer_records(embed_conformers(chiral, 2, seed=1), [0.0, 0.1])),
            GeomEntry(other, "other", conformer_records(embed_conformers(other, 2, seed=2), [0.0, 0.1])),
        ],
    )
    ex = tmp_path / "downstream.csv"
    ex.write_text("smiles,label\nNC(C)c1ccccc1,1\n")  # the same molecule without stereo
    out1, out2 = tmp_path / "a.h5", tmp_path / "b.h5"
    prepare(PrepConfig(input=str(folder), output=str(out1), n_conf=2, exclude=[str(ex)]))
    assert len(ConformerStore(out1)) == 2
    r = prepare(PrepConfig(input=str(folder), output=str(out2), n_conf=2, exclude=[str(ex)], exclude_ignore_stereo=True))
    assert [m.source_id for m in ConformerStore(out2)] == ["drugs/other.pickle"]
    assert r.counts["skipped"] == {"excluded_downstream": 1}
