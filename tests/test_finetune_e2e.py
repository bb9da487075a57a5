"""End to end: a tiny GraphMVP pretraining run, then ``graphmvp-finetune`` on the real FreeSolv file
(``../shared/data/freesolv.csv``) for 2 seeds; every output is written, the pretrained weights are
really loaded, a mismatched checkpoint fails cleanly, and the table command reads the runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from graphmvp.finetune.cli import main
from graphmvp.finetune.trainer import load_finetuned

SMILES = ["CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
          "OCC(O)CO", "COc1ccccc1", "CC#N", "Nc1ccccc1C(=O)O"]


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> Path:
    """GraphMVP preset (EBM-NCE + VRR, 2D + 3D), GIN 2 x 16, one epoch on 10 molecules x 2 conformers."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare
    from graphmvp.pretrain import pretrain, resolve_config

    root = tmp_path_factory.mktemp("pretrain")
    (root / "mols.csv").write_text("SMILES\n" + "\n".join(SMILES) + "\n")
    prepare(PrepConfig(input=str(root / "mols.csv"), output=str(root / "mols.h5"), n_conf=2, gen_confs=2, workers=1))
    pretrain(resolve_config("graphmvp", store=str(root / "mols.h5"), out=str(root / "run"), epochs=1, batch_size=4,
                            num_layers=2, emb_dim=16, schnet_filters=16, schnet_interactions=1, schnet_gaussians=10,
                            progress=False, threads=1))
    assert (root / "run" / "model_2d.pt").is_file()
    return root / "run"


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path_factory.getbasetemp() / "gmvp_home"))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_hydrogens_follow_the_encoders_pretraining_in_the_default_protocol_only(pretrain_run):
    """``hydrogens="pretrained"`` (the default protocol's) resolves to the pretraining run's "keep";
    the paper protocol keeps upstream's hydrogen-free graphs, and an explicit value wins."""
    from graphmvp.finetune.config import FinetuneConfig
    from graphmvp.finetune.errors import FinetuneError
    from graphmvp.finetune.trainer import encoder_of

    base = dict(data_file="x.csv", smiles_col="s", label_cols="y", task_type="regression", progress=False)
    resolved = {(protocol, init, h): FinetuneConfig(**base, protocol=protocol, init=init, hydrogens=h).resolved().hydrogens
                for protocol in ("default", "paper") for init in (None, str(pretrain_run)) for h in (None, "drop")}
    assert resolved == {("default", None, None): "drop", ("default", str(pretrain_run), None): "keep",
                        ("paper", None, None): "drop", ("paper", str(pretrain_run), None): "drop",
                        **{(p, i, "drop"): "drop" for p in ("default", "paper") for i in (None, str(pretrain_run))}}
    paper = FinetuneConfig(**base, protocol="paper", init=str(pretrain_run)).resolved()
    assert any("explicit hydrogens" in w for w in encoder_of(paper, quiet=True)[1].warnings)  # the mismatch is said
    with pytest.raises(FinetuneError, match="--hydrogens 'all': allowed: drop, keep, pretrained"):
        FinetuneConfig(**base, hydrogens="all").resolved()


