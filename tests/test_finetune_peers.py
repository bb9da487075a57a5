"""The baselines of ``graphmvp.finetune.peers``: the Tanimoto kernel against hand-computed values, the
split identity with the trainer's ``seed_<s>/split.json``, RF and SVR beating a mean predictor
on real ESOL molecules, per-task handling of missing labels, and chemprop's CLI on 60 molecules
(skipped where scikit-learn / chemprop are not installed: they are the ``[bench]`` extra)."""

from __future__ import annotations

import gzip
import importlib.util
import json

import numpy as np
import pytest

from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.metrics import rmse
from graphmvp.finetune.peers import PEERS, PeerData, PeerPredictions, ecfp4, peer_data, run_peer, score_peer, tanimoto_kernel
from conftest import shared_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed (pip install graphmvp[bench])")
needs_chemprop = pytest.mark.skipif(importlib.util.find_spec("chemprop") is None,
                                    reason="chemprop is not installed (pip install graphmvp[bench])")


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path_factory.getbasetemp() / "gmvp_home"))


def test_tanimoto_kernel_matches_hand_computed_values():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]])
    b = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    k = tanimoto_kernel(a, b)
    # row 0: identical; {0,1} vs {1,2}: 1/3; vs empty: 0/2
    # row 1: {0,2,3} vs {0,1}: 1/4; vs {1,2}: 1/4; vs empty: 0/3
    # row 2: empty vs {0,1}: 0; vs {1,2}: 0; vs empty: identical (1)
    expected = [[1, 1 / 3, 0], [1 / 4, 1 / 4, 0], [0, 0, 1]]
    np.testing.assert_allclose(k, expected, rtol=0, atol=1e-12)


def test_ecfp4_is_morgan_radius_2_and_names_a_bad_smiles():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    fp = ecfp4(["c1ccccc1O", "CCN"])
    assert fp.shape == (2, 2048) and fp.dtype == np.uint8
    ref = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles("c1ccccc1O"), 2, nBits=2048)
    assert sorted(np.flatnonzero(fp[0])) == sorted(ref.GetOnBits())
    with pytest.raises(FinetuneError, match=r"molecule 1 \('C1CC'\)"):
        ecfp4(["CCO", "C1CC"])


def _esol_config(shared_data, tmp_path, **kw) -> FinetuneConfig:
    path = shared_file(shared_data, "moleculenet/esol.csv.gz")
    return FinetuneConfig(data_file=str(path), smiles_col="smiles", label_cols="logSolubility", task_type="regression",
                          out=str(tmp_path / "run"), progress=False, threads=1, **kw)


def test_peer_data_is_the_trainers_split(shared_data, tmp_path):
    """The rows of each part equal those the trainer writes to seed_<s>/split.json."""
    from graphmvp.finetune.trainer import finetune

    cfg = _esol_config(shared_data, tmp_path, split="random", seeds=(3,), epochs=1, num_layers=1, emb_dim=8)
    finetune(cfg)
    split = json.loads((tmp_path / "run" / "seed_3" / "split.json").read_text())
    with gzip.open(cfg.data_file, "rt") as f:
        lines = f.read().splitlines()[1:]
    rows_smiles = [line.split(",")[0] for line in lines]
    data = peer_data(cfg, seed=3)
    from rdkit.Chem import CanonSmiles

    for part in ("train", "valid", "test"):  # the data set keeps RDKit's canonical SMILES
        assert [CanonSmiles(s) for s in data.smiles[part]] == [CanonSmiles(rows_smiles[r]) for r in split[f"{part}_rows"]]
        labels = [float(lines[r].split(",")[1]) for r in split[f"{part}_rows"]]
        np.testing.assert_array_equal(data.labels[part][:, 0], np.float32(labels))  # float32, as the trainer


def _small_esol(shared_data, tmp_path) -> PeerData:
    data = peer_data(_esol_config(shared_data, tmp_path, split="random"), seed=0)
    keep = {"train": 300, "valid": 60, "test": 100}
    return PeerData({p: data.smiles[p][:n] for p, n in keep.items()},
                    {p: data.labels[p][:n] for p, n in keep.items()}, "regression", "esol-small")


@needs_sklearn
@pytest.mark.parametrize("peer", ["ecfp4_rf", "ecfp4_svm"])
def test_fingerprint_peers_beat_the_mean_predictor(shared_data, tmp_path, peer):
    data = _small_esol(shared_data, tmp_path)
    options = {"n_trees": 50} if peer == "ecfp4_rf" else {}
    preds = run_peer(peer, data, seed=0, **options)
    scores = score_peer(data, preds)
    mean_rmse = rmse(data.labels["test"], np.full_like(data.labels["test"], data.labels["train"].mean()))
    assert scores["test"]["rmse"] < 0.8 * mean_rmse
    assert preds.test.shape == data.labels["test"].shape and preds.valid.shape == data.labels["valid"].shape


def _toy_multitask() -> PeerData:
    smiles = ["CCO", "CCCO", "CCCCO", "c1ccccc1", "c1ccccc1C", "c1ccccc1CC", "CCN", "CCCN", "c1ccncc1", "Cc1ccncc1"]
    aromatic = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1], dtype=float)
    y = np.stack([aromatic, np.full(10, np.nan), 1 - aromatic], axis=1)
    y[[0, 3], 2] = np.nan                      # task 2: missing labels on two rows
    y[:6, 1] = [0, 0, 0, 0, 0, 0]              # task 1: one class only in train
    tr, va, te = slice(0, 6), slice(6, 8), slice(8, 10)
    y_train = y[tr]
    valid_y = np.array([[0, np.nan, 1], [0, np.nan, 1]])
    test_y = np.array([[1, np.nan, 0], [1, np.nan, 0]])
    return PeerData({"train": smiles[tr], "valid": smiles[va], "test": smiles[te]},
                    {"train": y_train, "valid": valid_y, "test": test_y}, "classification", "toy")


