"""Label sidecars beside a store: labels aligned with the store's atom rows (graph-matched onto
the stored atom order, hydrogens labelled like their heavy atom), failures counted, stale sidecars
refused, atomic writes, readers, and the ``graphmvp-prep motifs|labels`` commands."""

from __future__ import annotations

import gzip
import itertools
import json
import pickle
import random

import h5py
import numpy as np
import pytest
from rdkit import Chem

from geom_fixture import ZINC_SMILES, write_smiles_csv
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.prep.store_writer import write_store
from graphmvp.chem import FUNCTIONAL_GROUP_NAMES, OTHER, Vocabulary, contextual_labels, motif_labels
from graphmvp.data import annotations as A
from graphmvp.data.annotations import AtomLabels, LabelsError, MoleculeLabels, StaleLabelsError, build_labels
from graphmvp.data.store import Molecule, open_store
from graphmvp.features import graph_features

BENZENE = "C1=CC=CC=C1"


def stored_molecule(graph_smiles: str, stored_smiles: str | None = None, hydrogens: bool = True) -> Molecule:
    """A store molecule whose atoms are in ``graph_smiles``' order (+ hydrogens at the end, as
    preparation writes them) and whose SMILES is ``stored_smiles`` (default: canonical)."""
    mol = Chem.MolFromSmiles(graph_smiles)
    canonical = Chem.MolToSmiles(mol)
    if hydrogens:
        mol = Chem.AddHs(mol)
    g = graph_features(mol)
    n = g.num_atoms
    return Molecule(g.atomic_num, g.atom_features, g.edge_index, g.edge_features, np.zeros((0, n, 3), np.float32),
                    np.zeros(0), np.zeros(0), np.zeros(0, np.int32), stored_smiles or canonical, graph_smiles, 0)


#: (graph in store order, stored SMILES): non-canonical atom orders; two molecules that must fail
TINY = [
    ("OC(C)=O", None),                 # 0 acetic acid: rows O, C(carboxyl), CH3, =O, then 4 H
    ("c1cc(C(=O)OCC)ccc1", None),      # 1 ethyl benzoate
    ("OCC", None),                     # 2 ethanol
    ("C", "not_a_smiles"),             # 3 unparsable stored SMILES
    ("OCC", "CO"),                     # 4 stored graph (ethanol) differs from its SMILES (methanol)
]


def write_tiny(path, molecules=TINY, hydrogens=True):
    write_store(path, [stored_molecule(g, s, hydrogens) for g, s in molecules], [],
                {"hydrogens": "keep" if hydrogens else "drop"})
    return path


@pytest.fixture
def tiny(tmp_path):
    store = write_tiny(tmp_path / "tiny.h5")
    build = build_labels(store, min_count=1)
    return store, build


def keys_of(labels: AtomLabels, i: int) -> list[str]:
    return [labels.vocab.keys[k] for k in labels.labels(i)]


def test_labels_follow_the_stored_atom_order_and_hydrogens_copy_their_heavy_atom(tiny):
    store, build = tiny
    motif, ctx = AtomLabels.open(store, "motif"), AtomLabels.open(store, "contextual")
    # acetic acid stored as O, C, C, O + H(on O0), 3 H(on C2)
    assert keys_of(ctx, 0) == ["O_C-SINGLE1", "C_C-SINGLE1_O-DOUBLE1_O-SINGLE1", "C_C-SINGLE1", "O_C-DOUBLE1",
                               "O_C-SINGLE1", "C_C-SINGLE1", "C_C-SINGLE1", "C_C-SINGLE1"]
    # the carboxyl C has 3 heavy neighbours: every heavy atom is its own motif
    assert keys_of(motif, 0) == ["O", "C", "C", "O", "O", "C", "C", "C"]
    # ethyl benzoate rows c0 c1 c2 C3 O4 O5 C6 C7 c8 c9 c10, then 10 H
    heavy = keys_of(motif, 1)[:11]
    assert heavy == [BENZENE] * 3 + ["C", "O", "O", "CC", "CC"] + [BENZENE] * 3
    assert keys_of(motif, 2) == ["CCO"] * 9
    m = open_store(store)[1]
    for (src, dst) in m.edge_index.T:  # every hydrogen row carries its heavy neighbour's label
        if m.atomic_num[src] == 1:
            assert motif.labels(1)[src] == motif.labels(1)[dst] and ctx.labels(1)[src] == ctx.labels(1)[dst]
    assert build.mapping == {"canonical": 3, "failed": 1}  # no stored order equals its canonical SMILES order


