"""benchmarks/release_pretraining.py: each method trains once (a rerun skips a finished run and
resumes an unfinished one), its figures are copied into the repository as they come, and a
finished run is released as a float16 manifest entry with its data card."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

SMILES = ["CCO", "CCN", "CCC(=O)O", "c1ccccc1O", "CC(C)N", "OCCO", "CC#N", "C1CCNCC1"]
TINY = "--emb-dim 16 --num-layers 2 --batch-size 4 --log-every 1000"


@pytest.fixture(scope="module")
def driver():
    return load_benchmark("release_pretraining")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    root = tmp_path_factory.mktemp("corpus")
    (root / "mols.csv").write_text("SMILES\n" + "\n".join(SMILES) + "\n")
    prepare(PrepConfig(input=str(root / "mols.csv"), output=str(root / "mols.h5"), n_conf=2, gen_confs=2, workers=1),
            command=["graphmvp-prep", "run", "mols.csv", "-o", "mols.h5"])
    return root / "mols.h5"


def test_train_skip_and_release(driver, corpus, tmp_path):
    work, figures, manifest = tmp_path / "work", tmp_path / "figures", tmp_path / "ck" / "manifest.json"
    manifest.parent.mkdir()
    base = ["--store", str(corpus), "--work", str(work), "--epochs", "1", "--threads", "1",
            "--methods", "attrmask", "--figures", str(figures), "--poll", "0.2", "--extra", TINY]
    assert driver.main(base) == 0
    with open(figures / "attrmask.metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and float(rows[0]["loss_attrmask"]) > 0
    status = (figures / "STATUS.md").read_text()
    assert "| AttrMask | 1 |" in status and "GraphMVP" not in status  # only the methods asked for
    assert driver.main(["--work", str(work), "--figures", str(figures), "--status"]) == 0  # no --methods: all five
    status = (figures / "STATUS.md").read_text()
    assert "| AttrMask | 1 |" in status and "| GraphMVP | 0 |" in status
    log = (work / "attrmask.stdout.log").read_text()
    assert driver.main(base) == 0  # finished: not trained again
    assert (work / "attrmask.stdout.log").read_text() == log

    # two epochs asked for now: the run resumes from last.pt instead of starting over
    assert driver.main([*base[:4], "--epochs", "2", *base[6:]]) == 0
    with open(work / "attrmask" / "metrics.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]

    assert driver.main([*base, "--release", "--manifest", str(manifest), "--name-suffix", "tiny"]) == 0
    entry = {e["name"]: e for e in json.loads(manifest.read_text())["checkpoints"]}["attrmask-tiny"]
    assert (manifest.parent / "attrmask-tiny.pt").stat().st_size == entry["size"]
    recipe = entry["recipe"]
    assert recipe["weights_dtype"] == "float16" and recipe["epochs_done"] == 2
    assert "8 ZINC" in recipe["data"] or "8 ZINC" in entry["description"]
    assert any(c.startswith("graphmvp-pretrain --preset attrmask") for c in recipe["command"])
    # the data card describes the corpus as the store recorded it: 2 conformers generated and kept
    assert "each with up to 2 RDKit conformers (ETKDGv3 + MMFF94, all 2 generated" in recipe["data"]
    assert recipe["command"][0] == "graphmvp-prep run mols.csv -o mols.h5"  # the argv the store recorded

    from graphmvp.pretrained import load_encoder_file

    model, config = load_encoder_file(manifest.parent / "attrmask-tiny.pt")
    assert config["emb_dim"] == 16 and config["num_layers"] == 2
