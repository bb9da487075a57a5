"""``--protocol paper`` is today's (upstream's) fine-tuning: two tiny runs (GIN 2 x 16, 3 epochs,
batch 4, one thread, seeds 0 and 1) must give the best epochs and, to float32 rounding across CPUs,
the validation and test metrics recorded with the trainer before the protocols existed (commit
e968164). A change in batching,
initialisation order, optimiser, head, pooling or selection moves these numbers."""

from __future__ import annotations

import pytest
import torch

from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.trainer import finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = ["CCO", "CC(=O)O", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
          "OCC(O)CO", "COc1ccccc1", "CC#N", "Nc1ccccc1C(=O)O", "CCCCCC", "c1ccncc1", "CC(C)O", "ClCCl", "CCOC(=O)C",
          "c1ccc2ccccc2c1", "CN1CCCC1", "OC(=O)CCC(=O)O", "CCS", "FC(F)(F)c1ccccc1"]

#: what selects today's behaviour (empty before protocols existed)
PAPER: dict = {"protocol": "paper"}

CASES = {
    "regression": dict(label_cols="y", task_type="regression", standardize=True, head="mlp", weight_decay=1e-4,
                       encoder_lr_scale=0.5),
    "classification": dict(label_cols="c", task_type="classification", split_fractions=(0.6, 0.2, 0.2)),
}

#: per seed: (valid at best, test at best, test at last epoch) of the primary metric, and best epoch
EXPECTED = {
    "regression": [(1, 0.4089259993044376, 0.578214370842044, 0.5783952813639157),
                   (1, 0.18500022229861837, 0.501641648465067, 0.46278096371625466)],
    "classification": [(1, 0.6666666666666666, 0.6666666666666666, 1.0), (1, 0.0, 0.5, 0.5)],
}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))


def run_case(tmp_path, name: str) -> list:
    rows = ["smiles,y,c"] + [f"{s},{(i * 0.37) % 2 - 1:.3f},{i % 2}" for i, s in enumerate(SMILES)]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n")
    cfg = FinetuneConfig(data_file=str(tmp_path / "tiny.csv"), smiles_col="smiles", split="random", epochs=3,
                         batch_size=4, num_layers=2, emb_dim=16, seeds=(0, 1), out=str(tmp_path / name),
                         progress=False, threads=1, use_cache=False, **CASES[name], **PAPER)
    summary = finetune(cfg)
    metric = summary["metric"]
    return [(s["best_epoch"], s["valid_at_best"][metric], s["test_at_best_valid"][metric],
             s["test_at_last_epoch"][metric]) for s in summary["per_seed"]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_paper_protocol_is_bit_identical_to_the_original_trainer(tmp_path, name):
    assert torch.get_num_threads() == 1
    got = run_case(tmp_path, name)
    # the best epochs exactly; the metrics to float32 rounding grown over 15 steps: torch's CPU
    # kernels differ between instruction sets (recorded on one machine, an AVX-512/AMX one gives
    # the regression case's metrics 1.3e-7 (seed 0) and 9.3e-5 (seed 1) apart), while a change of
    # batching, initialisation, optimiser, head, pooling or selection moves them by 1e-2 or more
    assert [g[0] for g in got] == [e[0] for e in EXPECTED[name]]
    for g, e in zip(got, EXPECTED[name]):
        assert g[1:] == pytest.approx(e[1:], rel=1e-3, abs=1e-6)
