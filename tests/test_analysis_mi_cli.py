"""graphmvp-analyze mi end to end on tiny hand-made data sets with known answers."""

from __future__ import annotations

import csv
import json

import pytest

from graphmvp.analysis.cli import main


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles", "y"])
        w.writerows(rows)
    return path


def _table(out):
    with open(out / "mi_table.csv") as fh:
        return list(csv.DictReader(fh))


def test_all_atoms_masked_gives_the_hand_computed_mi_and_jsd(tmp_path):
    # CO (label 0) and CN (label 1), twice each; rate 1 masks every atom, so the pairs are
    # (C,0) (O,0) (C,1) (N,1) in equal numbers: H(X) = 1.5, H(Y) = 1, H(X,Y) = 2 -> I = 0.5 bit;
    # p(x|0) = (C 1/2, O 1/2), p(x|1) = (C 1/2, N 1/2) -> JSD = H(m) - 1 = 0.5 bit. The
    # Miller-Madow term is (4 - 3 - 2 + 1) / (2 n ln 2) = 0.
    data = _csv(tmp_path / "d.csv", [["CO", 0], ["CN", 1], ["OC", 0], ["NC", 1]])
    out = tmp_path / "out"
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--binarize", "none", "--targets", "atom",
                 "--dists", "uniform,pagerank", "--rate", "1.0", "--draws", "3", "--bootstrap", "20",
                 "--out", str(out)]) == 0
    rows = _table(out)
    assert [r["distribution"] for r in rows] == ["uniform", "pagerank"]
    for r in rows:
        assert float(r["mi_bits"]) == pytest.approx(0.5, abs=1e-9)
        assert float(r["jsd_bits"]) == pytest.approx(0.5, abs=1e-9)
        assert int(r["pairs"]) == 4 * 2 * 3
        assert float(r["h_label_bits"]) == pytest.approx(1.0)
    assert (out / "mi_bars.png").stat().st_size > 1000
    assert "| atom | uniform | 0.5000" in (out / "mi_table.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert config["input"]["molecules"] == 4 and config["input"]["class_counts"] == [2, 2]


def test_median_binarisation_skips_bad_rows_and_counts_them(tmp_path):
    data = _csv(tmp_path / "d.csv", [["CO", 1.0], ["CN", 5.0], ["not-a-smiles", 2.0], ["CCO", ""], ["CCN", 7.0],
                                     ["CCCO", 0.5]])
    out = tmp_path / "out"
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--targets", "atom", "--dists", "uniform",
                 "--draws", "2", "--bootstrap", "5", "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())["input"]
    assert info["skipped"] == {"invalid_smiles": 1, "missing_label": 1}
    assert info["threshold"] == pytest.approx(3.0) and info["class_counts"] == [2, 2]


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", [["CO", 0], ["CN", 1], ["OC", 0], ["NC", 1]])
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "nope", "--out", str(tmp_path / "o")]) == 2
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--dists", "everywhere", "--out", str(tmp_path / "o")]) == 2
    assert "everywhere" in capsys.readouterr().err
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--targets", "motif", "--dists", "uniform",
                 "--out", str(tmp_path / "o")]) == 2
    assert "vocabulary" in capsys.readouterr().err


def test_learnable_without_a_scorer_is_left_out_with_a_note(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", [["CO", 0], ["CN", 1], ["OC", 0], ["NC", 1]])
    out = tmp_path / "out"
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--binarize", "none", "--targets", "atom",
                 "--dists", "uniform,learnable", "--draws", "1", "--bootstrap", "2", "--out", str(out)]) == 0
    assert "learnable distribution is left out" in capsys.readouterr().err
    assert [r["distribution"] for r in _table(out)] == ["uniform"]


