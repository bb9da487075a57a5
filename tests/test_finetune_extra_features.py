"""``--extra-features`` and ``--ensemble``: rdkit2d statistics come from the training split only,
the head widens by the feature width, an ensemble's prediction is the mean of its members'
(probabilities for classification), ``predict`` on a run with extra features and an ensemble
reproduces the trainer's test metrics of the ensemble and of each member, and bad input fails
with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphmvp.finetune.cli import main
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.ensemble import average, member_seed, to_output
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.extra_features import CLIP, EXTRA_FEATURES, clean_descriptors, fit_statistics, get_featurizer
from graphmvp.finetune.metrics import compute_metrics
from graphmvp.finetune.model import FinetuneModel
from graphmvp.finetune.problems import build_problem
from graphmvp.finetune.trainer import finetune, load_finetuned
from graphmvp.models import build_encoder
from test_finetune_predict import SMILES, read

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra")
    rows = ["smiles,y,c"] + [f"{s},{10 + i},{i % 2}" for i, s in enumerate(SMILES)]
    (root / "d.csv").write_text("\n".join(rows) + "\n")
    return root


def config(root, **kw) -> FinetuneConfig:
    base = dict(data_file=str(root / "d.csv"), smiles_col="smiles", label_cols="y", task_type="regression",
                split="random", epochs=2, num_layers=1, emb_dim=8, seeds=(0,), progress=False, threads=1,
                use_cache=False)
    return FinetuneConfig(**{**base, **kw})


# ------------------------------------------------------------------------ extra features


def test_rdkit2d_cleaning_and_constant_columns():
    cleaned = clean_descriptors(np.array([[np.nan, np.inf, -np.inf, 1e30, -3.5]]))
    assert cleaned.tolist() == [[0.0, 0.0, 0.0, CLIP, -3.5]]
    stats = fit_statistics(get_featurizer("rdkit2d"), np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert stats.mean.tolist() == [2.0, 5.0] and stats.std.tolist() == [1.0, 1.0]  # constant column: std 1
    morgan = fit_statistics(get_featurizer("morgan"), np.array([[0.0, 1.0], [1.0, 1.0]]))
    assert morgan.mean.tolist() == [0.0, 0.0] and morgan.std.tolist() == [1.0, 1.0]  # binary: not standardised
    assert EXTRA_FEATURES.names() == ["morgan", "rdkit2d"]


def test_morgan_is_binary_ecfp4():
    from graphmvp.finetune.peers import ecfp4

    x = get_featurizer("morgan").compute(["CCO", "c1ccccc1"])
    assert x.shape == (2, 2048) and set(np.unique(x)) <= {0.0, 1.0}
    assert np.array_equal(x, ecfp4(["CCO", "c1ccccc1"]).astype(np.float32))


def test_statistics_come_from_the_training_split_only(data):
    problem = build_problem(config(data, extra_features="rdkit2d").resolved())
    parts = problem.parts(0)
    x = problem.extra  # [M, E], computed once
    assert x.shape == (len(SMILES), get_featurizer("rdkit2d").dim)
    before = problem.extra_statistics(0)
    train = x[parts["train"]].astype(np.float64)
    assert np.allclose(before.mean, train.mean(0), atol=1e-4 * (1 + np.abs(train.mean(0))))
    x[parts["test"]] += 1000.0  # a test molecule's descriptors change: the statistics do not
    x[parts["valid"]] -= 1000.0
    after = problem.extra_statistics(0)
    assert np.array_equal(before.mean, after.mean) and np.array_equal(before.std, after.std)
    x[parts["train"][0]] += 1000.0  # a training molecule's do: they move (the test above can fail)
    assert not np.array_equal(before.mean, problem.extra_statistics(0).mean)


def test_head_input_width_grows_by_the_feature_width():
    torch.manual_seed(0)
    for head, first in (("linear", lambda m: m.graph_pred_linear), ("mlp", lambda m: m.graph_pred_mlp[0])):
        plain = FinetuneModel(build_encoder("gin", num_layers=1, emb_dim=8), 3, head=head)
        model = FinetuneModel(build_encoder("gin", num_layers=1, emb_dim=8), 3, head=head, extra_dim=5)
        assert first(plain).in_features == 8 and first(model).in_features == 13
        assert "extra_mean" not in plain.state_dict() and "extra_mean" in model.state_dict()
    from graphmvp.data.collate import batch_mol_graphs
    from graphmvp.finetune.data import RawTable, featurise_table

    kept, _ = featurise_table(RawTable(["CCO", "CCN"], np.zeros((2, 0), np.float32), [], None, "t"))
    g = batch_mol_graphs(kept)
    model = FinetuneModel(build_encoder("gin", num_layers=1, emb_dim=8), 1, extra_dim=2).eval()
    model.set_extra_statistics([1.0, 2.0], [2.0, 4.0])
    x = torch.tensor([[3.0, 6.0], [1.0, 2.0]])
    with torch.no_grad():
        expected = model.head(torch.cat([model.embed(g), torch.tensor([[1.0, 1.0], [0.0, 0.0]])], 1))
        assert torch.allclose(model(g, x), expected)
        with pytest.raises(ValueError, match="needs extra features"):
            model(g)


# ------------------------------------------------------------------------------ ensembles


def test_ensemble_average_by_hand():
    logits = [np.array([[0.0], [np.log(3.0)]]), np.array([[np.log(3.0)], [0.0]])]
    # probabilities 0.5/0.75 and 0.75/0.5: mean 0.625 each (the mean logit would give 0.634)
    assert np.allclose(average(logits, "classification"), [[0.625], [0.625]])
    assert np.allclose(average([np.array([[1.0]]), np.array([[4.0]])], "regression"), [[2.5]])
    assert np.allclose(to_output(np.array([0.0]), "classification"), [0.5])
    assert member_seed(7, 0) == 7
    assert member_seed(7, 1) == member_seed(7, 1) != member_seed(7, 2) != member_seed(8, 1)


@pytest.fixture(scope="module")
def ensemble_run(data):
    cfg = config(data, extra_features="rdkit2d", ensemble=2, save_model=True, out=str(data / "run"))
    return finetune(cfg)


def test_ensemble_summary_and_files(ensemble_run, data):
    s = ensemble_run
    seed = s["per_seed"][0]
    assert s["ensemble"]["size"] == 2 and len(seed["members"]) == 2
    assert s["ensemble"]["member_seeds"] == {"seed_0": [0, member_seed(0, 1)]}
    assert s["method"] == "no pretraining + rdkit2d (ensemble of 2)"
    assert s["result"]["test_at_best_valid"]["values"] == [seed["test_at_best_valid"]["rmse"]]
    assert s["ensemble"]["members"]["rmse"]["test_at_best_valid"]["values"] == [
        m["test_at_best_valid"]["rmse"] for m in seed["members"]]
    files = sorted(p.name for p in (data / "run" / "seed_0").iterdir())
    assert files == ["best_model_member_0.pt", "best_model_member_1.pt", "split.json"]
    config_json = json.loads((data / "run" / "config.json").read_text())
    record = config_json["extra_features"]
    assert record["kind"] == "rdkit2d" and len(record["names"]) == record["dim"]
    model, payload = load_finetuned(data / "run" / "seed_0" / "best_model_member_1.pt")
    assert payload["extra_features"]["mean"] == record["statistics"]["seed_0"]["mean"]
    assert model.extra_mean.tolist() == pytest.approx(record["statistics"]["seed_0"]["mean"])
    metrics_csv = read(data / "run" / "metrics.csv")
    assert [(r["member"], r["epoch"]) for r in metrics_csv] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]


def test_predict_round_trip_reproduces_ensemble_and_members(ensemble_run, data):
    split = json.loads((data / "run" / "seed_0" / "split.json").read_text())
    test_rows = split["test_rows"]
    (data / "new.csv").write_text("smiles\n" + "\n".join(SMILES[r] for r in test_rows) + "\n")
    assert main(["predict", str(data / "run"), "--data-file", str(data / "new.csv"), "--out", str(data / "p.csv")]) == 0
    rows = read(data / "p.csv")
    assert list(rows[0]) == ["row", "smiles", "y", "y_std", "y_seed_0_member_0", "y_seed_0_member_1", "skipped"]
    labels = np.array([[10.0 + r] for r in test_rows])
    seed = ensemble_run["per_seed"][0]
    mean = np.array([[float(r["y"])] for r in rows])
    assert compute_metrics(["rmse"], labels, mean)["rmse"] == pytest.approx(seed["test_at_best_valid"]["rmse"], rel=1e-4)
    for k, member in enumerate(seed["members"]):
        pred = np.array([[float(r[f"y_seed_0_member_{k}"])] for r in rows])
        assert compute_metrics(["rmse"], labels, pred)["rmse"] == pytest.approx(member["test_at_best_valid"]["rmse"],
                                                                                 rel=1e-4)


def test_classification_ensemble_averages_probabilities(data):
    cfg = config(data, label_cols="c", task_type="classification", extra_features="morgan", ensemble=2,
                 save_model=True, split_fractions=(0.5, 0.25, 0.25), out=str(data / "cls"))
    s = finetune(cfg)
    split = json.loads((data / "cls" / "seed_0" / "split.json").read_text())
    (data / "cls.csv").write_text("smiles\n" + "\n".join(SMILES[r] for r in split["test_rows"]) + "\n")
    assert main(["predict", str(data / "cls"), "--data-file", str(data / "cls.csv"), "--out", str(data / "pc.csv")]) == 0
    rows = read(data / "pc.csv")
    members = np.array([[float(r[f"c_seed_0_member_{k}"]) for k in range(2)] for r in rows])
    assert ((members > 0) & (members < 1)).all()
    assert np.allclose([float(r["c"]) for r in rows], members.mean(1), rtol=1e-5)
    labels = np.array([[float(r % 2)] for r in split["test_rows"]])
    expected = s["per_seed"][0]["test_at_best_valid"]["roc_auc"]
    got = compute_metrics(["roc_auc"], labels, members.mean(1, keepdims=True))["roc_auc"]
    assert got == pytest.approx(expected) or (np.isnan(got) and np.isnan(expected))


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--extra-features", "foo"], "--extra-features 'foo': allowed: morgan, rdkit2d"),
    (["--ensemble", "0"], "--ensemble=0: must be an integer >= 1"),
])
def test_bad_options_are_one_line_errors(args, message, capsys, tmp_path):
    argv = ["--data-file", str(tmp_path / "d.csv"), "--smiles-col", "s", "--label-cols", "y", "--task-type",
            "regression", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_extra_features_refused_for_dta():
    with pytest.raises(FinetuneError, match="molecule tasks, not to DTA"):
        FinetuneConfig(task="davis", extra_features="morgan").resolved()


def test_predict_refuses_a_different_descriptor_list(ensemble_run, data, tmp_path):
    model_file = data / "run" / "seed_0" / "best_model_member_0.pt"
    payload = torch.load(model_file, weights_only=True)
    payload["extra_features"]["names"] = payload["extra_features"]["names"][:-1] + ["SomethingNew"]
    torch.save(payload, tmp_path / "m.pt")
    (tmp_path / "x.csv").write_text("smiles\nCCO\n")
    with pytest.raises(FinetuneError, match=r"rdkit2d features \(names\) differ"):
        from graphmvp.finetune.predict import predict_molecules

        predict_molecules([tmp_path / "m.pt"], ["CCO"])


def test_predict_refuses_a_protein_column_for_molecule_models(ensemble_run, data, capsys):
    (data / "pairs.csv").write_text("smiles,sequence\nCCO,MKKF\n")
    code = main(["predict", str(data / "run"), "--data-file", str(data / "pairs.csv"), "--protein-col", "sequence",
                 "--out", str(data / "pp.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "molecule-property models; --protein-col applies to drug-target affinity models only" in err
    assert not (data / "pp.csv").exists()
