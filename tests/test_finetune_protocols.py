"""Protocols fill unset options (an explicit option always wins) and are recorded in config.json;
the lr schedules against hand-computed factors; early stopping stops and says when."""

from __future__ import annotations

import json
import math

import pytest
import torch

from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.protocols import SCHEDULES, make_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = ["CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "OCC(O)CO", "COc1ccccc1", "CC#N",
          "Nc1ccccc1C(=O)O", "CCCCCC", "c1ccncc1", "CC(C)O"]


def test_paper_protocol_resolves_to_upstream_values():
    c = FinetuneConfig(task="esol", protocol="paper").resolved()
    assert (c.batch_size, c.lr, c.epochs, c.dropout, c.head, c.standardize, c.lr_schedule, c.warmup_epochs,
            c.patience, c.grad_clip, c.weight_decay, c.encoder_lr_scale) == (
        256, 1e-3, 100, 0.2, "linear", False, "constant", 0.0, 0, 0.0, 0.0, 1.0)


def test_default_protocol_and_explicit_options_win():
    c = FinetuneConfig(task="esol").resolved()
    assert c.protocol == "default"
    assert (c.batch_size, c.head, c.standardize, c.lr_schedule, c.warmup_epochs, c.patience) == (
        32, "mlp", True, "noam", 2.0, 30)
    c = FinetuneConfig(task="esol", batch_size=64, head="linear", standardize=False, patience=0).resolved()
    assert (c.batch_size, c.head, c.standardize, c.patience) == (64, "linear", False, 0)
    assert FinetuneConfig(task="bbbp").resolved().standardize is False          # classification: never
    assert FinetuneConfig(task="bbbp").resolved().pooling is None               # classification: the encoder's
    assert FinetuneConfig(task="esol", pooling="sum").resolved().pooling == "sum"
    assert FinetuneConfig(task="esol", protocol="paper").resolved().pooling is None
    dta = FinetuneConfig(task="davis").resolved()                             # DTA keeps the paper protocol
    assert (dta.batch_size, dta.head, dta.lr_schedule) == (256, "linear", "constant")


def test_default_protocol_extra_features_for_regression_only():
    """Regression: RDKit descriptors beside a mean-pooled embedding; classification, DTA and the
    paper protocol: none; "none" turns them off explicitly and survives a second resolution."""
    def extra(**kw):
        c = FinetuneConfig(**kw).resolved()
        return c.extra_features, c.extra_kind, c.pooling

    assert extra(task="esol") == ("rdkit2d", "rdkit2d", "mean")
    assert extra(task="bbbp") == ("none", None, None)
    assert extra(task="davis") == ("none", None, None)
    assert extra(task="esol", protocol="paper") == ("none", None, None)
    assert extra(task="esol", extra_features="none") == ("none", None, "mean")
    assert extra(task="esol", extra_features="morgan", pooling="sum") == ("morgan", "morgan", "sum")
    assert extra(task="bbbp", extra_features="rdkit2d") == ("rdkit2d", "rdkit2d", None)
    off = FinetuneConfig(task="esol", extra_features="none").resolved()
    assert FinetuneConfig.from_dict(off.to_dict()).resolved().extra_kind is None  # a recorded config keeps its meaning
    with pytest.raises(FinetuneError, match="--extra-features 'maccs': allowed: morgan, rdkit2d, none"):
        FinetuneConfig(task="esol", extra_features="maccs").resolved()
    with pytest.raises(FinetuneError, match="applies to molecule tasks, not to DTA"):
        FinetuneConfig(task="davis", extra_features="rdkit2d").resolved()


@pytest.mark.parametrize("kw, message", [
    ({"protocol": "fast"}, "--protocol 'fast': allowed: default, paper"),
    ({"lr_schedule": "step"}, "--lr-schedule 'step': allowed: constant, cosine, noam"),
    ({"patience": -1}, "--patience=-1: must be an integer >= 0"),
    ({"grad_clip": -1.0}, "--grad-clip=-1.0: must be a non-negative number"),
])
def test_bad_protocol_options(kw, message):
    with pytest.raises(FinetuneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FinetuneConfig(task="esol", **kw).resolved()


def test_noam_and_cosine_factors_by_hand():
    noam, cosine = SCHEDULES.get("noam"), SCHEDULES.get("cosine")
    # 4 steps per epoch, 10 epochs, 2 warm-up epochs: warm-up steps 0..7 from 0.1 to 1, then 32 decay steps
    assert noam(0, 4, 10, 2.0) == pytest.approx(0.1)
    assert noam(4, 4, 10, 2.0) == pytest.approx(0.1 + 0.9 * 4 / 8)
    assert noam(8, 4, 10, 2.0) == pytest.approx(1.0)
    assert noam(24, 4, 10, 2.0) == pytest.approx(0.1 ** 0.5)
    assert noam(40, 4, 10, 2.0) == pytest.approx(0.1)
    assert cosine(8, 4, 10, 2.0) == pytest.approx(1.0)
    assert cosine(24, 4, 10, 2.0) == pytest.approx(0.5)
    assert cosine(40, 4, 10, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert SCHEDULES.get("constant") is None


def test_scheduler_scales_every_group():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 5e-4}])
    sched = make_scheduler("noam", opt, 2, 5, 1.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 5e-5])
    for _ in range(2):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 5e-4])
    assert make_scheduler("constant", opt, 2, 5, 1.0) is None


def test_early_stopping_and_config_json(tmp_path, monkeypatch):
    from graphmvp.finetune.trainer import finetune

    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    rows = ["smiles,y"] + [f"{s},{i % 3}" for i, s in enumerate(SMILES)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cfg = FinetuneConfig(data_file=str(tmp_path / "d.csv"), smiles_col="smiles", label_cols="y", task_type="regression",
                         split="random", epochs=40, lr=1e-6, patience=2, num_layers=1, emb_dim=8, out=str(tmp_path / "r"),
                         progress=False, threads=1, use_cache=False, grad_clip=1.0,
                         pooling="mean")  # at lr 1e-6 a sum-pooled validation RMSE still creeps down
    summary = finetune(cfg)
    per = summary["per_seed"][0]
    assert per["epochs_trained"] < 40 and per["stopped_early"] == per["epochs_trained"]
    assert per["epochs_trained"] - per["best_epoch"] == 2
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert {k: recorded[k] for k in ("protocol", "batch_size", "head", "standardize", "lr_schedule", "warmup_epochs",
                                      "patience", "grad_clip")} == {
        "protocol": "default", "batch_size": 32, "head": "mlp", "standardize": True, "lr_schedule": "noam",
        "warmup_epochs": 2.0, "patience": 2, "grad_clip": 1.0}
    assert summary["protocol"]["name"] == "default" and not math.isnan(summary["result"]["test_at_best_valid"]["mean"])
