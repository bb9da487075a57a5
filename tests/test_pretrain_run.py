"""Pretraining runs on a tiny store: the loss goes down, every output is written, resume gives the
same weights as an uninterrupted run, the variants run, a NaN stops the run with its message."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import graphmvp.demo as demo_module
from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.models import GIN
from graphmvp.objectives import EBMNCE, AttributeMasking
from graphmvp.pretrain import (
    ENCODER_FORMAT,
    ConfigError,
    GraphMVPModel,
    NonFiniteLossError,
    dataset_options,
    epoch_batches,
    pretrain,
    resolve_config,
)
from graphmvp.pretrain.cli import main

SMILES = [
    "CCO",
    "CC(=O)O",
    "c1ccccc1O",
    "CC(=O)Nc1ccc(O)cc1",
    "CCN(CC)CC",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "OCC(O)CO",
    "COc1ccccc1",
    "CC#N",
    "Nc1ccccc1C(=O)O",
]

#: tiny models: GIN 2 x 16, SchNet 16 wide with one interaction
TINY = dict(
    batch_size=4,
    num_layers=2,
    emb_dim=16,
    schnet_filters=16,
    schnet_interactions=1,
    schnet_gaussians=10,
    progress=False,
    log_every=1000,
    threads=1,
    deterministic=True,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """10 small molecules with 2 RDKit conformers each (explicit H) = 20 samples."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    root = tmp_path_factory.mktemp("pretrain_store")
    csv_path = root / "mols.csv"
    csv_path.write_text("SMILES\n" + "\n".join(SMILES) + "\n")
    path = root / "mols.h5"
    prepare(PrepConfig(input=str(csv_path), output=str(path), n_conf=2, gen_confs=2, workers=1))
    return path


def config(store: Path, out: Path, preset=None, **kw):
    return resolve_config(preset, store=str(store), out=str(out), **{**TINY, **kw})


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"]


