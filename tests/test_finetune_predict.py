"""``graphmvp-finetune predict``: a saved model reproduces the trainer's own test predictions (in
label units, standardisation undone), a run folder is an ensemble with per-member spread, and bad
input fails with a one-line message."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from graphmvp.finetune.cli import main
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.trainer import finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = ["CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OCC(O)CO", "COc1ccccc1", "CC#N",
          "Nc1ccccc1C(=O)O", "CCCCCC", "c1ccncc1", "CC(C)O"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    rows = ["smiles,y"] + [f"{s},{10 + i}" for i, s in enumerate(SMILES)]
    (root / "d.csv").write_text("\n".join(rows) + "\n")
    cfg = FinetuneConfig(data_file=str(root / "d.csv"), smiles_col="smiles", label_cols="y", task_type="regression",
                         split="random", epochs=3, num_layers=1, emb_dim=8, seeds=(0, 1), out=str(root / "run"),
                         save_model=True, progress=False, threads=1, use_cache=False)
    summary = finetune(cfg)
    return root, summary


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_single_model_reproduces_the_test_rmse_in_label_units(run, capsys):
    root, summary = run
    split = json.loads((root / "run" / "seed_0" / "split.json").read_text())
    test_smiles = [SMILES[r] for r in split["test_rows"]] + ["not a smiles"]
    (root / "new.csv").write_text("smiles\n" + "\n".join(test_smiles) + "\n")
    assert main(["predict", str(root / "run" / "seed_0" / "best_model.pt"), "--data-file", str(root / "new.csv"),
                 "--out", str(root / "p.csv")]) == 0
    rows = read(root / "p.csv")
    assert list(rows[0]) == ["row", "smiles", "y", "skipped"]
    pred = np.array([float(r["y"]) for r in rows[:-1]])
    labels = np.array([10 + r for r in split["test_rows"]])
    expected = summary["per_seed"][0]["test_at_best_valid"]["rmse"]
    assert np.sqrt(np.mean((pred - labels) ** 2)) == pytest.approx(expected, rel=1e-4)
    assert rows[-1]["y"] == "" and rows[-1]["skipped"]


def test_run_folder_is_an_ensemble_with_spread(run):
    root, _ = run
    (root / "two.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    assert main(["predict", str(root / "run"), "--data-file", str(root / "two.csv"), "--out", str(root / "e.csv")]) == 0
    rows = read(root / "e.csv")
    assert list(rows[0]) == ["row", "smiles", "y", "y_std", "y_seed_0", "y_seed_1", "skipped"]
    for r in rows:
        members = np.array([float(r["y_seed_0"]), float(r["y_seed_1"])])
        assert float(r["y"]) == pytest.approx(members.mean(), rel=1e-5)
        # the CSV holds 6 significant digits: members of magnitude ~1-10 carry up to 5e-5 of rounding
        assert float(r["y_std"]) == pytest.approx(members.std(), rel=1e-4, abs=5e-5)


@pytest.mark.parametrize("args, message", [
    (["predict", "MISSING", "--data-file", "x.csv"], "MISSING: no such model file or run folder"),
])
def test_bad_input(args, message, capsys, tmp_path):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_column_and_empty_run_folder(run, capsys, tmp_path):
    root, _ = run
    assert main(["predict", str(root / "run"), "--data-file", str(root / "d.csv"), "--smiles-col", "SMI"]) == 2
    assert "no column 'SMI'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--data-file", str(root / "d.csv")]) == 2
    assert "no seed_*/best_model.pt" in capsys.readouterr().err
