"""SMILES / SDF input -> store -> ConformerStore: graphs equal the featurisation of the stored
SMILES, conformers are plausible and ordered, weights are Boltzmann ratios, and the options
--hydrogens, --n-mol, --exclude and --select do what they say."""

import multiprocessing as mp
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest
from rdkit import Chem

from geom_fixture import (
    ZINC_SMILES,
    assert_same_molecule,
    read_report,
    store_datasets,
    write_sdf,
    write_smi,
    write_smiles_csv,
)
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import FORMAT_VERSION, ConformerStore, StoreFormatError
from graphmvp.features import graph_features

SMILES = ZINC_SMILES[:6]
N_CONF, GEN_CONFS = 2, 3
FORMATS = ("csv", "smi", "sdf", "csv.gz", "smi.gz", "sdf.gz")
GRAPH_KEYS = ("atomic_num", "atom_features", "edge_index", "edge_features")
KT_298 = 1.987204e-3 * 298.15  # kcal/mol: gas constant R = 1.987204 cal/(mol K) (CODATA) x 298.15 K


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("roundtrip")
    for fmt in FORMATS:
        path = d / f"mols.{fmt}"
        if fmt.startswith("csv"):
            write_smiles_csv(path, SMILES)
        elif fmt.startswith("smi"):
            write_smi(path, SMILES)
        else:
            write_sdf(path, SMILES)
    return d