# -- the main run ----------------------------------------------------------------------------------
def test_two_epochs_reduce_the_loss_and_write_every_output(store, tmp_path):
    out = tmp_path / "run"
    result = pretrain(config(store, out, views="2d3d", loss="ebm-nce+vrr", epochs=2, lr=5e-3, seed=0))

    assert result.epochs_done == 2 and result.global_step == 10  # 20 samples / batch 4, 2 epochs
    losses = [row["loss_total"] for row in result.metrics]
    assert losses[1] < losses[0], losses

    for name in ("config.yaml", "model_2d.pt", "best_model_2d.pt", "last.pt", "metrics.csv", "train.log", "loss_curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no temporary files left

    # the exported encoder: plain types only, keys of a fresh GIN of that size, loads strictly
    export = torch.load(out / "model_2d.pt", weights_only=True)
    assert export["format"] == ENCODER_FORMAT
    fresh = GIN(num_layers=2, emb_dim=16)
    assert list(export["state_dict"]) == list(fresh.state_dict())
    fresh.load_state_dict(export["state_dict"])
    c = export["config"]
    assert (c["encoder"], c["num_layers"], c["emb_dim"], c["pooling"]) == ("gin", 2, 16, "mean")
    assert c["hydrogens"] == "keep" and c["features"] == "hu-simple"
    # model_2d.pt is the GIN inside last.pt after the last epoch
    state = model_state(out)
    for k, v in export["state_dict"].items():
        assert torch.equal(v, state[f"encoder_2d.{k}"])
    # best = the epoch with the lowest training loss (here the last one)
    best = torch.load(out / "best_model_2d.pt", weights_only=True)
    assert best["epoch"] == 2 == result.best_epoch
    assert best["loss"] == pytest.approx(min(losses))

    rows = read_metrics(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for col in ("loss_ebm_nce", "loss_vrr", "loss_total", "acc_2d_3d", "acc_3d_2d", "samples_per_s", "seconds"):
        assert col in rows[0], col
    for r in rows:  # total = 1 * ebm-nce + 1 * vrr (epoch means of per-batch values)
        assert float(r["loss_total"]) == pytest.approx(float(r["loss_ebm_nce"]) + float(r["loss_vrr"]), rel=1e-5)
        assert 0.0 <= float(r["acc_2d_3d"]) <= 1.0 and int(r["samples"]) == 20

    # last.pt holds the complete state and loads with weights_only
    full = torch.load(out / "last.pt", weights_only=True)
    assert full["epochs_done"] == 2 and full["global_step"] == 10 and len(full["metrics"]) == 2
    assert any(k.startswith("encoder_3d.") for k in full["model"])
    assert any(k.startswith("objectives.generative.to_2d.") for k in full["model"])
    assert {"torch", "numpy", "python"} <= set(full["rng"]) and full["optimizer"]["state"]

    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["loss"] == ["ebm-nce", "vrr"] and saved["store"] == str(store) and saved["alpha1"] == 1.0
    log = (out / "train.log").read_text()
    assert "epoch 2/2" in log and str(store) in log
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_total_is_the_weighted_sum_of_terms_on_pooled_encoder_outputs(store):
    cfg = resolve_config(store=str(store), out="unused", loss="ebm-nce+vrr+attrmask", alpha1=0.3, alpha2=2.0,
                         alpha3=0.7, **{k: TINY[k] for k in ("num_layers", "emb_dim", "schnet_filters",
                                                             "schnet_interactions", "schnet_gaussians")})
    torch.manual_seed(0)
    model = GraphMVPModel(cfg).train()
    with ConformerStore(store) as s:
        dataset = PretrainDataset(s, mask_ratio=0.15, seed=3, **dataset_options(cfg))
    batch = collate([dataset[i] for i in range(6)])
    out = model(batch)
    terms = out.terms
    assert set(terms) == {"ebm-nce", "vrr", "attrmask"}
    expected = 0.3 * terms["ebm-nce"] + 2.0 * terms["vrr"] + 0.7 * terms["attrmask"]
    assert torch.allclose(out.total, expected)

    # the compared vectors: per-molecule means of the GIN and SchNet node outputs, no head
    sizes = batch.graph_2d.batch_num_nodes().tolist()
    h2d = model.encoder_2d(batch.graph_2d)
    h3d = model.encoder_3d(batch.graph_3d)
    z2d = torch.stack([part.mean(0) for part in torch.split(h2d, sizes)])
    z3d = torch.stack([part.mean(0) for part in torch.split(h3d, sizes)])
    reference = EBMNCE(temperature=cfg.temperature, normalize=True)(z2d, z3d)[0]
    assert torch.allclose(terms["ebm-nce"], reference, atol=1e-6)

    # AttrMask: a second GIN pass over the masked atom features of the same graph
    head: AttributeMasking = model.objectives["2d"]
    masked_reps = model.encoder_2d(batch.graph_2d, atom=batch.attrmask_atom)
    assert not torch.equal(batch.attrmask_atom, batch.graph_2d.ndata["atom"])
    reference = head(masked_reps, batch.attrmask_index, batch.attrmask_label)[0]
    assert torch.allclose(terms["attrmask"], reference, atol=1e-6)


def test_parameter_groups_scale_schnet_and_the_3d_to_2d_model(store):
    cfg = resolve_config(store=str(store), out="unused", lr=2e-3, schnet_lr_scale=0.1, to2d_lr_scale=0.25,
                         **{k: TINY[k] for k in ("num_layers", "emb_dim", "schnet_filters", "schnet_interactions",
                                                 "schnet_gaussians")})
    model = GraphMVPModel(cfg)
    groups = {g["name"]: g for g in model.parameter_groups(cfg.lr, cfg.schnet_lr_scale, cfg.to2d_lr_scale)}
    assert {k: g["lr"] for k, g in groups.items()} == pytest.approx(
        {"gin": 2e-3, "schnet": 2e-4, "to_2d": 5e-4, "heads": 2e-3}
    )

    def ids(params):
        return {id(p) for p in params}

    assert ids(groups["gin"]["params"]) == ids(model.encoder_2d.parameters())
    assert ids(groups["schnet"]["params"]) == ids(model.encoder_3d.parameters())
    assert ids(groups["to_2d"]["params"]) == ids(model.objectives["generative"].to_2d.parameters())
    assert ids(groups["heads"]["params"]) == ids(model.objectives["generative"].to_3d.parameters())
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_epoch_batches_are_seeded_and_drop_a_single_trailing_sample():
    a = epoch_batches(21, 4, seed=1, epoch=0)
    assert a == epoch_batches(21, 4, seed=1, epoch=0)
    assert a != epoch_batches(21, 4, seed=1, epoch=1) and a != epoch_batches(21, 4, seed=2, epoch=0)
    assert [len(b) for b in a] == [4, 4, 4, 4, 4]  # the 21st sample alone would break batch norm
    assert sorted(i for b in epoch_batches(22, 4, 1, 0) for i in b) == list(range(22))


# -- resume ----------------------------------------------------------------------------------------
def assert_same_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_reproduces_the_uninterrupted_run(store, tmp_path):
    full = pretrain(config(store, tmp_path / "full", epochs=2, seed=5))
    first = pretrain(config(store, tmp_path / "cut", epochs=1, seed=5))
    assert first.epochs_done == 1
    resumed = pretrain(config(store, tmp_path / "cut", epochs=2, seed=5, resume=True))
    assert resumed.epochs_done == 2 and resumed.global_step == full.global_step
    assert_same_states(model_state(tmp_path / "full"), model_state(tmp_path / "cut"))
    a = torch.load(tmp_path / "full" / "model_2d.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "model_2d.pt", weights_only=True)["state_dict"]
    assert_same_states(a, b)
    assert [r["loss_total"] for r in resumed.metrics] == [r["loss_total"] for r in full.metrics]
    assert len(read_metrics(tmp_path / "cut" / "metrics.csv")) == 2
    assert "resumed from" in (tmp_path / "cut" / "train.log").read_text()


def test_dataloader_workers_do_not_change_the_weights(store, tmp_path):
    pretrain(config(store, tmp_path / "w0", epochs=2, max_steps=7, num_workers=0))
    pretrain(config(store, tmp_path / "w2", epochs=2, max_steps=7, num_workers=2))
    assert_same_states(model_state(tmp_path / "w0"), model_state(tmp_path / "w2"))


def test_resume_refuses_changed_options(store, tmp_path, capsys):
    pretrain(config(store, tmp_path / "run", epochs=1))
    code = main(["--store", str(store), "--out", str(tmp_path / "run"), "--resume", "--epochs", "2",
                 "--num-layers", "2", "--emb-dim", "16", "--schnet-filters", "16", "--schnet-interactions", "1",
                 "--schnet-gaussians", "10", "--batch-size", "4", "--lr", "0.01"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "options differ" in err[0] and "lr 0.001 -> 0.01" in err[0]


def test_resume_after_killing_a_real_run(store, tmp_path):
    epochs = 6
    argv = ["--store", str(store), "--out", str(tmp_path / "killed"), "--epochs", str(epochs), "--seed", "7",
            "--batch-size", "4", "--num-layers", "2", "--emb-dim", "16", "--schnet-filters", "16",
            "--schnet-interactions", "1", "--schnet-gaussians", "10", "--threads", "1", "--deterministic",
            "--no-progress", "--log-every", "1000"]
    proc = subprocess.Popen([sys.executable, "-m", "graphmvp.pretrain.cli", *argv], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    try:
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert last.exists(), "the run wrote no checkpoint"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = torch.load(last, weights_only=True)["epochs_done"]
    assert 1 <= done < epochs, f"the run was not interrupted (epochs done: {done})"

    resumed = pretrain(config(store, tmp_path / "killed", epochs=epochs, seed=7, resume=True))
    pretrain(config(store, tmp_path / "full", epochs=epochs, seed=7))
    assert resumed.epochs_done == epochs and [r["epoch"] for r in resumed.metrics] == list(range(1, epochs + 1))
    assert_same_states(model_state(tmp_path / "full"), model_state(tmp_path / "killed"))


# -- variants ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "preset, extra, terms",
    [
        ("graphmvp-g", {}, {"ebm-nce", "vrr", "attrmask"}),
        ("graphmvp-c", {}, {"ebm-nce", "vrr", "contextpred"}),
        ("attrmask", {}, {"attrmask"}),
        ("contextpred", {}, {"contextpred"}),
        (None, {"loss": "infonce+rr"}, {"infonce", "rr"}),
        (None, {"loss": "ebm-nce", "conformer_sampling": "random", "neg_samples": 2, "pooling": "sum"}, {"ebm-nce"}),
    ],
)
def test_variants_run_with_finite_losses(store, tmp_path, preset, extra, terms):
    result = pretrain(config(store, tmp_path / "run", preset, epochs=2, max_steps=3, **extra))
    assert result.global_step == 3 and result.stopped_at_max_steps
    row = result.metrics[-1]
    assert {k[5:].replace("_", "-") for k in row if k.startswith("loss_") and k != "loss_total"} == terms
    for key, value in row.items():
        if key.startswith(("loss_", "acc_")):
            assert value == value and abs(value) != float("inf"), (key, value)
    state = model_state(tmp_path / "run")
    has_3d = any(k.startswith("encoder_3d.") for k in state)
    assert has_3d == (result.config.views == "2d3d")  # no 3D encoder for 2D-only pretraining
    export = torch.load(tmp_path / "run" / "model_2d.pt", weights_only=True)
    assert list(export["state_dict"]) == list(GIN(num_layers=2, emb_dim=16).state_dict())


# -- NaN -----------------------------------------------------------------------------------------------
def nan_after(monkeypatch, calls_before_nan: int) -> None:
    """Make EBM-NCE return NaN from its (calls_before_nan + 1)-th call on."""
    original = EBMNCE.forward
    count = {"n": 0}

    def forward(self, z2d, z3d):
        loss, metrics = original(self, z2d, z3d)
        count["n"] += 1
        if count["n"] > calls_before_nan:
            loss = loss * float("nan")
        return loss, metrics

    monkeypatch.setattr(EBMNCE, "forward", forward)


def test_nan_loss_stops_with_epoch_step_molecules_and_no_checkpoint(store, tmp_path, monkeypatch):
    nan_after(monkeypatch, 0)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(config(store, out, epochs=2))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("non-finite loss at epoch 1 step 1 (global step 1): ebm-nce=nan, vrr=")
    assert "last good checkpoint: none (no epoch finished yet)" in message
    batch = epoch_batches(20, 4, seed=0, epoch=0)[0]  # samples = (molecule, conformer) pairs, 2 per molecule
    with ConformerStore(store) as s:
        for sample in batch:
            assert f"{sample // 2}:{s.smiles(sample // 2)}" in message
    assert "non-finite loss" in (out / "train.log").read_text()
    assert not (out / "last.pt").exists()


def test_nan_in_a_later_epoch_names_the_last_checkpoint_and_exits_1(store, tmp_path, monkeypatch, capsys):
    nan_after(monkeypatch, 6)  # epoch 1 has 5 steps: NaN at epoch 2, step 2
    out = tmp_path / "run"
    code = main(["--store", str(store), "--out", str(out), "--epochs", "3", "--batch-size", "4", "--num-layers", "2",
                 "--emb-dim", "16", "--schnet-filters", "16", "--schnet-interactions", "1", "--schnet-gaussians", "10",
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("graphmvp-pretrain: error: non-finite loss at epoch 2 step 2 (global step 7)")
    assert err[-1].endswith(f"last good checkpoint: {out / 'last.pt'}")
    assert torch.load(out / "last.pt", weights_only=True)["epochs_done"] == 1


# -- default data --------------------------------------------------------------------------------------
def test_without_store_the_demo_store_is_prepared_next_to_the_run_and_reused(tmp_path, monkeypatch):
    smiles = tmp_path / "demo.csv"
    smiles.write_text("SMILES\nCCO\nCC(=O)O\nc1ccccc1O\nCCN\n")
    monkeypatch.setattr(demo_module, "demo_smiles_path", lambda: smiles)
    runs = tmp_path / "runs"
    kw = {**TINY, "epochs": 1, "max_steps": 1}
    with pytest.raises(ConfigError, match="no store given"):  # the library prepares nothing unasked
        pretrain(resolve_config(out=str(runs / "a"), **kw))
    assert not runs.exists()
    pretrain(resolve_config(out=str(runs / "a"), **kw), store_provider=demo_module.DemoStore())
    demo = runs / "demo_conformers.h5"
    with ConformerStore(demo) as s:
        assert len(s) == 4 and s.hydrogens == "keep" and s.has_positions
    assert "prepared it now" in (runs / "a" / "train.log").read_text()
    mtime = demo.stat().st_mtime_ns
    result = pretrain(resolve_config(out=str(runs / "b"), **kw), store_provider=demo_module.DemoStore())
    assert demo.stat().st_mtime_ns == mtime
    assert "reusing the existing file" in (runs / "b" / "train.log").read_text()
    assert result.config.store == str(demo)


# -- process-wide settings belong to the command line ----------------------------------------------------
def test_the_library_leaves_the_process_alone_and_the_command_line_tunes_malloc(store, tmp_path):
    """pretrain() neither imports the demo layer nor changes glibc's malloc; graphmvp-pretrain does
    the latter (its --malloc-tuning default). A fresh process, so no other test has tuned it."""
    tiny = ["--batch-size", "4", "--num-layers", "2", "--emb-dim", "16", "--schnet-filters", "16",
            "--schnet-interactions", "1", "--schnet-gaussians", "10", "--no-progress", "--epochs", "1", "--max-steps", "1"]
    code = f"""
import sys
import graphmvp.pretrain.trainer
assert "graphmvp.demo" not in sys.modules, "the trainer imports the demo layer"
from graphmvp import malloc_tuning
from graphmvp.pretrain import pretrain, resolve_config
pretrain(resolve_config(store={str(store)!r}, out={str(tmp_path / "lib")!r}, epochs=1, max_steps=1, **{TINY!r}))
assert not malloc_tuning.malloc_tuned(), "pretrain() tuned malloc"
log = open({str(tmp_path / "lib" / "train.log")!r}).read()
assert "malloc tuning: not applied in this process" in log, log
from graphmvp.pretrain.cli import main
assert main(["--store", {str(store)!r}, "--out", {str(tmp_path / "cli")!r}, *{tiny!r}]) == 0
assert malloc_tuning.malloc_tuned() == sys.platform.startswith("linux")
assert main(["--store", {str(store)!r}, "--out", {str(tmp_path / "cli_fused")!r}, "--schnet-impl", "fused", *{tiny!r}]) == 0
if sys.platform.startswith("linux"):  # a whole-edge SchNet path: its [E, F] tensors are mapped, not heaped
    assert malloc_tuning.applied_mmap_threshold() == malloc_tuning.WHOLE_EDGE_MMAP_THRESHOLD == 32 * 2**20
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]
    if sys.platform.startswith("linux"):
        assert "malloc tuning (glibc: mmap threshold 64 MiB, heap trimmed above 256 MiB free): applied" in (
            tmp_path / "cli" / "train.log").read_text()
        assert "malloc tuning (glibc: mmap threshold 32 MiB, heap trimmed above 256 MiB free): applied" in (
            tmp_path / "cli_fused" / "train.log").read_text()