def test_motif_target_determines_the_label_where_atom_types_do_not(tmp_path):
    import math

    from graphmvp.chem.annotate import vocabulary_from_smiles_file

    # phenol (label 0): motifs ring x6 + O; ethanol (label 1): one motif CCO x3. Every motif
    # occurs in one class only, so I(motif; Y) = H(Y) over the pairs (p(y=0) = 14/20), plus the
    # Miller-Madow term -(K_xy - K_x - K_y + 1) / (2 n ln 2) = +1 / (2 * 20 * ln 2) (n = pairs of
    # one draw); atom types (C, O) are shared by both classes, so they carry less.
    data = _csv(tmp_path / "d.csv", [["c1ccccc1O", 0], ["CCO", 1], ["Oc1ccccc1", 0], ["OCC", 1]])
    vocab, _ = vocabulary_from_smiles_file(data, "motif", min_count=1, smiles_col="smiles")
    vocab_file = vocab.save(tmp_path / "motif_vocab.json")
    out = tmp_path / "out"
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--binarize", "none",
                 "--targets", "atom,motif", "--dists", "uniform", "--rate", "1.0", "--draws", "2",
                 "--bootstrap", "10", "--vocab", str(vocab_file), "--out", str(out)]) == 0
    rows = {r["target"]: r for r in _table(out)}
    h_y = -(0.7 * math.log2(0.7) + 0.3 * math.log2(0.3))
    assert float(rows["motif"]["mi_bits"]) == pytest.approx(h_y + 1 / (40 * math.log(2)), abs=1e-9)
    assert float(rows["atom"]["mi_bits"]) < float(rows["motif"]["mi_bits"]) - 0.3
    assert float(rows["motif"]["jsd_bits"]) == pytest.approx(1.0)


def test_learnable_distribution_uses_a_trained_scorer_run(tmp_path):
    """A tiny StructMAE-L run's scorer drives the learnable rows; its scores are those of the
    run's ``objectives.2d.scorer`` weights."""
    import numpy as np

    from graphmvp.prep.store_writer import write_store
    from graphmvp.analysis.masked_targets import learnable_scores
    from graphmvp.pretrain import pretrain, resolve_config
    from molecule_fixture import molecule
    from tests.test_masked_prediction import SMILES

    store = tmp_path / "mols.h5"
    write_store(store, [molecule(s) for s in SMILES], [], {"hydrogens": "drop"}, command=["test"])
    run = tmp_path / "structmae_l"
    pretrain(resolve_config("structmae-l", store=str(store), out=str(run), epochs=1, batch_size=8, num_layers=2,
                            emb_dim=16, progress=False, threads=1))
    data = _csv(tmp_path / "d.csv", [["c1ccccc1O", 0], ["CCO", 1], ["Oc1ccccc1C", 0], ["OCCN", 1]])
    out = tmp_path / "out"
    assert main(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y", "--binarize", "none",
                 "--targets", "atom", "--dists", "uniform,learnable", "--rate", "0.5", "--draws", "4",
                 "--bootstrap", "5", "--scorer", str(run), "--out", str(out)]) == 0
    rows = _table(out)
    assert [r["distribution"] for r in rows] == ["uniform", "learnable"]
    # ceil(0.5 n) atoms per draw for learnable: 4 + 2 + 4 + 2 atoms x 4 draws
    assert int(rows[1]["pairs"]) == (4 + 2 + 4 + 2) * 4
    from graphmvp.analysis.cli import build_parser, load_molecules

    args = build_parser().parse_args(["mi", "--data", str(data), "--smiles-col", "smiles", "--label-col", "y",
                                      "--binarize", "none", "--out", str(out)])
    molecules, _ = load_molecules(args)
    scores = learnable_scores(str(run), molecules)
    assert [s.shape[0] for s in scores] == [7, 3, 8, 4]
    assert all(np.all((s > 0) & (s < 1)) for s in scores)
    with pytest.raises(ValueError, match="no mask scorer"):
        learnable_scores(str(_plain_run(tmp_path, store)), molecules)


def _plain_run(tmp_path, store):
    from graphmvp.pretrain import pretrain, resolve_config

    run = tmp_path / "attrmask"
    pretrain(resolve_config("attrmask", store=str(store), out=str(run), epochs=1, batch_size=8, num_layers=2,
                            emb_dim=16, progress=False, threads=1))
    return run
