"""benchmarks/finetune_vs_peers.py: a result is identified by (data set, method, init, seed), so a
rerun resumes and a new --init is a new column rather than being mixed with the old one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from graphmvp.finetune.config import FinetuneConfig
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("finetune_vs_peers")


def test_results_resume_per_unit_and_keep_inits_apart(bench, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "freesolv.csv.gz").write_bytes(b"")  # only its presence is checked before the methods run
    calls = []

    def fake(scratch_value):
        def run(ds, seed, args, work):
            calls.append((ds.name, seed, args.init))
            value = scratch_value + seed + (10.0 if args.init == "ckpt-b" else 0.0)
            return {"valid": {"rmse": value}, "test": {"rmse": value}, "seconds": 1.0}
        return run

    monkeypatch.setitem(bench.METHODS._items, "gin-default-pretrained", fake(1.0))
    monkeypatch.setitem(bench.METHODS._items, "ecfp4_svm", fake(3.0))
    common = ["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--data-dir", str(data),
              "--datasets", "freesolv", "--methods", "ecfp4_svm", "gin-default-pretrained", "--seeds", "0", "1",
              "--table-results", ""]
    assert bench.main([*common, "--init", "ckpt-a"]) == 0
    assert len(calls) == 4
    assert bench.main([*common, "--init", "ckpt-a"]) == 0
    assert len(calls) == 4  # every unit done: nothing runs again
    assert bench.main([*common, "--init", "ckpt-b"]) == 0
    assert calls[4:] == [("freesolv", 0, "ckpt-b"), ("freesolv", 1, "ckpt-b")]  # the peer does not depend on it
    rows = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert {(r["method"], r["init"]) for r in rows} == {("ecfp4_svm", None), ("gin-default-pretrained", "ckpt-a"),
                                                        ("gin-default-pretrained", "ckpt-b")}
    table = (tmp_path / "r" / "RESULTS.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| data"))
    assert header == "| data (metric) | ecfp4_svm | gin-default-pretrained (ckpt-a) | gin-default-pretrained (ckpt-b) |"
    assert "| freesolv (rmse) | 3.500 (0.500) n=2, 1 s | 1.500 (0.500) n=2, 1 s | 11.500 (0.500) n=2, 1 s |" in table
    # two processes that both finished a unit: the later copy is ignored
    duplicate = dict(rows[0], test={"rmse": 100.0})
    assert bench.markdown([*rows, duplicate]) == bench.markdown(rows)


def test_chemprops_hu_featurisers_encode_exactly_what_the_gin_sees():
    """The architecture study's chemprop inputs carry the same information as Hu et al.'s integer
    features, atom by atom and bond by bond, on a molecule with chirality and bond directions."""
    from rdkit import Chem

    from graphmvp.features import atom_features, bond_features

    hu = load_benchmark("chemprop_hu_features")
    mol = Chem.MolFromSmiles("F/C=C/[C@H](Cl)c1ccc[nH]1.[Na+]")
    _, atoms = atom_features(mol)
    _, bonds = bond_features(mol)
    af, bf = hu.HuAtomFeaturizer(), hu.HuBondFeaturizer()
    assert len(af) == 124 and len(bf) == 8
    for atom in mol.GetAtoms():
        x = af(atom)
        assert x.sum() == 2 and x.shape == (124,)
        assert np.flatnonzero(x).tolist() == [atoms[atom.GetIdx(), 0], 120 + atoms[atom.GetIdx(), 1]]
    for bond in mol.GetBonds():
        x = bf(bond)
        assert np.flatnonzero(x).tolist() == [1 + bonds[2 * bond.GetIdx(), 0], 5 + bonds[2 * bond.GetIdx(), 1]]
    assert bonds[:, 1].max() > 0 and atoms[:, 1].max() > 0  # the molecule exercises both
    assert bf(None).tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and not af(None).any()


def test_units_of_the_papers_table_are_taken_only_when_they_are_the_same_computation(bench, shared_data, tmp_path,
                                                                                     monkeypatch):
    """A gin-paper unit is taken from the table's results when its recorded config equals ours in
    every option that decides the numbers; one other option (lr) and it is run here. A peer is taken
    when its split sizes equal ours."""
    table = tmp_path / "table"
    args = argparse.Namespace(table_results=str(table), init="ckpt", data_dir=str(shared_data / "moleculenet"))
    ds = bench.bench_set("freesolv", args, tmp_path)
    ours = ds.config(protocol="paper", seeds=(0,)).resolved().to_dict()
    record = {"config": {k: v for k, v in dict(ours, task="freesolv", label_cols=None, smiles_col=None, out="x").items()
                         if k != "graph_features"},  # recorded before the option existed
              "valid_at_best": {"rmse": 1.0}, "test_at_best_valid": {"rmse": 2.0}, "test_at_last_epoch": {"rmse": 3.0},
              "best_epoch": 7, "seconds": 5.0}
    unit = table / "freesolv" / "no_pretraining" / "seed0.json"
    unit.parent.mkdir(parents=True)
    unit.write_text(json.dumps(record))
    got = bench.borrow(ds, "gin-paper-scratch", 0, args)
    assert got == {"valid": {"rmse": 1.0}, "test": {"rmse": 2.0}, "test_last": {"rmse": 3.0}, "best_epoch": 7,
                   "seconds": 5.0, "source": str(unit)}
    assert bench.borrow(ds, "gin-default-scratch", 0, args) is None  # the table runs the paper protocol only
    assert bench.borrow(ds, "gin-paper-scratch", 1, args) is None  # no such unit
    assert bench.main(["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--data-dir", args.data_dir,
                       "--table-results", str(table), "--datasets", "freesolv", "--methods", "gin-paper-scratch",
                       "ecfp4_svm", "--seeds", "0", "--borrow-only"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert [(r["method"], r["test"], r["source"]) for r in rows] == [("gin-paper-scratch", {"rmse": 2.0}, str(unit))]
    unit.write_text(json.dumps(dict(record, config=dict(record["config"], lr=0.01))))
    assert bench.borrow(ds, "gin-paper-scratch", 0, args) is None

    peer = table / "freesolv" / "ecfp4_rf" / "seed0.json"
    peer.parent.mkdir(parents=True)
    sizes = {"train": 513, "valid": 64, "test": 65}  # FreeSolv's scaffold split (642 molecules)
    peer.write_text(json.dumps({**{k: v for k, v in record.items() if k != "config"}, "split_sizes": sizes}))
    assert bench.borrow(ds, "ecfp4_rf", 0, args)["test"] == {"rmse": 2.0}
    peer.write_text(json.dumps({**{k: v for k, v in record.items() if k != "config"}, "split_sizes": dict(sizes, test=64)}))
    assert bench.borrow(ds, "ecfp4_rf", 0, args) is None


def test_row_names_keep_their_meaning_when_the_default_protocol_moves(bench, tmp_path, monkeypatch):
    """A ``gin-default-*`` row on a regression set runs what the default protocol did when it was
    recorded (sum pooling, no extra features, hydrogen-free graphs) unless its name says otherwise;
    on a classification set it leaves pooling and extra features to the protocol."""
    import graphmvp.finetune.trainer as trainer

    seen = {}

    def fake_finetune(cfg):
        r = cfg.resolved()
        seen[(Path(cfg.data_file).name, Path(cfg.out).name)] = (r.pooling, r.extra_kind, r.hydrogens)
        per = {"valid_at_best": {}, "test_at_best_valid": {}, "test_at_last_epoch": {}, "best_epoch": 1}
        return {"per_seed": [per]}

    monkeypatch.setattr(trainer, "finetune", fake_finetune)
    args = argparse.Namespace(init=None, threads=1)
    regression = bench.BenchSet("freesolv", tmp_path / "freesolv.csv", "y", "regression")
    classification = bench.BenchSet("bbbp", tmp_path / "bbbp.csv", "y", "classification")
    for ds in (regression, classification):
        for method in ("gin-default-scratch", "gin-default-mean-rdkit2d-scratch", "gin-default-keeph-scratch"):
            bench.METHODS.get(method)(ds, 0, args, tmp_path)
    assert seen == {
        ("freesolv.csv", "gin-default-scratch-s0"): ("sum", None, "drop"),
        ("freesolv.csv", "gin-default-mean-rdkit2d-scratch-s0"): ("mean", "rdkit2d", "drop"),
        ("freesolv.csv", "gin-default-keep-scratch-s0"): ("sum", None, "keep"),
        ("bbbp.csv", "gin-default-scratch-s0"): (None, None, "drop"),
        ("bbbp.csv", "gin-default-mean-rdkit2d-scratch-s0"): ("mean", "rdkit2d", "drop"),
        ("bbbp.csv", "gin-default-keep-scratch-s0"): (None, None, "keep"),
    }
    default = FinetuneConfig(task="freesolv").resolved()  # the protocol's own choice is the mean-rdkit2d row's
    assert (default.pooling, default.extra_kind, default.hydrogens) == ("mean", "rdkit2d", "drop")
