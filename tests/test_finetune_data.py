"""Reading, featurising and caching downstream data; bad input fails with one-line errors."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest
from rdkit import Chem

import graphmvp.finetune.data as data_module
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.data import (
    TableOptions,
    chem_dataset_processed_count,
    find_in_chem_dataset,
    load_dataset,
    read_table,
)
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.tasks import get_task
from graphmvp.features import graph_features

CSV = (
    "id,smiles,a,b,note\n"
    "m0,CCO,1,,x\n"
    "m1,c1ccccc1O,0,1,y\n"
    "m2,C1CC,1,0,unclosed ring\n"
    "m3,CC(=O)O,,0,z\n"
    "m4,,1,1,empty smiles\n"
    "m5,C[C@H](N)C(=O)O,0,nan,w\n"
)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def opts(**kw) -> TableOptions:
    base = dict(smiles_col="smiles", label_cols=("a", "b"), task_type="classification")
    return TableOptions(**{**base, **kw})


def test_csv_labels_missing_cells_and_skipped_rows(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(CSV)
    ds = load_dataset(path, opts())
    assert ds.num_rows == 6 and len(ds) == 4
    assert ds.row_index.tolist() == [0, 1, 3, 5]  # rows 2 (bad SMILES) and 4 (empty) left out
    assert [(s.candidate_index, s.reason) for s in ds.skipped] == [(2, "unparsable_smiles"), (4, "empty_molecule")]
    assert ds.skipped[0].smiles == "C1CC"
    expected = np.array([[1, np.nan], [0, 1], [np.nan, 0], [0, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(ds.labels, expected)
    assert ds.label_names == ["a", "b"]
    # graphs: heavy atoms only, the Hu et al. features of RDKit's molecule, chirality kept
    ala = Chem.MolFromSmiles("C[C@H](N)C(=O)O")
    ref = graph_features(ala)
    g = ds.graphs[3]
    assert g.num_atoms == 6
    np.testing.assert_array_equal(g.atom_features, ref.atom_features)
    np.testing.assert_array_equal(g.edge_index, ref.edge_index)
    assert ds.smiles[3] == Chem.MolToSmiles(ala)
    summary = ds.summary()
    assert summary["skipped"] == 2 and summary["skipped_by_reason"] == {"empty_molecule": 1, "unparsable_smiles": 1}
    graph, y = ds.batch([0, 3])
    assert graph.batch_size == 2 and graph.num_nodes() == 3 + 6
    assert tuple(y.shape) == (2, 2)


def test_hydrogens_keep_adds_explicit_hydrogens(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(CSV)
    drop = load_dataset(path, opts())
    keep = load_dataset(path, opts(hydrogens="keep"))
    assert keep.store_path != drop.store_path  # part of the cache key
    assert [g.num_atoms for g in drop.graphs] == [3, 7, 4, 6]
    assert [g.num_atoms for g in keep.graphs] == [9, 13, 8, 13]  # CCO: C2H6O; phenol C6H6O; AcOH; Ala C3H7NO2
    assert keep.smiles == drop.smiles
    assert keep.graphs[0].atom_features[:, 0].tolist() == [5, 5, 7, 0, 0, 0, 0, 0, 0]  # Z - 1: C C O H x6


def test_gzipped_csv_reads_like_the_plain_file(tmp_path):
    plain, gz = tmp_path / "mine.csv", tmp_path / "mine.csv.gz"
    plain.write_text(CSV)
    gz.write_bytes(gzip.compress(CSV.encode()))
    a, b = load_dataset(plain, opts()), load_dataset(gz, opts())
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.smiles == b.smiles and a.row_index.tolist() == b.row_index.tolist()


def test_sdf_with_properties_as_labels(tmp_path):
    path = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(path))
    for smi, value in [("CCO", "1.5"), ("c1ccccc1", None), ("CC(=O)N", "-2")]:
        mol = Chem.MolFromSmiles(smi)
        if value is not None:
            mol.SetProp("logS", value)
        mol.SetProp("name", smi)
        writer.write(mol)
    writer.close()
    ds = load_dataset(path, TableOptions(smiles_col=None, label_cols=("logS",), task_type="regression"))
    assert len(ds) == 3
    np.testing.assert_array_equal(ds.labels[:, 0], np.array([1.5, np.nan, -2.0], dtype=np.float32))
    assert ds.smiles == ["CCO", "c1ccccc1", "CC(N)=O"]


def test_cache_is_reused_and_keyed_by_content_and_options(tmp_path, monkeypatch, home):
    path = tmp_path / "mine.csv"
    path.write_text(CSV)
    first = load_dataset(path, opts())
    assert first.store_path.parent == home / "featurised" and first.store_path.is_file()

    def boom(*a, **k):
        raise AssertionError("featurised again although the cache holds the data set")

    with monkeypatch.context() as m:
        m.setattr(data_module, "featurise_table", boom)
        again = load_dataset(path, opts())
    assert again.store_path == first.store_path
    np.testing.assert_array_equal(again.labels, first.labels)
    assert [s.candidate_index for s in again.skipped] == [2, 4]
    assert again.row_index.tolist() == first.row_index.tolist()
    other_opts = load_dataset(path, opts(label_cols=("a",)))
    assert other_opts.store_path != first.store_path and other_opts.num_tasks == 1
    path.write_text(CSV.replace("m0,CCO,1", "m0,CCO,0"))
    changed = load_dataset(path, opts())
    assert changed.store_path != first.store_path and changed.labels[0, 0] == 0


def test_one_bad_smiles_in_many_is_a_warning(tmp_path, caplog):
    rows = [f"{'C' * (i % 20 + 1)}O,{i % 3}.5" for i in range(2000)]
    rows[1234] = "not_a_smiles,1.0"
    path = tmp_path / "big.csv"
    path.write_text("smiles,y\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="graphmvp.finetune.data"):
        ds = load_dataset(path, TableOptions(smiles_col="smiles", label_cols=("y",), task_type="regression"))
    assert len(ds) == 1999 and [s.candidate_index for s in ds.skipped] == [1234]
    assert 1234 not in ds.row_index.tolist()
    assert any("1 of 2000 rows skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content, options, message",
    [
        ("smi,a\nCCO,1\n", {}, "SMILES column 'smiles' not found; columns: 'smi', 'a'"),
        ("smiles,a\nCCO,1\n", {}, "label column(s) 'b' not found; columns: 'smiles', 'a'"),
        ("smiles,a,b\nCCO,1,0\nCCN,yes,1\n", {}, "label column 'a', row 1: 'yes' is not a number"),
        ("smiles,a,b\nCCO,1,0\nCCN,2,1\n", {}, "label column 'a', row 1: '2' is not a class"),
        ("smiles,a,b\nxx,1,0\nC1C,0,1\n", {}, "none of its 2 rows is a valid molecule"),
        ("smiles,a,b\nCCO,,\nCCN,,\n", {}, "no molecule has a label"),
    ],
)
def test_bad_input_fails_with_one_line(tmp_path, content, options, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FinetuneError) as err:
        load_dataset(path, opts(**options))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_errors_before_any_work():
    with pytest.raises(FinetuneError, match="unknown task 'tox22'; known tasks: bace, bbbp"):
        FinetuneConfig(task="tox22").resolved()
    with pytest.raises(FinetuneError, match="--task-type is required"):
        FinetuneConfig(data_file="x.csv", label_cols="a").resolved()
    with pytest.raises(FinetuneError, match="--label-cols is required"):
        FinetuneConfig(data_file="x.csv", task_type="regression", smiles_col="s").resolved()
    with pytest.raises(FinetuneError, match="contradicts task 'esol'"):
        FinetuneConfig(task="esol", task_type="classification").resolved()
    with pytest.raises(FinetuneError, match="--seeds"):
        FinetuneConfig(task="esol", seeds=(0, 0)).resolved()


def test_protocol_defaults_per_task_type():
    cls = FinetuneConfig(task="tox21", protocol="paper").resolved()
    reg = FinetuneConfig(task="esol").resolved()
    dta = FinetuneConfig(task="davis").resolved()
    assert (cls.dropout, cls.epochs, cls.lr, cls.batch_size, cls.split) == (0.5, 100, 1e-3, 256, "scaffold")
    assert (reg.dropout, reg.epochs, reg.lr) == (0.2, 100, 1e-3)
    assert (dta.dropout, dta.epochs, dta.lr, dta.split) == (0.2, 200, 5e-4, "deepdta_folds")
    # a task's columns come from the layout its file's header fits (resolve_columns), not the config
    assert cls.label_cols is None and cls.smiles_col is None
    own = FinetuneConfig(data_file="my.csv", smiles_col="s", label_cols="a, b", task_type="regression",
                         split_col="fold").resolved()
    assert own.label_cols == ("a", "b") and own.split == "column" and own.task_name == "my"


def test_hu_chem_dataset_layout(tmp_path):
    root = tmp_path / "chem_dataset"
    raw = root / "dataset" / "bbbp" / "raw"
    raw.mkdir(parents=True)
    (raw / "BBBP.csv").write_text("num,name,p_np,smiles\n1,a,1,CCO\n2,b,0,c1ccccc1\n3,c,1,CCN\n")
    processed = raw.parent / "processed"
    processed.mkdir()
    (processed / "smiles.csv").write_text("CCO\nc1ccccc1\nCCN\n")
    spec = get_task("bbbp")
    path = find_in_chem_dataset(root, spec)
    assert path == raw / "BBBP.csv"
    assert chem_dataset_processed_count(path) == 3
    table = read_table(path, TableOptions(spec.smiles_col, spec.label_cols, spec.task_type, spec.drop_cols))
    assert table.labels[:, 0].tolist() == [1, 0, 1]
    with pytest.raises(FinetuneError, match="no raw file of task 'tox21'"):
        find_in_chem_dataset(root, get_task("tox21"))