def test_failures_are_counted_reported_and_get_other(tiny):
    store, build = tiny
    motif, fg = AtomLabels.open(store, "motif"), MoleculeLabels.open(store)
    assert not motif.valid(3) and not motif.valid(4) and motif.valid(0)
    assert motif.labels(3).tolist() == [0] * 5 and motif.labels(4).tolist() == [0] * 9  # all <other>
    assert build.reports["motif"].failures == {"atom_mapping": 1, "unparsable_smiles": 1}
    assert build.reports["functional_groups"].failures == {"unparsable_smiles": 1}
    assert not fg.valid(3) and fg.valid(4)  # molecule-level flags need no atom mapping
    with h5py.File(A.labels_path(store), "r") as f:
        rows = set(zip(f["failures/mol_index"][:].tolist(), f["failures/kind"].asstr()[:], f["failures/reason"].asstr()[:]))
    assert rows == {(3, "motif", "unparsable_smiles"), (3, "contextual", "unparsable_smiles"),
                    (3, "functional_groups", "unparsable_smiles"), (4, "motif", "atom_mapping"),
                    (4, "contextual", "atom_mapping")}
    vocab = motif.vocab
    assert vocab.failures == {"atom_mapping": 1, "unparsable_smiles": 1} and vocab.n_molecules == 5
    # coverage counts the heavy atoms of every molecule, failed ones included: 18 labelled of 22
    # (min_count 1 keeps every key, so only the 1 + 3 atoms of the failed molecules are <other>)
    assert vocab.n_atoms == 4 + 11 + 3 + 1 + 3
    assert vocab.coverage == pytest.approx(18 / 22)
    assert build.reports["motif"].coverage == pytest.approx(18 / 22)


def test_functional_group_flags_and_readers(tiny):
    store, _ = tiny
    fg = MoleculeLabels.open(store)
    assert fg.names == FUNCTIONAL_GROUP_NAMES and fg.flags(0).shape == (85,)
    named = dict(zip(fg.names, fg.flags(0).tolist()))
    assert named["fr_COO"] == 1 and named["fr_ester"] == 0
    assert dict(zip(fg.names, fg.flags(1).tolist()))["fr_ester"] == 1
    assert dict(zip(fg.names, fg.flags(4).tolist()))["fr_Al_OH"] == 1  # from the stored SMILES (methanol)
    assert fg.batch([1, 0]).tolist() == [fg.flags(1).tolist(), fg.flags(0).tolist()]
    motif = AtomLabels.open(store, "motif")
    lazy = AtomLabels.open(store, "motif", preload=False)
    assert motif.labels(1).dtype == np.int64
    for i in range(len(motif)):
        assert lazy.labels(i).tolist() == motif.labels(i).tolist()
    assert motif.batch([2, 0]).tolist() == motif.labels(2).tolist() + motif.labels(0).tolist()
    again = pickle.loads(pickle.dumps(lazy))  # DataLoader workers get a copy
    assert again.labels(1).tolist() == motif.labels(1).tolist()
    with pytest.raises(LabelsError, match="molecule-level"):
        AtomLabels.open(store, "functional_groups")
    with pytest.raises(IndexError, match="molecule 5 out of range"):
        motif.labels(5)
    with pytest.raises(IndexError, match="molecule -1 out of range"):
        fg.flags(-1)


def test_stale_missing_and_absent_kind_are_refused_with_the_rebuild_command(tmp_path):
    store = write_tiny(tmp_path / "s.h5")
    with pytest.raises(LabelsError, match=r"no label sidecar .*graphmvp-prep labels .*s\.h5 --kinds motif"):
        AtomLabels.open(store, "motif")
    build_labels(store, kinds=["motif"], min_count=1)
    with pytest.raises(LabelsError, match="has no 'contextual' labels .*--kinds contextual"):
        AtomLabels.open(store, "contextual")
    write_tiny(store, TINY[:3])  # the store is rebuilt with other content
    with pytest.raises(StaleLabelsError, match=r"another version of .*n_molecules 5 then, 3 now.*graphmvp-prep labels"):
        AtomLabels.open(store, "motif")
    build_labels(store, kinds=["motif"], min_count=1)
    assert len(AtomLabels.open(store, "motif")) == 3