@pytest.fixture(scope="module")
def make_store(workdir):
    """Build (once per option set) a store from ``mols.<fmt>``."""
    cache = {}

    def make(fmt="csv", **options):
        key = (fmt, tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in cache:
            out = workdir / f"store_{len(cache)}.h5"
            cfg = dict(n_conf=N_CONF, gen_confs=GEN_CONFS)
            cfg.update(options)
            result = prepare(PrepConfig(input=str(workdir / f"mols.{fmt}"), output=str(out), **cfg))
            cache[key] = (out, result)
        return cache[key]

    return make


def assert_graph_equals(m, mol):
    g = graph_features(mol)
    for key in GRAPH_KEYS:
        assert np.array_equal(getattr(m, key), getattr(g, key)), (m.smiles, key)


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_graph_equals_featurised_smiles(make_store, fmt):
    """Every molecule's graph is ``graph_features(Chem.AddHs(Chem.MolFromSmiles(smiles)))`` of its
    stored SMILES (the inputs are canonical, so the atom order is the same too)."""
    store = ConformerStore(make_store(fmt)[0])
    assert len(store) == len(SMILES)
    bad = []
    for m in store:
        g = graph_features(Chem.AddHs(Chem.MolFromSmiles(m.smiles)))
        bad += [(m.smiles, key) for key in GRAPH_KEYS if not np.array_equal(getattr(m, key), getattr(g, key))]
    assert bad == []


def test_graph_keeps_rdkit_aromaticity_after_mmff(tmp_path):
    """The MMFF94 optimisation must not leak MMFF's aromaticity model into the stored graph: the
    xanthine's 6-ring is aromatic for RDKit (bond type 3), as in every downstream SMILES graph."""
    smiles = "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C"
    csv = write_smiles_csv(tmp_path / "x.csv", [smiles])
    out = tmp_path / "x.h5"
    prepare(PrepConfig(input=str(csv), output=str(out), n_conf=1, gen_confs=1))
    (m,) = list(ConformerStore(out))
    g = graph_features(Chem.AddHs(Chem.MolFromSmiles(smiles)))
    assert int((g.edge_features[:, 0] == 3).sum()) == 2 * 10  # fused 5- and 6-ring: 10 aromatic bonds
    assert m.edge_features[:, 0].tolist() == g.edge_features[:, 0].tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_conformers(workdir, make_store, fmt):
    path, result = make_store(fmt)
    store = ConformerStore(path)
    assert result.counts == {"candidates": len(SMILES), "kept": len(SMILES), "skipped": {}, "dropped_conformers": {}}
    assert len(store) == len(SMILES) and store.hydrogens == "keep"
    assert sorted(m.smiles for m in store) == sorted(SMILES)
    lines = None if fmt.startswith("sdf") else (workdir / f"mols.{fmt.removesuffix('.gz')}").read_text().splitlines()
    for m in store:
        n = m.num_atoms
        assert m.atomic_num.tolist() == [a.GetAtomicNum() for a in Chem.AddHs(Chem.MolFromSmiles(m.smiles)).GetAtoms()]
        # source ids point at the molecule's line / record
        name, _, where = m.source_id.partition(":" if lines is not None else "#")
        assert name == f"mols.{fmt}"
        if lines is not None:
            assert lines[int(where) - 1].split(",")[-1].split()[0] == m.smiles
        else:
            k = int(where.split()[0])
            assert where == f"{k} (zinc{k - 1})" and SMILES[k - 1] == m.smiles
        # conformers
        assert m.positions.shape == (N_CONF, n, 3) and m.positions.dtype == np.float32
        assert np.isfinite(m.positions).all()
        src, dst = m.edge_index
        d = np.linalg.norm(m.positions[:, src] - m.positions[:, dst], axis=-1)
        heavy = (m.atomic_num[src] > 1) & (m.atomic_num[dst] > 1)
        assert heavy.any() and (~heavy).any()
        assert d[:, heavy].min() > 0.9 and d[:, heavy].max() < 2.0, m.smiles
        assert d[:, ~heavy].min() > 0.9 and d[:, ~heavy].max() < 1.2, m.smiles
        # conformers differ from each other
        assert not np.allclose(m.positions[0], m.positions[1])
        # selection: lowest MMFF energy first, distinct generated conformers
        assert np.all(np.diff(m.energy) >= 0)
        assert len(set(m.conf_source_index.tolist())) == N_CONF
        assert m.conf_source_index.min() >= 0 and m.conf_source_index.max() < GEN_CONFS
        # weights were normalised over all generated conformers: <= 1, Boltzmann ratios among the kept
        w = m.boltzmann_weight
        assert np.all(w > 0) and np.all(w <= 1) and w.sum() <= 1 + 1e-12
        np.testing.assert_allclose(w[1:] / w[0], np.exp(-(m.energy[1:] - m.energy[0]) / KT_298), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["csv", "smi", "sdf"])
def test_gzipped_input_gives_the_same_store(make_store, fmt):
    plain = store_datasets(make_store(fmt)[0])
    gz = store_datasets(make_store(f"{fmt}.gz")[0])
    assert sorted(plain) == sorted(gz)
    for name in plain:
        if name == "molecules/source_id":
            assert [s.replace(f"mols.{fmt}.gz", f"mols.{fmt}") for s in gz[name]] == list(plain[name])
        else:
            assert np.array_equal(plain[name], gz[name]), name


def test_hydrogens_drop_equals_heavy_atom_rows_of_keep(make_store):
    keep = ConformerStore(make_store("csv")[0])
    drop = ConformerStore(make_store("csv", hydrogens="drop")[0])
    assert drop.hydrogens == "drop" and len(drop) == len(keep)
    for k, m in zip(keep, drop):
        assert m.smiles == k.smiles
        assert_graph_equals(m, Chem.MolFromSmiles(m.smiles))
        heavy = k.atomic_num > 1
        assert np.array_equal(m.positions, k.positions[:, heavy])
        assert np.array_equal(m.energy, k.energy) and np.array_equal(m.boltzmann_weight, k.boltzmann_weight)
        assert np.all(m.atomic_num > 1)


def test_molecules_slice_equals_indexing(make_store):
    store = ConformerStore(make_store("csv")[0])
    n = len(store)
    for a, b in [(0, n), (1, 4), (2, 3), (3, 3), (n - 2, n + 5), (0, None)]:
        got = store.molecules(a, b)
        want = [store[i] for i in range(a, min(n if b is None else b, n))]
        assert len(got) == len(want)
        for x, y in zip(got, want):
            assert_same_molecule(x, y)
    assert [m.smiles for m in store] == [store.smiles(i) for i in range(n)]
    assert_same_molecule(store[-1], store[n - 1])
    with pytest.raises(IndexError):
        store[n]
    assert store.num_atoms().tolist() == [m.num_atoms for m in store]
    assert store.num_conformers().tolist() == [N_CONF] * n


def test_n_mol_keeps_the_first_valid_molecules(workdir):
    """With a bad molecule among the candidates, ``--n-mol 3`` keeps the first 3 molecules of the
    uncapped run and reports only the skips before the last of them."""
    csv = write_smiles_csv(workdir / "with_bad.csv", ["C1CC(", *SMILES[:4], "c1cccc1"])
    full = prepare(PrepConfig(input=str(csv), output=str(workdir / "full.h5"), n_conf=N_CONF, gen_confs=GEN_CONFS))
    capped = prepare(PrepConfig(input=str(csv), output=str(workdir / "capped.h5"), n_conf=N_CONF, gen_confs=GEN_CONFS, n_mol=3, chunk_size=1))
    f, c = ConformerStore(full.store), ConformerStore(capped.store)
    assert len(f) == 4 and len(c) == 3
    for x, y in zip(c, f.molecules(0, 3)):
        assert_same_molecule(x, y)
    cutoff = c[2].candidate_index
    want_skips = [(s.candidate_index, s.reason) for s in f.skipped() if s.candidate_index <= cutoff]
    assert [(s.candidate_index, s.reason) for s in c.skipped()] == want_skips
    assert capped.counts["kept"] == 3 and capped.counts["candidates"] == cutoff + 1
    assert capped.counts["candidates"] == 3 + sum(capped.counts["skipped"].values())
    assert c.counts == capped.counts
    # a cap above the number of valid molecules changes nothing
    big = prepare(PrepConfig(input=str(csv), output=str(workdir / "big.h5"), n_conf=N_CONF, gen_confs=GEN_CONFS, n_mol=10))
    assert big.counts == full.counts


def test_exclude_removes_exactly_the_listed_molecules(workdir, make_store):
    full_path, _ = make_store("csv")
    # the same molecules written differently (non-canonical atom order), in a CSV and a header-less file
    a = Chem.MolFromSmiles(SMILES[1])
    b = Chem.MolFromSmiles(SMILES[4])
    other_a = Chem.MolToSmiles(a, rootedAtAtom=a.GetNumAtoms() - 1, canonical=False)
    other_b = Chem.MolToSmiles(b, rootedAtAtom=b.GetNumAtoms() - 1, canonical=False)
    assert other_a != SMILES[1] and other_b != SMILES[4]
    ex_csv = write_smiles_csv(workdir / "downstream.csv", [other_a, "CCO"], column="smiles")
    ex_txt = workdir / "downstream_smiles.csv"
    ex_txt.write_text(f"{other_b}\n")
    path, result = make_store("csv", exclude=[str(ex_csv), str(ex_txt)])
    store, full = ConformerStore(path), ConformerStore(full_path)
    assert sorted(m.smiles for m in store) == sorted(set(SMILES) - {SMILES[1], SMILES[4]})
    assert result.counts["skipped"] == {"excluded_downstream": 2}
    assert result.counts["kept"] == len(SMILES) - 2 and result.counts["candidates"] == len(SMILES)
    rows = read_report(path)
    assert sorted((r["smiles"], r["reason"]) for r in rows) == sorted([(SMILES[1], "excluded_downstream"), (SMILES[4], "excluded_downstream")])
    # the others are untouched (same candidate positions, so the same conformers)
    by_smiles = {m.smiles: m for m in full}
    for m in store:
        assert_same_molecule(m, by_smiles[m.smiles])


def test_select_rules_on_generated_conformers(make_store):
    """All generated conformers kept (n_conf = gen_confs): 'file' keeps generation order, 'energy'
    is that sorted by MMFF energy, 'boltzmann' equals 'energy' (weights fall with energy)."""
    opts = dict(n_conf=3, gen_confs=3, min_confs=3)
    file_s = ConformerStore(make_store("csv", select="file", **opts)[0])
    energy_s = ConformerStore(make_store("csv", select="energy", **opts)[0])
    boltz_s = ConformerStore(make_store("csv", select="boltzmann", **opts)[0])
    assert len(file_s) == len(energy_s) == len(boltz_s) == len(SMILES)
    for f, e, b in zip(file_s, energy_s, boltz_s):
        assert f.conf_source_index.tolist() == [0, 1, 2]
        order = np.argsort(f.energy, kind="stable")
        assert e.conf_source_index.tolist() == order.tolist()
        assert np.array_equal(e.positions, f.positions[order])
        assert np.array_equal(e.energy, f.energy[order])
        np.testing.assert_allclose(f.boltzmann_weight.sum(), 1.0, rtol=1e-12)
        assert_same_molecule(b, e)


def test_sdf_stereo_graph_equals_smiles_featurisation(tmp_path):
    """An SDF record's graph is featurised like its (stored) SMILES: chirality tags and E/Z bond
    directions included. Bonds are compared as unordered pairs (a mol block may list a wedged
    bond from the other end)."""
    smiles = ["C[C@@H](O)c1ccccc1", "C/C=C/c1ccccc1", "COc1ccc(/C=C2\\CCCN=C2c2cccnc2)c(OC)c1"]
    smiles = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles]
    sdf = write_sdf(tmp_path / "stereo.sdf", smiles)
    out = tmp_path / "s.h5"
    prepare(PrepConfig(input=str(sdf), output=str(out), n_conf=1, gen_confs=1))
    store = ConformerStore(out)
    assert sorted(m.smiles for m in store) == sorted(smiles)
    for m in store:
        g = graph_features(Chem.AddHs(Chem.MolFromSmiles(m.smiles)))
        assert np.array_equal(m.atomic_num, g.atomic_num), m.smiles
        assert np.array_equal(m.atom_features, g.atom_features), m.smiles
        rows = lambda ei, ef: sorted(zip(*ei.tolist(), *ef.T.tolist()))  # noqa: E731
        assert rows(m.edge_index, m.edge_features) == rows(g.edge_index, g.edge_features), m.smiles


