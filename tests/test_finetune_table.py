"""``graphmvp-finetune table``: paper order, mean(std) formatting, Avg, missing cells, last epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphmvp.finetune.cli import main
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.table import table


def fake_run(root: Path, name: str, task: str, method: str, metric: str, best: list[float], last: list[float]) -> Path:
    run = root / name
    run.mkdir(parents=True)

    def stats(values):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return {"mean": mean, "std": std, "values": values}

    summary = {"task": task, "method": method, "metric": metric, "seeds": list(range(len(best))),
               "metrics": {metric: {"test_at_best_valid": stats(best), "test_at_last_epoch": stats(last)}}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_classification_table_with_avg_and_a_missing_cell(tmp_path):
    fake_run(tmp_path, "a", "tox21", "no pretraining", "roc_auc", [0.74, 0.76, 0.75], [0.70, 0.70, 0.70])
    fake_run(tmp_path, "b", "bbbp", "no pretraining", "roc_auc", [0.60, 0.70, 0.65], [0.6, 0.6, 0.6])
    fake_run(tmp_path, "c", "bbbp", "graphmvp", "roc_auc", [0.685, 0.685, 0.685], [0.5, 0.5, 0.5])
    text = table([str(tmp_path)])
    lines = text.splitlines()
    assert lines[0].split() == ["method", "bbbp", "tox21", "Avg"]  # paper order: BBBP before Tox21
    # no pretraining: bbbp 65.0 (std 4.08), tox21 75.0 (0.82); Avg = mean of means x 100
    assert lines[2].split() == ["no", "pretraining", "65.0(4.1)", "75.0(0.8)", "70.00"]
    assert lines[3].split() == ["graphmvp", "68.5(0.0)", "-", "-"]
    assert "ROC-AUC x100" in lines[-1] and "best-validation epoch" in lines[-1] and "3 seed(s)" in lines[-1]
    last = table([str(tmp_path)], epoch="last", fmt="csv").splitlines()
    assert last[1] == "no pretraining,60.0(0.0),70.0(0.0),65.00"


def test_mixed_metrics_get_labelled_columns_and_no_avg(tmp_path, capsys):
    r1 = fake_run(tmp_path, "x", "freesolv", "graphmvp", "rmse", [2.0, 2.2], [2.5, 2.5])
    r2 = fake_run(tmp_path, "y", "bace", "graphmvp", "roc_auc", [0.8, 0.8], [0.8, 0.8])
    rc = main(["table", "--format", "markdown", str(r1), str(r2)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0] == "| method | bace (roc_auc) | freesolv (rmse) |"
    assert out.splitlines()[2] == "| graphmvp | 80.0(0.0) | 2.100(0.100) |"


def test_table_errors(tmp_path, capsys):
    with pytest.raises(FinetuneError, match="no summary.json"):
        table([str(tmp_path)])
    run = fake_run(tmp_path, "r", "esol", "m", "rmse", [1.0], [1.0])
    with pytest.raises(FinetuneError, match="metric 'ci' not reported"):
        table([str(run)], metric="ci")
    assert main(["table", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
