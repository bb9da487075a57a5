"""benchmarks/corpus_shift.py: the distance of each fine-tuning set from the pretraining corpus,
checked on hand-made molecules, and the corpus rebuilt in graphmvp-prep's shuffle order."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from tests.conftest import load_benchmark, shared_file


@pytest.fixture(scope="module")
def shift():
    return load_benchmark("corpus_shift")


def test_describe_counts_atoms_elements_charges_and_unparsable(shift):
    m = shift.describe(["CCO", "[NH3+]CC(=O)[O-]", "not a smiles", "", "c1ccccc1Br"])
    assert m.unparsable == 2
    assert m.heavy_atoms == [3, 5, 7]
    assert m.elements == [frozenset("CO"), frozenset("CNO"), frozenset({"C", "Br"})]
    assert m.charged == [False, True, False]
    assert len(m.fingerprints) == 3


def test_nearest_similarity_is_the_best_tanimoto_over_the_reference(shift):
    ref = shift.describe(["CCO", "c1ccccc1"]).fingerprints
    q = shift.describe(["CCO", "c1ccccc1O", "CCCCCCCCCC"]).fingerprints
    sim = shift.nearest_similarity(q, ref)
    assert sim[0] == 1.0
    from rdkit import DataStructs

    assert sim[1] == pytest.approx(max(DataStructs.TanimotoSimilarity(q[1], r) for r in ref))
    assert 0.0 <= sim[2] < shift.FAR  # decane against ethanol and benzene


def test_a_shift_row_by_hand(shift):
    """Corpus: ethanol, ethylamine, toluene (largest: 7 heavy atoms; elements C, N, O). The set:
    ethanol (in the corpus), sodium acetate written as ions (charged, new element Na), chloro-decane
    (11 heavy atoms, larger, new element Cl), iodobenzene (new element I), one unparsable line."""
    corpus = shift.describe(["CCO", "CCN", "Cc1ccccc1"])
    mols = shift.describe(["CCO", "CC(=O)[O-].[Na+]", "CCCCCCCCCCCl", "Ic1ccccc1", "C1CC"])
    row = shift.shift_row("toy", mols, corpus)
    assert (row.molecules, row.unparsable) == (4, 1)
    assert row.heavy_atoms_median == 6.0  # 3, 5 (Na counts), 11, 7
    assert row.heavy_atoms_p10 == pytest.approx(np.percentile([3, 5, 11, 7], 10))
    assert row.larger_than_corpus == 0.25  # only the 11-atom chain exceeds toluene's 7
    assert row.new_element == 0.75
    assert sorted(row.new_elements_top) == [("Cl", 1), ("I", 1), ("Na", 1)]
    assert row.charged == 0.25
    sims = shift.nearest_similarity(mols.fingerprints, corpus.fingerprints)
    assert sims[0] == 1.0 and row.nn_similarity_median == pytest.approx(float(np.median(sims)))
    assert row.far == pytest.approx(float(np.mean(sims < shift.FAR)))
    text = shift.render([row], 3)
    assert "| toy | 4 | 6 (" in text and "| 25.0% | 75.0% (" in text
    with pytest.raises(ValueError, match="toy: no parsable molecule"):
        shift.shift_row("toy", shift.describe(["nope"]), corpus)


def test_the_corpus_follows_the_prep_shuffle_and_skips_excluded_molecules(shift, tmp_path):
    smiles = ["C" * (i + 1) for i in range(12)] + ["bad(", "OCC"]  # OCC is ethanol, excluded below
    path = tmp_path / "z.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("SMILES,SPLIT\n" + "".join(f"{s},train\n" for s in smiles))
    excluded = frozenset({shift._canonical("CCO"), shift._canonical("CCCC")})
    kept, held = shift.corpus_smiles(path, n_mol=5, held_out=3, seed=777, excluded=excluded)
    order = [smiles[i] for i in np.random.default_rng(777).permutation(len(smiles))]
    expected = [s for s in order if s not in ("bad(", "OCC", "CCCC")]
    assert kept == expected[:5] and held == expected[5:8]


def test_the_script_on_the_shared_data(shift, shared_data, tmp_path, capsys):
    shared_file(shared_data, shift.CORPUS_FILE)
    assert shift.main(["--shared", str(shared_data), "--tasks", "bace", "davis", "--n-mol", "300",
                       "--held-out", "50", "--results", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "shift.json").read_text())
    names = [r["name"] for r in record["rows"]]
    assert names == [shift.HELD_OUT, "bace", "davis"] and record["corpus"]["n_mol"] == 300
    davis = record["rows"][2]
    assert davis["molecules"] == 68  # DeepDTA's Davis ligands
    assert "| davis | 68 |" in capsys.readouterr().out
    assert (tmp_path / "SHIFT.md").read_text().startswith("Against the 300 corpus molecules")


def test_missing_files_are_named(shift, tmp_path):
    with pytest.raises(SystemExit, match="zinc_moses_train.csv.gz not found: give the shared data folder"):
        shift.main(["--shared", str(tmp_path)])
    with gzip.open(tmp_path / shift.CORPUS_FILE, "wt") as f:
        f.write("SMILES\nCCO\n")
    with pytest.raises(SystemExit, match=r"not found: .*moleculenet/bace.csv.gz; give the shared data folder"):
        shift.main(["--shared", str(tmp_path), "--tasks", "bace"])