def test_rebuilding_one_kind_keeps_the_others_and_a_failed_write_keeps_the_old_sidecar(tmp_path, monkeypatch):
    store = write_tiny(tmp_path / "s.h5")
    build_labels(store, kinds=["motif"], min_count=1)
    motif_before = [AtomLabels.open(store, "motif").labels(i).tolist() for i in range(5)]
    build = build_labels(store, kinds=["contextual", "functional_groups"], min_count=1)
    assert build.kept_kinds == ("motif",)
    assert [AtomLabels.open(store, "motif").labels(i).tolist() for i in range(5)] == motif_before
    AtomLabels.open(store, "contextual")
    with h5py.File(A.labels_path(store), "r") as f:  # the kept kind's failures are kept too
        assert sorted(set(f["failures/kind"].asstr()[:])) == ["contextual", "functional_groups", "motif"]
    before = A.labels_path(store).read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(A, "_write_molecule_kind", crash)
    with pytest.raises(RuntimeError):
        build_labels(store, min_count=1)
    assert A.labels_path(store).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["s.h5", "s.h5.labels.h5", "s.h5.motif_vocab.json", "s.h5.contextual_vocab.json"])


def test_workers_and_chunks_do_not_change_labels(tmp_path):
    store = write_tiny(tmp_path / "s.h5", TINY * 3)
    one = build_labels(store, min_count=2)
    a = {k: AtomLabels.open(store, k) for k in ("motif", "contextual")}
    labels_one = {k: np.concatenate([v.labels(i) for i in range(len(v))]) for k, v in a.items()}
    two = build_labels(store, min_count=2, workers=2, chunk_size=2)
    for k in ("motif", "contextual"):
        b = AtomLabels.open(store, k)
        assert b.vocab.keys == a[k].vocab.keys
        assert np.array_equal(np.concatenate([b.labels(i) for i in range(len(b))]), labels_one[k])
    assert one.mapping == two.mapping


def test_given_vocabulary_is_used_and_unseen_keys_become_other(tmp_path):
    store = write_tiny(tmp_path / "s.h5", TINY[:3])
    small = build_labels(write_tiny(tmp_path / "eth.h5", [("OCC", None)]), kinds=["motif"], min_count=1)
    vocab = small.reports["motif"].vocab
    assert vocab.keys == [OTHER, "CCO"]
    build_labels(store, kinds=["motif"], vocabs={"motif": vocab})
    motif = AtomLabels.open(store, "motif")
    assert motif.vocab.keys == [OTHER, "CCO"]
    assert motif.labels(2).tolist() == [1] * 9 and motif.labels(0).tolist() == [0] * 8
    assert not A.vocab_path(store, "motif").exists()  # a given vocabulary is not rewritten beside the store


# ------------------------------------------------------------------------------ real stores
def _direct_labels(mol: Chem.Mol, motif: AtomLabels, ctx: AtomLabels) -> tuple[list[int], list[int]]:
    """Labels computed on a molecule already in the store's heavy-atom order (no mapping)."""
    frag, keys = motif_labels(mol)
    return motif.vocab.encode([keys[f] for f in frag]).tolist(), ctx.vocab.encode(contextual_labels(mol)).tolist()


def test_geom_sample_store_labels_equal_labels_of_its_rd_mols(geom_sample, tmp_path):
    store = tmp_path / "geom.h5"
    prepare(PrepConfig(input=str(geom_sample), output=str(store)))
    build = build_labels(store, min_count=1)
    assert sum(build.reports["motif"].failures.values()) == 0
    # some GEOM rd_mols carry another aromaticity model than their SMILES: that path is checked here
    assert build.mapping.get("aromatic_tolerant", 0) > 0 and "failed" not in build.mapping
    motif, ctx = AtomLabels.open(store, "motif"), AtomLabels.open(store, "contextual")
    with open_store(store) as s:
        for i in range(len(s)):
            m = s[i]
            with open(geom_sample / m.source_id, "rb") as f:
                rd_mol = pickle.load(f)["conformers"][0]["rd_mol"]
            heavy = Chem.RWMol(Chem.RemoveHs(rd_mol))  # the store's heavy rows come first, in this order
            Chem.Kekulize(heavy, clearAromaticFlags=True)
            Chem.SanitizeMol(heavy)  # re-perceive aromaticity as from SMILES
            n = heavy.GetNumAtoms()
            assert m.atomic_num[:n].tolist() == [a.GetAtomicNum() for a in heavy.GetAtoms()]
            want_motif, want_ctx = _direct_labels(heavy, motif, ctx)
            assert motif.labels(i)[:n].tolist() == want_motif, m.smiles
            assert ctx.labels(i)[:n].tolist() == want_ctx, m.smiles
            assert (m.atomic_num[n:] == 1).all()


def _random_order(smiles: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for s in smiles:
        Chem.rdBase.SeedRandomNumberGenerator(rng.randrange(1 << 30))
        out.append(Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True, canonical=False))
    return out