# -- ConformerStore: opening errors, fork safety ---------------------------------------------------
def test_open_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        ConformerStore(tmp_path / "nothing.h5")


def test_open_hdf5_that_is_not_a_store(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["molecules/smiles"] = np.array([b"C"])
    with pytest.raises(StoreFormatError, match="not a graphmvp conformer store"):
        ConformerStore(path)
    assert issubclass(StoreFormatError, ValueError)


def test_open_store_of_a_future_format_version(make_store, tmp_path):
    path = tmp_path / "future.h5"
    shutil.copy(make_store("csv")[0], path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(StoreFormatError, match=rf"format_version {FORMAT_VERSION + 1}.*reads {FORMAT_VERSION}"):
        ConformerStore(path)


_FORKED_STORE = None


def _read_in_child(i):
    m = _FORKED_STORE[i]
    reopened = _FORKED_STORE._pid == os.getpid()  # the child opened its own HDF5 handle
    return os.getpid(), reopened, m.positions, m.edge_index, m.smiles


def test_store_opened_before_fork_is_readable_in_children(make_store):
    global _FORKED_STORE
    store = ConformerStore(make_store("csv")[0])
    parent = [store[i] for i in range(len(store))]  # the HDF5 handle is open now
    _FORKED_STORE = store
    try:
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(_read_in_child, range(len(store)))
    finally:
        _FORKED_STORE = None
    assert all(pid != os.getpid() and reopened for pid, reopened, *_ in results)
    for m, (_, _, pos, ei, smiles) in zip(parent, results):
        assert np.array_equal(m.positions, pos) and np.array_equal(m.edge_index, ei) and m.smiles == smiles
    # the parent's handle still works, and a pickled store (spawn, DataLoader) reopens the file
    assert_same_molecule(store[0], parent[0])
    clone = pickle.loads(pickle.dumps(store))
    assert len(clone) == len(store)
    assert_same_molecule(clone[len(store) - 1], parent[-1])
