"""The registry reads the real data sets of ``../shared/data``: MoleculeNet in chemprop's CSV
layout (renamed label columns) and DeepDTA's Davis/KIBA folders; tests skip with the reason when
the files are absent. Layout choice itself is checked on small files written here."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.data import TableOptions, read_table
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.problems import resolve_columns
from graphmvp.finetune.tasks import get_task
from tests.conftest import shared_file

#: file -> (task, layout the header must select, label columns, rows in the file)
MOLECULENET = {
    "bbbp": ("bbbp", "moleculenet", ["p_np"], 2039),
    "bace": ("bace", "chemprop", ["Class"], 1513),
    "clintox": ("clintox", "moleculenet", ["FDA_APPROVED", "CT_TOX"], 1478),
    "sider": ("sider", "moleculenet", None, 1427),
    "tox21": ("tox21", "moleculenet", None, 7831),
    "hiv": ("hiv", "moleculenet", ["HIV_active"], 41127),
    "esol": ("esol", "chemprop", ["logSolubility"], 1128),
    "freesolv": ("freesolv", "chemprop", ["freesolv"], 642),
    "lipo": ("lipophilicity", "chemprop", ["lipo"], 4200),
}


def _resolve(task: str, path):
    cfg = FinetuneConfig(task=task, data_file=str(path)).resolved()
    return cfg, resolve_columns(cfg.spec(), cfg, path)


@pytest.mark.parametrize("name", sorted(MOLECULENET))
def test_each_moleculenet_file_is_read_through_its_task(shared_data, name):
    task, layout, labels, rows = MOLECULENET[name]
    path = shared_file(shared_data, f"moleculenet/{name}.csv.gz")
    cfg, cols = _resolve(name, path)
    assert cfg.task == task  # "lipo" is an alias of lipophilicity
    assert cols["layout"] == layout and cols["smiles_col"] == "smiles"
    spec = get_task(task)
    table = read_table(path, TableOptions(cols["smiles_col"], cols["label_cols"] and tuple(cols["label_cols"]),
                                          spec.task_type, drop_cols=spec.drop_cols))
    assert table.num_rows == rows
    if labels is not None:
        assert table.label_names == labels
    else:
        assert len(table.label_names) == spec.num_labels or len(table.label_names) == 12  # sider 27, tox21 12
    assert table.labels.shape == (rows, len(table.label_names))
    finite = table.labels[~np.isnan(table.labels)]
    if spec.task_type == "classification":
        assert set(np.unique(finite)) == {0.0, 1.0}
    else:
        assert finite.size == rows  # regression sets have no missing labels


def test_the_original_layout_is_still_chosen_for_original_files(tmp_path):
    path = tmp_path / "delaney-processed.csv"
    path.write_text("Compound ID,measured log solubility in mols per litre,smiles\nethanol,1.1,CCO\nbenzene,-1.6,c1ccccc1\n")
    _, cols = _resolve("esol", path)
    assert cols == {"layout": "moleculenet", "smiles_col": "smiles",
                    "label_cols": ["measured log solubility in mols per litre"]}


def test_given_columns_win_over_the_layout(tmp_path):
    path = tmp_path / "esol.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("smiles,logSolubility,other\nCCO,1.1,3\nc1ccccc1,-1.6,4\n")
    cfg = FinetuneConfig(task="esol", data_file=str(path), label_cols="other").resolved()
    cols = resolve_columns(cfg.spec(), cfg, path)
    assert cols == {"layout": "chemprop", "smiles_col": "smiles", "label_cols": ["other"]}


def test_a_file_fitting_no_layout_names_every_layout(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES,y\nCCO,1\n")
    with pytest.raises(FinetuneError) as err:
        _resolve("freesolv", path)
    msg = str(err.value)
    assert "x.csv" in msg and "'expt'" in msg and "'freesolv'" in msg and "--label-cols" in msg


def test_the_run_summary_names_the_columns_it_read(shared_data, tmp_path, capsys):
    from graphmvp.finetune.cli import main

    path = shared_file(shared_data, "moleculenet/freesolv.csv.gz")
    out = tmp_path / "run"
    assert main(["--task", "freesolv", "--data-file", str(path), "--epochs", "1", "--threads", "1",
                 "--out", str(out), "--no-cache"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["columns"] == {"layout": "chemprop", "smiles_col": "smiles", "label_cols": ["freesolv"]}
    assert summary["dataset"]["molecules"] == 642


@pytest.mark.parametrize("name,drugs,proteins,pairs,train_fold", [
    ("davis", 68, 442, 30056, 5010),
    ("kiba", 2111, 229, 118254, 19709),
])
def test_deepdta_folders_are_read_with_their_folds(shared_data, name, drugs, proteins, pairs, train_fold):
    from graphmvp.finetune.dta import load_deepdta

    folder = shared_file(shared_data, f"dta/{name}/Y").parent
    data = load_deepdta(folder, get_task(name).label_transform, name=name)
    assert (len(data.drug_ids), len(data.protein_ids), data.num_pairs) == (drugs, proteins, pairs)
    assert len(data.train_folds) == 5 and data.train_folds[0].shape[0] == train_fold
    fold_pairs = np.concatenate([*data.train_folds, data.test_fold])
    assert np.unique(fold_pairs).shape[0] == fold_pairs.shape[0] <= pairs  # folds are disjoint
    if name == "davis":  # pKd = -log10(Kd / 1e9): Kd 10,000 nM (no binding) is 5.0
        assert np.isclose(data.pair_label.min(), 5.0) and data.pair_label.max() < 11
