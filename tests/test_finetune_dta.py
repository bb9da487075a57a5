"""DeepDTA loaders on small files written here in DeepDTA's layout (including a Python-2 style
pickle that only loads with encoding='latin1'), protein encoding, and a tiny DTA run."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from graphmvp.finetune.cli import main
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.dta import DRUG_BATCHES, DTAModel, GraphDTAProteinCNN, encode_dta, encode_protein, load_deepdta, validation_split
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.problems import DTAProblem
from graphmvp.finetune.trainer import finetune, load_finetuned
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.models import GIN


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING), as the pickles
    in DeepDTA's repository do: Python 3 reads them only with ``encoding='latin1'``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(array)
    return buf.getvalue()


LIGANDS = OrderedDict([("11314340", "CCO"), ("24889392", "c1ccccc1N"), ("5291", "CC(=O)Nc1ccc(O)cc1")])
PROTEINS = OrderedDict([("AAK1", "MKKFFDSRREQ"), ("ABL1", "MLEICLKLVGCKSKKGLSSSSSCYLEEALQRPVASDFEPQGLSEAARWNSKENLLAGPSENDPNLFVALYDFVASGDNTLSITKGEKLRVLGYNHNGEWCEAQTKNGQGWVPSNYITPVN"),
                        ("ABL2", "JMGQQVGRVGEAPGLQQPQPRGIRGSSAARPSGRRRDPAGRTTETGFNIFTQHDHFASCVEDGFEGDKTGGSSPEALHRPYGCDVEPQALNEAIRWSSKENLLGATESDPNLFVALYDFVASGDNTLSITKGEKLRVLGYNQNGEWSEVRSKNGQGWVPSNYITPVNSLEKHSWYHGPVSRSAAEYLLSSLINGSFLVRESESSPGQLSISLRYEGRVYHYRINTTADGKVYVTAESRFSTLAELVHHHSTVADGLVTTLHYPAPKCNKPTVYGVSPIHDKWEMERTDITMKHKLGGGQYGEVYVGVWKKYSLTVAVKTLKEDTMEVEEFLKEAAVMKEIKHPNLVQLLGVCTLEPPFYIVTEYMPYGNLLDYLRECNREEVTAVVLLYMATQISSAMEYLEKKNFIHRDLAARNCLVGENHVVKVADFGLSRLMTGDTYTAHAGAKFPIKWTAPESLAYNTFSIKSDVWAFGVLLWEIATYGMSPYPGIDLSQVYDLLEKGYRMEQPEGCPPKVYELMRACWKWSPADRPSFAETHQAFETMFHDSSISEEVAEELGRAASSSSVVPYLPRLPILPSKTRTLKKQVENKENIEGAQDATENSASSLAPGFIRGAQASSGSPALPRKQRDKSPSSLLEDAKETCFTRDRKGGFFSSFMKKRNAPTPPKRSSSFREMENQPHKKYELTGNFSSVASLQHADGFSFTPAQQEANLVPPKCYGGSFAQRNLCNDDGGGGGGSGTAGGGWSGITGFFTPRLIKKTLGLRAGKPTASDDTSKPFPRSNSTSSMSSGLPEQDRMAMTLPRNCQRSKLQLERTVSTSSQPEENVDRANDMLPKKSEESAAPSRERPKAKLLPRGATALPLRTPSGDLAITEKDPPGVGVAGVAAAPKGKEKNGGARLGMAGVPEDGEQPGWPSPAKAAPVLPTTHNHKVPVLISPTLKHTPADVQLIGTDSQGNKFKLLSEHQVTSSGDKDRPRRVKPKCAPPPPPVMRLLQHPSICSDPTEEPTALTAGQSTSETQEGGKKAALGAVPISGKAGRPVMPPPQVPLPTSSISPAKMANGTAGTKVALRKTKQAAEKISADKISKEALLECADLLSSALTEPVPNSQLVDTGHQLLDYCSGYVDCIPQTRNKFAFREAVSKLELSLQELQVSSAAAGVPGTNPVLNNLLSCVQEISDVVQR")])
# Kd in nM, drugs x proteins
KD = np.array([[10000.0, 1.0, 5.0], [10000.0, 100.0, 2500.0], [0.1, 10000.0, 42.0]])


def write_deepdta(folder: Path, y: np.ndarray, train_folds, test_fold) -> Path:
    (folder / "folds").mkdir(parents=True)
    (folder / "ligands_can.txt").write_text(json.dumps(LIGANDS))
    (folder / "proteins.txt").write_text(json.dumps(PROTEINS))
    (folder / "Y").write_bytes(py2_pickle(y))
    (folder / "folds" / "train_fold_setting1.txt").write_text(json.dumps(train_folds))
    (folder / "folds" / "test_fold_setting1.txt").write_text(json.dumps(test_fold))
    return folder


@pytest.fixture
def davis(tmp_path) -> Path:
    return write_deepdta(tmp_path / "davis", KD, [[0, 1], [2, 3], [4], [5, 6], [7]], [8])


def test_the_pickle_needs_latin1():
    data = py2_pickle(KD)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)
    np.testing.assert_array_equal(pickle.loads(data, encoding="latin1"), KD)


def test_davis_loader_pairs_labels_and_folds(davis):
    d = load_deepdta(davis, "pkd")
    assert d.drug_ids == list(LIGANDS) and d.protein_ids == list(PROTEINS)
    assert d.drug_smiles[2] == "CC(=O)Nc1ccc(O)cc1"
    # no NaN in Davis: pairs in row-major order, label pKd = -log10(Kd / 1e9)
    assert d.num_pairs == 9
    assert d.pair_drug.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.pair_protein.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert d.pair_label[0] == pytest.approx(5.0)       # 10 uM
    assert d.pair_label[1] == pytest.approx(9.0)       # 1 nM
    assert d.pair_label[6] == pytest.approx(10.0)      # 0.1 nM
    assert d.pair_label[8] == pytest.approx(-math.log10(42e-9))
    assert [f.tolist() for f in d.train_folds] == [[0, 1], [2, 3], [4], [5, 6], [7]]
    assert d.test_fold.tolist() == [8]


def test_kiba_nan_entries_are_skipped_and_folds_index_the_measured_pairs(tmp_path):
    y = np.array([[11.1, np.nan, 12.3], [np.nan, 10.0, np.nan], [13.5, 11.9, np.nan]])
    folder = write_deepdta(tmp_path / "kiba", y, [[0], [1], [2], [3], []], [4])
    d = load_deepdta(folder, "none")
    # measured pairs in np.where order: (0,0) (0,2) (1,1) (2,0) (2,1)
    assert list(zip(d.pair_drug.tolist(), d.pair_protein.tolist())) == [(0, 0), (0, 2), (1, 1), (2, 0), (2, 1)]
    np.testing.assert_allclose(d.pair_label, [11.1, 12.3, 10.0, 13.5, 11.9], rtol=1e-6)
    test_pair = d.test_fold[0]
    assert (d.pair_drug[test_pair], d.pair_protein[test_pair]) == (2, 1)


def test_loader_errors(tmp_path, davis):
    bad = write_deepdta(tmp_path / "bad", KD, [[0, 1], [99]], [2])
    with pytest.raises(FinetuneError, match="pair index 99 outside 0..8"):
        load_deepdta(bad)
    (davis / "Y").write_bytes(py2_pickle(KD[:2]))
    with pytest.raises(FinetuneError, match="Y has shape \\[2, 3\\] but there are 3 drugs and 3 proteins"):
        load_deepdta(davis)
    with pytest.raises(FinetuneError, match="not a folder"):
        load_deepdta(tmp_path / "nowhere")


def test_validation_split_is_seeded_20_percent_of_the_training_folds():
    folds = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 30), np.arange(30, 40), np.arange(40, 50)]
    train, valid = validation_split(folds, seed=3)
    assert len(valid) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(50))
    again, _ = validation_split(folds, seed=3)
    other, _ = validation_split(folds, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_protein_encoding():
    tokens, unknown = encode_protein("ACDzJ", length=8)
    # A=1 C=3 D=4 Z=25 (lower case accepted); J is outside the alphabet -> 0 and counted
    assert tokens.tolist() == [1, 3, 4, 25, 0, 0, 0, 0] and unknown == 1
    long, _ = encode_protein("M" * 1500)
    assert long.shape == (1000,) and set(long.tolist()) == {12}


@pytest.mark.parametrize("length, embed_dim", [(1000, 300), (37, 11)])
def test_the_graphdta_protein_cnn_is_conv1d_over_the_embedded_sequence(length, embed_dim):
    """The letter-wise computation gives nn.Conv1d's outputs and gradients (GraphDTA's layout: the
    positions are the input channels). Every letter occurs, padding (0) included, and one
    sequence is all padding."""
    torch.manual_seed(0)
    m = GraphDTAProteinCNN(length=length, embed_dim=embed_dim, out_dim=16).double()
    tokens = torch.randint(0, 26, (5, length))
    tokens[0, :26] = torch.arange(26)
    tokens[1] = 0
    grads = {}
    for name, forward in (("letters", m), ("conv1d", m.conv1d_forward)):
        m.zero_grad()
        out = forward(tokens)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads[name] = (out.detach(), {n: q.grad.clone() for n, q in m.named_parameters()})
    (out, g), (ref, ref_g) = grads["letters"], grads["conv1d"]
    assert out.shape == (5, 16)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert set(g) == {"embedding.weight", "conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    for n in g:
        torch.testing.assert_close(g[n], ref_g[n], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=f"shape \\[B, {length}\\]"):
        m(tokens[:, :-1])


@pytest.mark.parametrize("protein_encoder", ["graphdta", "cnn"])
def test_eval_predictions_equal_a_per_pair_forward(davis, protein_encoder):
    torch.manual_seed(0)
    data = load_deepdta(davis, "pkd")
    enc = encode_dta(data, length=64)
    cfg = FinetuneConfig(task="davis", protein_length=64, protein_encoder=protein_encoder).resolved()
    problem = DTAProblem(data, enc, cfg)
    model = DTAModel(GIN(num_layers=2, emb_dim=16), protein_encoder=protein_encoder, length=64).eval()
    idx = np.arange(data.num_pairs)
    with torch.no_grad():
        fast = problem.predict(model, idx, 4, {}, "all")
        direct = per_pair_forward(model, enc, data, idx).numpy()
    np.testing.assert_allclose(fast, direct, rtol=1e-5, atol=1e-6)


def per_pair_forward(model: DTAModel, enc, data, idx: np.ndarray) -> torch.Tensor:
    """Upstream's layout: one drug graph and one protein row per pair."""
    g = batch_mol_graphs([enc.drug_graphs[d] for d in data.pair_drug[idx]])
    return model(g, torch.from_numpy(enc.protein_tokens[data.pair_protein[idx]]))