def test_finetune_from_a_pretraining_run_writes_everything(freesolv, pretrain_run, tmp_path, capsys):
    out = tmp_path / "graphmvp"
    rc, stdout, stderr = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", pretrain_run,
                                 "--seeds", 0, 1, "--epochs", 3, "--batch-size", 64, "--out", out, "--threads", 1,
                                 "--no-progress")
    assert rc == 0, stderr
    assert "freesolv / graphmvp + rdkit2d: test rmse at best validation epoch" in stdout
    for name in ("config.json", "summary.json", "metrics.csv", "learning_curve.png", "skipped.tsv",
                 "seed_0/split.json", "seed_1/split.json"):
        assert (out / name).is_file(), name
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "graphmvp + rdkit2d" and summary["seeds"] == [0, 1] and summary["metric"] == "rmse"
    assert summary["dataset"]["rows"] == 642 and summary["dataset"]["molecules"] == 642
    assert summary["init"]["config"]["emb_dim"] == 16 and summary["init"]["path"].endswith("model_2d.pt")
    # the default protocol builds the graphs as the encoder was pretrained (with hydrogens): no warning
    assert summary["init"]["warnings"] == [] and summary["init"]["config"]["hydrogens"] == "keep"
    assert json.loads((out / "config.json").read_text())["config"]["hydrogens"] == "keep"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [(r["seed"], r["epoch"]) for r in rows] == [("0", "1"), ("0", "2"), ("0", "3"), ("1", "1"), ("1", "2"), ("1", "3")]
    for key in ("test_at_best_valid", "test_at_last_epoch"):
        stats = summary["result"][key]
        assert len(stats["values"]) == 2
        assert stats["mean"] == pytest.approx(sum(stats["values"]) / 2)
    for s, per_seed in zip((0, 1), summary["per_seed"]):
        seed_rows = [r for r in rows if r["seed"] == str(s)]
        best = per_seed["best_epoch"]
        valid = [float(r["valid_rmse"]) for r in seed_rows]
        assert valid[best - 1] == pytest.approx(min(valid), rel=1e-5)  # first epoch with the lowest valid RMSE
        assert per_seed["test_at_best_valid"]["rmse"] == pytest.approx(float(seed_rows[best - 1]["test_rmse"]), rel=1e-5)
        assert per_seed["test_at_last_epoch"]["rmse"] == pytest.approx(float(seed_rows[-1]["test_rmse"]), rel=1e-5)
        assert per_seed["split"]["sizes"] == {"train": 513, "valid": 64, "test": 65}
    split = json.loads((out / "seed_0" / "split.json").read_text())
    assert split == json.loads((out / "seed_1" / "split.json").read_text())  # the scaffold split is deterministic
    config = json.loads((out / "config.json").read_text())
    # the default protocol puts RDKit's descriptors beside the mean-pooled embedding for regression
    assert config["config"]["dropout"] == 0.2 and config["config"]["lr"] == 1e-3 and config["pooling"] == "mean"
    assert config["config"]["extra_features"] == "rdkit2d" and config["extra_features"]["kind"] == "rdkit2d"

    # a baseline run and the table of both
    base = tmp_path / "scratch"
    rc, _, stderr = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--num-layers", 2, "--emb-dim", 16,
                            "--seeds", 0, 1, "--epochs", 1, "--out", base, "--threads", 1, "--no-progress")
    assert rc == 0, stderr
    rc, table, _ = run_cli(capsys, "table", out, base)
    assert rc == 0
    lines = table.splitlines()
    assert lines[0].split() == ["method", "freesolv"]
    gm = summary["result"]["test_at_best_valid"]
    assert lines[2].startswith("graphmvp + rdkit2d ") and lines[2].split()[3] == f"{gm['mean']:.3f}({gm['std']:.3f})"
    assert lines[3].startswith("no pretraining + rdkit2d ")
    rc, table_last, _ = run_cli(capsys, "table", "--epoch", "last", out)
    last = summary["result"]["test_at_last_epoch"]
    assert f"{last['mean']:.3f}({last['std']:.3f})" in table_last and "last epoch" in table_last


