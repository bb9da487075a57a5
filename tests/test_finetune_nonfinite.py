"""No silent NaN: a non-finite prediction fails its seed (exit 1, one line naming seed and epoch),
a non-finite score is never taken for a task without both classes, and a seed whose metric is
NaN is never left out of the mean over seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from graphmvp.finetune.cli import main
from graphmvp.finetune.metrics import compute_metrics, multitask_roc_auc, roc_auc
from graphmvp.finetune.problems import MoleculeProblem
from graphmvp.finetune.table import table
from graphmvp.finetune.trainer import _stats
from geom_fixture import ZINC_SMILES

NAN = float("nan")


def test_a_nan_score_is_an_error_not_a_single_class_task():
    with pytest.raises(ValueError, match="non-finite scores"):
        roc_auc([0, 1, 1, 0], [0.1, NAN, 0.3, 0.2])
    labels = np.array([[0, 1], [1, 0], [0, 1], [1, 0]], dtype=float)
    scores = np.array([[0.1, 0.2], [0.9, np.inf], [0.2, 0.1], [0.8, 0.3]])
    with pytest.raises(ValueError, match="non-finite"):
        multitask_roc_auc(labels, scores)
    with pytest.raises(ValueError, match="non-finite"):
        compute_metrics(["roc_auc"], labels, scores)
    # a task without both classes is still skipped (the protocol), with finite scores
    assert multitask_roc_auc(np.array([[0, 1], [0, 0], [0, 1]], float), np.array([[0.1, 0.2], [0.2, 0.1], [0.3, 0.3]])).evaluated == 1


def test_a_nan_seed_is_never_dropped_from_the_mean():
    ok = _stats([0.7, 0.8], [0, 1])
    assert ok["mean"] == pytest.approx(0.75) and "nonfinite_seeds" not in ok
    bad = _stats([0.7, NAN, 0.9], [0, 1, 2])
    assert math.isnan(bad["mean"]) and math.isnan(bad["std"]) and bad["nonfinite_seeds"] == [1]
    assert math.isnan(bad["values"][1])


def test_the_table_marks_a_run_with_a_nonfinite_seed(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    stats = _stats([0.7, NAN, 0.9], [0, 1, 2])
    (run / "summary.json").write_text(json.dumps({"task": "bbbp", "method": "m", "metric": "roc_auc", "seeds": [0, 1, 2],
                                                  "metrics": {"roc_auc": {"test_at_best_valid": stats}}}))
    text = table([str(run)])
    assert "nan(1/3 seeds)" in text and "80.0" not in text


@pytest.fixture
def csv_task(tmp_path):
    rows = ["smiles,y"] + [f"{s},{i % 2}" for i, s in enumerate(ZINC_SMILES * 3)]
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("bad", [NAN, np.inf])
def test_a_nonfinite_prediction_fails_the_seed_with_one_line(csv_task, tmp_path, capsys, monkeypatch, bad):
    real = MoleculeProblem.predict
    calls = {"n": 0}

    def diverging(self, model, indices, batch_size, cache, key):
        out = real(self, model, indices, batch_size, cache, key)
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 (valid, test) is fine, epoch 2 diverges
            out[0, 0] = bad
        return out

    monkeypatch.setattr(MoleculeProblem, "predict", diverging)
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    rc = main(["--data-file", str(csv_task), "--smiles-col", "smiles", "--label-cols", "y", "--task-type",
               "classification", "--split", "random", "--epochs", "3", "--num-layers", "2", "--emb-dim", "8",
               "--out", str(out), "--threads", "1", "--no-progress", "--seeds", "5"])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and "seed 5, epoch 2" in err and "NaN/inf" in err, err
    assert not (out / "summary.json").exists()