def _outputs_and_gradients(model: DTAModel, forward) -> tuple[np.ndarray, dict]:
    model.zero_grad()
    out = forward()
    (out ** 2).sum().backward()
    return out.detach().numpy(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("drug_batch", DRUG_BATCHES)
def test_a_batch_of_distinct_drugs_and_proteins_equals_the_per_pair_computation(davis, drug_batch, mode):
    """Pairs 1, 4, 5, 0, 4 (pair 4 twice): drugs 0, 1, 1, 0, 1 and proteins 1, 1, 2, 0, 1. The batch
    holds each protein once, and each drug once for "unique"; outputs and every gradient equal the
    per-pair computation wherever the two are the same function: always in eval mode, and in
    train mode (GIN BatchNorm on batch statistics, dropout 0) when the drugs stay per pair."""
    torch.manual_seed(0)
    data = load_deepdta(davis, "pkd")
    enc = encode_dta(data, length=64)
    model = DTAModel(GIN(num_layers=2, emb_dim=16, dropout=0.0), length=64, dropout=0.0)
    model.train(mode == "train")
    idx = np.array([1, 4, 5, 0, 4])
    (g, tokens, drug_index, protein_index), y = enc.batch(data, idx, drug_batch)
    assert tokens.shape == (3, 64) and protein_index.tolist() == [1, 1, 2, 0, 1]
    if drug_batch == "unique":
        assert g.batch_size == 2 and drug_index.tolist() == [0, 1, 1, 0, 1]
    else:
        assert g.batch_size == 5 and drug_index is None
    np.testing.assert_array_equal(y.numpy()[:, 0], data.pair_label[idx])

    out, grads = _outputs_and_gradients(model, lambda: model(g, tokens, drug_index, protein_index))
    ref_out, ref_grads = _outputs_and_gradients(model, lambda: per_pair_forward(model, enc, data, idx))
    assert set(grads) == set(ref_grads) and any(n.startswith("protein_model.") for n in grads)
    if mode == "train" and drug_batch == "unique":
        # BatchNorm now counts drug 1 once, not three times: the drug side is another function
        assert not np.allclose(out, ref_out, rtol=1e-4, atol=1e-5)
        return
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_drug_batch_layout_is_checked(davis):
    data = load_deepdta(davis, "pkd")
    with pytest.raises(ValueError, match="per-pair"):
        encode_dta(data, length=64).batch(data, [0, 1], "pairs")
    with pytest.raises(FinetuneError, match="--dta-drug-batch 'pairs'"):
        FinetuneConfig(task="davis", dta_drug_batch="pairs").resolved()


@pytest.mark.parametrize("drug_batch", DRUG_BATCHES)
def test_tiny_dta_run_reports_all_metrics(davis, tmp_path, monkeypatch, drug_batch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    cfg = FinetuneConfig(task="davis", data_file=str(davis), epochs=2, batch_size=4, num_layers=2, emb_dim=16,
                         protein_length=64, seeds=(0,), out=str(tmp_path / "run"), progress=False, threads=1,
                         dta_drug_batch=drug_batch)
    summary = finetune(cfg)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["dta_drug_batch"] == drug_batch
    assert summary["task_type"] == "dta" and summary["metric"] == "mse"
    assert set(summary["metrics"]) == {"mse", "rmse", "ci", "pearson", "spearman"}
    seed = summary["per_seed"][0]
    # 8 training-fold pairs: 20% (2) for validation; test = the test fold
    assert seed["split"]["sizes"] == {"train": 6, "valid": 2, "test": 1}
    assert summary["dataset"]["pairs"] == 9 and summary["dataset"]["drugs"] == 3
    assert seed["test_at_best_valid"]["rmse"] == pytest.approx(math.sqrt(seed["test_at_best_valid"]["mse"]))


@pytest.fixture
def saved_dta_run(davis, tmp_path, monkeypatch):
    """A tiny Davis-layout run of 2 seeds with --save-model (an ensemble of two for predict)."""
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    cfg = FinetuneConfig(task="davis", data_file=str(davis), epochs=2, batch_size=4, num_layers=2, emb_dim=16,
                         protein_length=64, seeds=(0, 1), out=str(tmp_path / "run"), progress=False, threads=1,
                         save_model=True)
    finetune(cfg)
    return tmp_path / "run"


def test_predict_round_trip_of_a_dta_ensemble(davis, saved_dta_run, tmp_path):
    """Every (drug, protein) pair of the data set, written as SMILES and sequence, then a bad SMILES
    and an empty sequence: `predict --protein-col` gives each member's prediction of the pair as
    the member's model predicts it in training layout, their mean and std, and skips the bad rows."""
    data = load_deepdta(davis, "pkd")
    idx = np.arange(data.num_pairs)
    rows = [(data.drug_smiles[d], data.protein_seqs[p]) for d, p in zip(data.pair_drug, data.pair_protein)]
    rows += [("C1CC", data.protein_seqs[0]), (data.drug_smiles[0], "")]
    (tmp_path / "pairs.csv").write_text("smiles,sequence\n" + "".join(f"{a},{b}\n" for a, b in rows))
    assert main(["predict", str(saved_dta_run), "--data-file", str(tmp_path / "pairs.csv"), "--protein-col",
                 "sequence", "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        out = list(csv.DictReader(f))
    assert list(out[0]) == ["row", "smiles", "affinity", "affinity_std", "affinity_seed_0", "affinity_seed_1", "skipped"]
    enc = encode_dta(data, length=64)
    members = []
    for seed in (0, 1):
        model, payload = load_finetuned(saved_dta_run / f"seed_{seed}" / "best_model.pt")
        assert isinstance(model, DTAModel) and not model.training and payload["dta"]["protein_length"] == 64
        with torch.no_grad():
            expected = per_pair_forward(model, enc, data, idx).numpy()[:, 0]
        got = np.array([float(r[f"affinity_seed_{seed}"]) for r in out[:data.num_pairs]])
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
        members.append(got)
    mean = np.array([float(r["affinity"]) for r in out[:data.num_pairs]])
    np.testing.assert_allclose(mean, np.mean(members, 0), rtol=2e-5, atol=1e-6)
    assert float(out[0]["affinity_std"]) == pytest.approx(np.std(members, 0)[0], rel=1e-4, abs=1e-6)
    bad_smiles, empty = out[-2], out[-1]
    assert bad_smiles["affinity"] == "" and bad_smiles["skipped"] == "RDKit cannot parse it"
    assert empty["affinity"] == "" and empty["skipped"] == "empty protein sequence"


def test_predict_needs_the_protein_column_for_a_dta_model(saved_dta_run, tmp_path, capsys):
    (tmp_path / "new.csv").write_text("smiles\nCCO\n")
    out = tmp_path / "p.csv"
    code = main(["predict", str(saved_dta_run), "--data-file", str(tmp_path / "new.csv"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "drug-target affinity models, which predict (molecule, protein) pairs; give --protein-col" in err
    code = main(["predict", str(saved_dta_run), "--data-file", str(tmp_path / "new.csv"), "--protein-col", "seq",
                 "--out", str(out)])
    assert code == 2 and "new.csv: no column 'seq'" in capsys.readouterr().err and not out.exists()


def test_a_dta_model_saved_without_its_protein_record_is_refused(saved_dta_run, tmp_path):
    payload = torch.load(saved_dta_run / "seed_0" / "best_model.pt", weights_only=True)
    payload["dta"] = None  # as files written before DTA prediction existed
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(FinetuneError, match="old.pt: a drug-target affinity model saved without its protein_encoder, "
                                            "protein_length; fine-tune it again"):
        load_finetuned(tmp_path / "old.pt")