def test_frozen_encoder_keeps_the_pretrained_weights(freesolv, pretrain_run, tmp_path, capsys):
    out = tmp_path / "probe"
    rc, _, stderr = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", pretrain_run,
                            "--freeze-encoder", "--head", "linear", "--extra-features", "none", "--save-model", "--epochs", 2,
                            "--batch-size", 128, "--out", out,
                            "--threads", 1, "--no-progress")
    assert rc == 0, stderr
    model, payload = load_finetuned(out / "seed_0" / "best_model.pt")
    pretrained = torch.load(pretrain_run / "model_2d.pt", weights_only=True)["state_dict"]
    tuned = model.state_dict()
    for key, value in pretrained.items():
        assert torch.equal(tuned[f"molecule_model.{key}"], value), key
    assert set(tuned) - {f"molecule_model.{k}" for k in pretrained} == {"graph_pred_linear.weight", "graph_pred_linear.bias"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_seed"][0]["trainable_parameters"] == 16 + 1


def test_mismatched_checkpoints_fail_before_training(freesolv, pretrain_run, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", pretrain_run,
                         "--emb-dim", 300, "--out", out)
    assert rc == 2
    assert err.count("\n") == 1 and "emb_dim=16 but 300 is required" in err
    assert not out.exists()

    # a file whose config disagrees with its weights
    bad = torch.load(pretrain_run / "model_2d.pt", weights_only=True)
    bad["config"]["num_layers"] = 5
    torch.save(bad, tmp_path / "bad.pt")
    rc, _, err = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", tmp_path / "bad.pt", "--out", out)
    assert rc == 2 and err.count("\n") == 1
    assert "num_layers=5 but the weights have layers [0, 1]" in err
    assert not out.exists()

    rc, _, err = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", tmp_path / "nothing-here", "--out", out)
    assert rc == 2 and "neither an existing file or run folder nor a released checkpoint" in err
    rc, _, err = run_cli(capsys, "--task", "tox22")
    assert rc == 2 and err.strip() == ("graphmvp-finetune: error: unknown task 'tox22'; known tasks: bace, bbbp, cep, "
                                       "clintox, davis, esol, freesolv, hiv, kiba, lipophilicity, malaria, muv, sider, "
                                       "tox21, toxcast")


def test_a_graphgps_encoder_fine_tunes_saves_and_reloads(freesolv, tmp_path, capsys):
    """Fine-tuning accepts a GraphGPS model_2d.pt, and its saved model rebuilds as GraphGPS."""
    from graphmvp.models import GraphGPS
    from graphmvp.pretrained import save_encoder_file

    gps = GraphGPS(num_layers=2, emb_dim=16, hidden_dim=8, heads=2, rwse_steps=4)
    init = tmp_path / "gps_model_2d.pt"
    save_encoder_file(init, gps.state_dict(), {**gps.config(), "encoder": "graphgps", "pooling": "mean",
                                               "hydrogens": "drop", "features": "hu-simple"})
    out = tmp_path / "gps"
    rc, _, stderr = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--init", init, "--save-model",
                            "--epochs", 1, "--batch-size", 128, "--out", out, "--threads", 1, "--no-progress")
    assert rc == 0, stderr
    model, payload = load_finetuned(out / "seed_0" / "best_model.pt")
    assert isinstance(model.molecule_model, GraphGPS) and payload["encoder_config"]["encoder"] == "graphgps"
    saved = torch.load(out / "seed_0" / "best_model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_encoder_flag_fine_tunes_a_randomly_initialised_graphgps(freesolv, tmp_path, capsys):
    """``--encoder graphgps`` without --init: the "no pretraining" GraphGPS baseline, with the
    given architecture, labelled apart from the GIN baseline, reloadable as GraphGPS."""
    from graphmvp.models import GraphGPS

    out = tmp_path / "gps-scratch"
    rc, _, stderr = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, "--encoder", "graphgps",
                            "--num-layers", 2, "--emb-dim", 16, "--gps-hidden-dim", 8, "--gps-heads", 2,
                            "--gps-attn-dropout", 0.1, "--save-model", "--epochs", 1, "--batch-size", 128,
                            "--out", out, "--threads", 1, "--no-progress")
    assert rc == 0, stderr
    model, payload = load_finetuned(out / "seed_0" / "best_model.pt")
    gps = model.molecule_model
    assert isinstance(gps, GraphGPS)
    assert (gps.config()["hidden_dim"], gps.config()["heads"], gps.config()["attn_dropout"]) == (8, 2, 0.1)
    assert gps.config()["num_layers"] == 2 and gps.config()["emb_dim"] == 16
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "no pretraining (graphgps) + rdkit2d"  # regression: the default's descriptors
    assert json.loads((out / "config.json").read_text())["config"]["encoder"] == "graphgps"


@pytest.mark.parametrize("args, message", [
    (("--encoder", "gcn"), "--encoder 'gcn': allowed: gin, graphgps"),
    (("--gps-heads", 2), "encoder 'gin' takes no heads"),
    (("--encoder", "graphgps", "--gps-hidden-dim", 10, "--gps-heads", 4), "heads"),
    (("--encoder", "graphgps", "--gps-attn-dropout", 1.5), "--gps-attn-dropout=1.5: must be in [0, 1)"),
])
def test_bad_encoder_options_fail_before_training(freesolv, tmp_path, capsys, args, message):
    rc, _, err = run_cli(capsys, "--task", "freesolv", "--data-file", freesolv, *args, "--out", tmp_path / "o",
                         "--epochs", 1, "--no-progress")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "o" / "summary.json").exists()