@needs_sklearn
@pytest.mark.parametrize("peer", ["ecfp4_rf", "ecfp4_svm"])
def test_multitask_classification_with_missing_labels(peer):
    data = _toy_multitask()
    options = {"n_trees": 20} if peer == "ecfp4_rf" else {}
    preds = run_peer(peer, data, seed=0, **options)
    assert preds.test.shape == (2, 3)
    # task 1 had a single class in train: a constant prediction, recorded
    assert preds.info["tasks"][1] == {"task": 1, "constant": 0.0}
    scores = score_peer(data, preds)
    # test: tasks 0 and 2 have one class each in test -> ROC-AUC undefined -> NaN mean
    assert np.isnan(scores["test"]["roc_auc"])


def test_metric_averages_tasks_with_both_classes_like_the_trainer():
    y = np.array([[0, 1, np.nan], [1, 1, 0], [1, 1, 1], [0, 1, np.nan]], dtype=float)
    pred = np.array([[0.1, 0.5, 0.0], [0.9, 0.2, 0.2], [0.4, 0.3, 0.9], [0.2, 0.4, 0.0]])
    data = PeerData({p: ["C"] * 4 for p in ("train", "valid", "test")}, {p: y for p in ("train", "valid", "test")},
                    "classification")
    scores = score_peer(data, PeerPredictions(pred, pred))
    # task 0: positives 0.9, 0.4 vs negatives 0.1, 0.2 -> 1.0; task 1 single class -> skipped; task 2: 1.0
    assert scores["test"]["roc_auc"] == pytest.approx(1.0)


def test_unknown_peer_and_missing_extra_messages(monkeypatch):
    with pytest.raises(FinetuneError, match="unknown peer 'xgb'; known: chemprop, ecfp4_rf, ecfp4_svm"):
        run_peer("xgb", _toy_multitask(), 0)
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # "not installed": import raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    with pytest.raises(FinetuneError, match=r"pip install graphmvp\[bench\]"):
        run_peer("ecfp4_rf", _toy_multitask(), 0)


def test_bad_peer_data_is_refused():
    with pytest.raises(FinetuneError, match="2 train SMILES but 3 label rows"):
        PeerData({"train": ["C", "CC"], "valid": ["C"], "test": ["C"]},
                 {"train": np.zeros(3), "valid": np.zeros(1), "test": np.zeros(1)}, "regression")
    with pytest.raises(FinetuneError, match="not 'dta'"):
        PeerData({p: ["C"] for p in ("train", "valid", "test")}, {p: np.zeros(1) for p in ("train", "valid", "test")},
                 "dta")


def test_chemprop_predictions_that_diverged_are_a_clear_error(tmp_path):
    """chemprop writes a NaN prediction as an empty cell (seen with rdkit_2d on CHEMBL1871): that is
    a one-line error naming the file, the first molecule and the log, not a float() traceback."""
    from graphmvp.finetune.peers import _read_predictions

    path = tmp_path / "valid_predictions.csv"
    path.write_text("smiles,task_0\nCCO,1.5\nc1ccccc1,-0.25\n")
    assert _read_predictions(path, 2, ["task_0"]).tolist() == [[1.5], [-0.25]]
    path.write_text("smiles,task_0\nCCO,1.5\nc1ccccc1,\nCCN,\n")
    with pytest.raises(FinetuneError, match=r"no prediction for 2 of 3 molecules \(first: line 3, c1ccccc1\); "
                                            r"chemprop's model gave NaN, it diverged \(log: .*chemprop.log\)"):
        _read_predictions(path, 3, ["task_0"])
    path.write_text("smiles,task_0\nCCO,abc\n")
    with pytest.raises(FinetuneError, match="a prediction is not a number"):
        _read_predictions(path, 1, ["task_0"])


@needs_chemprop
def test_chemprop_runs_on_our_split(shared_data, tmp_path):
    """60 ESOL molecules, 3 epochs (chemprop needs more than its 2 warm-up epochs): predictions for every valid/test molecule, finite RMSE."""
    data = _small_esol(shared_data, tmp_path)
    keep = {"train": 40, "valid": 10, "test": 10}
    small = PeerData({p: data.smiles[p][:n] for p, n in keep.items()},
                     {p: data.labels[p][:n] for p, n in keep.items()}, "regression", "esol-60")
    preds = run_peer("chemprop", small, seed=0, epochs=3, work_dir=str(tmp_path / "cp"))
    assert preds.valid.shape == (10, 1) and preds.test.shape == (10, 1)
    assert np.isfinite(score_peer(small, preds)["test"]["rmse"])
    # chemprop used our parts (rows 0-39 / 40-49 / 50-59 of its file) and its own test predictions equal ours
    parts = json.loads((tmp_path / "cp" / "model" / "splits.json").read_text())[0]
    assert (parts["train"], parts["val"], parts["test"]) == (list(range(40)), list(range(40, 50)), list(range(50, 60)))
    with open(tmp_path / "cp" / "model" / "model_0" / "test_predictions.csv") as f:
        own = [float(line.split(",")[1]) for line in f.read().splitlines()[1:]]
    np.testing.assert_allclose(preds.test[:, 0], own, rtol=1e-6)
    assert sorted(PEERS.names()) == ["chemprop", "ecfp4_rf", "ecfp4_svm"]