def test_smiles_prepared_store_in_random_atom_order(tmp_path):
    inputs = _random_order(list(ZINC_SMILES[:5]), seed=1)
    write_smiles_csv(tmp_path / "m.csv", inputs)
    store = tmp_path / "m.h5"
    prepare(PrepConfig(input=str(tmp_path / "m.csv"), output=str(store), n_conf=1, gen_confs=1, shuffle=False))
    build = build_labels(store, min_count=1)
    assert build.mapping.get("canonical", 0) >= 3 and "failed" not in build.mapping
    motif, ctx = AtomLabels.open(store, "motif"), AtomLabels.open(store, "contextual")
    with open_store(store) as s:
        assert len(s) == 5
        for i in range(5):
            mol = Chem.MolFromSmiles(inputs[i])  # the store keeps the input's atom order (+ H)
            n = mol.GetNumAtoms()
            want_motif, want_ctx = _direct_labels(mol, motif, ctx)
            assert motif.labels(i)[:n].tolist() == want_motif and ctx.labels(i)[:n].tolist() == want_ctx


def test_many_zinc_molecules_in_random_atom_order(zinc_csv, tmp_path):
    with gzip.open(zinc_csv, "rt") as f:
        zinc = [line.split(",")[0].strip() for line in itertools.islice(f, 1, 201)]
    inputs = _random_order(zinc, seed=2)
    store = write_tiny(tmp_path / "z.h5", [(s, None) for s in inputs], hydrogens=False)
    build = build_labels(store, min_count=1)
    assert build.mapping.get("failed", 0) == 0 and build.mapping["canonical"] > 150
    motif, ctx = AtomLabels.open(store, "motif"), AtomLabels.open(store, "contextual")
    for i, smi in enumerate(inputs):
        want_motif, want_ctx = _direct_labels(Chem.MolFromSmiles(smi), motif, ctx)
        assert motif.labels(i).tolist() == want_motif and ctx.labels(i).tolist() == want_ctx


# ------------------------------------------------------------------------------ CLI
def test_cli_motifs_and_labels(tmp_path, run_cli):
    store = write_tiny(tmp_path / "s.h5")
    r = run_cli("motifs", store, "--min-count", "1")
    assert r.returncode == 0, r.stderr
    assert "motif:" in r.stdout and "coverage" in r.stdout and "molecules/s" in r.stdout
    vocab = Vocabulary.load(A.vocab_path(store, "motif"), kind="motif")
    assert vocab.min_count == 1 and vocab.keys[0] == OTHER
    AtomLabels.open(store, "motif")
    r = run_cli("labels", store, "--kinds", "contextual,functional_groups", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "kept motif" in r.stdout
    MoleculeLabels.open(store)
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles\nCCO\nCCO\nc1ccccc1\nnot_a_smiles\n")
    out = tmp_path / "v.json"
    r = run_cli("motifs", csv, "--out", out)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["keys"] == [OTHER, "CCO"] and d["failures"] == {"unparsable_smiles": 1} and d["min_count"] == 2
    assert "not labelled: mols.csv:5" in r.stdout
    r = run_cli("labels", store, "--kinds", "motif", "--motif-vocab", out)
    assert r.returncode == 0, r.stderr
    assert AtomLabels.open(store, "motif").vocab.keys == [OTHER, "CCO"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("labels", "{dir}/missing.h5"), "does not exist"),
        (("motifs", "{dir}/missing.csv"), "does not exist"),
        (("labels", "{dir}/mols.csv"), "is not a store"),
        (("labels", "{dir}/s.h5", "--kinds", "motif,bogus"), "unknown label kind 'bogus'"),
        (("motifs", "{dir}/s.h5", "--min-count", "0"), "--min-count must be >= 1"),
        (("labels", "{dir}/s.h5", "--workers", "0"), "--workers must be >= 1"),
        (("motifs", "{dir}/empty.csv"), "no molecules"),
        (("labels", "{dir}/s.h5", "--kinds", "motif", "--motif-vocab", "{dir}/mols.csv"), "not JSON"),
        (("labels", "{dir}/s.h5", "--motif-vocab", "{dir}/ctx.json"), "a contextual vocabulary, not a motif one"),
        (("labels", "{dir}/h5_not_store.h5"), "not a graphmvp conformer store"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, run_cli, args, message):
    store = write_tiny(tmp_path / "s.h5", TINY[:2])
    (tmp_path / "mols.csv").write_text("smiles\nCCO\n")
    (tmp_path / "empty.csv").write_text("smiles\n")
    with h5py.File(tmp_path / "h5_not_store.h5", "w") as f:
        f["x"] = 1
    build_labels(store, kinds=["contextual"], min_count=1)
    Vocabulary.load(A.vocab_path(store, "contextual")).save(tmp_path / "ctx.json")
    r = run_cli(*[a.format(dir=tmp_path) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphmvp-prep: error:") and message in lines[0], r.stderr
