"""Splits: Hu et al.'s deterministic scaffold split against a hand-worked example, and the
seeded / balanced / column variants."""

from __future__ import annotations

import numpy as np
import pytest

from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.splits import (
    hu_scaffold_order,
    make_split,
    scaffold_groups,
    scaffold_smiles,
)

# index: SMILES (scaffold)
HAND = [
    "Cc1ccccc1",        # 0 benzene
    "OC1CCCCC1",        # 1 cyclohexane
    "CCO",              # 2 acyclic ("")
    "Oc1ccccc1",        # 3 benzene
    "Cc1ccncc1",        # 4 pyridine
    "Nc1ccccc1",        # 5 benzene
    "Cc1cccc2ccccc12",  # 6 naphthalene
    "CCc1ccccc1",       # 7 benzene
    "NC1CCCCC1",        # 8 cyclohexane
    "CCCN",             # 9 acyclic
]


def test_scaffold_groups_by_hand():
    groups = scaffold_groups(HAND)
    assert groups == {
        "c1ccccc1": [0, 3, 5, 7],
        "C1CCCCC1": [1, 8],
        "": [2, 9],
        "c1ccncc1": [4],
        "c1ccc2ccccc2c1": [6],
    }
    assert scaffold_smiles("C[C@H](N)c1ccccc1") == "c1ccccc1"


def test_scaffold_order_is_size_then_first_index_descending():
    # size 4 first; of the two pairs, the acyclic group (first index 2) precedes cyclohexane (1);
    # of the singletons, naphthalene (6) precedes pyridine (4)
    assert hu_scaffold_order(scaffold_groups(HAND)) == [[0, 3, 5, 7], [2, 9], [1, 8], [6], [4]]


def test_scaffold_split_equals_hand_worked_example():
    # cutoffs 0.8 * 10 = 8 and 0.9 * 10 = 9: benzene (4), acyclic (6), cyclohexane (8) fill train;
    # naphthalene: train would exceed 8, train+valid = 9 fits -> valid; pyridine: 10 > 9 -> test
    split = make_split("scaffold", HAND)
    assert split.train.tolist() == [0, 1, 2, 3, 5, 7, 8, 9]
    assert split.valid.tolist() == [6]
    assert split.test.tolist() == [4]
    assert split.sizes() == {"train": 8, "valid": 1, "test": 1}


def test_scaffold_split_is_deterministic_and_ignores_the_seed():
    a = make_split("scaffold", HAND, seed=0)
    b = make_split("scaffold", HAND, seed=123)
    for part in ("train", "valid", "test"):
        assert np.array_equal(a.part(part), b.part(part))


def test_scaffold_split_keeps_whole_groups_and_a_later_small_group_can_go_to_train():
    # groups: A x5 (indices 0-4), B x4 (5-8), C x1 (9, acyclic), D x1 (10, pyridine); n = 11,
    # fractions 0.6/0.3/0.1: cutoffs 6.6 and 9.9. A -> train (5); B: 9 > 6.6, 0 + 9 <= 9.9 -> valid;
    # the singletons in first-index-descending order: D: 5 + 1 <= 6.6 -> train (after B went to
    # valid); C: 7 > 6.6 and 6 + 4 + 1 = 11 > 9.9 -> test
    smiles = (["c1ccccc1" + "C" * k for k in range(1, 6)] + ["C1CCCCC1" + "C" * k for k in range(1, 5)]
              + ["CCO", "c1ccncc1"])
    split = make_split("scaffold", smiles, fractions=(0.6, 0.3, 0.1))
    assert split.train.tolist() == [0, 1, 2, 3, 4, 10]
    assert split.valid.tolist() == [5, 6, 7, 8]
    assert split.test.tolist() == [9]


def test_a_split_with_an_empty_part_is_refused():
    # one scaffold group of 3 exceeds both cutoffs (2.4, 2.7): everything would be test
    with pytest.raises(FinetuneError, match="scaffold split of 3 molecules left the train part empty"):
        make_split("scaffold", ["Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1"])


def _check_partition(split, n):
    all_idx = np.concatenate([split.train, split.valid, split.test])
    assert sorted(all_idx.tolist()) == list(range(n))


def test_random_split_is_seeded_and_sized():
    smiles = ["C" * (i % 7 + 1) for i in range(50)]
    a = make_split("random", smiles, seed=1)
    b = make_split("random", smiles, seed=1)
    c = make_split("random", smiles, seed=2)
    assert a.sizes() == {"train": 40, "valid": 5, "test": 5}
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.train, c.train)
    _check_partition(a, 50)
    perm = np.random.default_rng(1).permutation(50)
    assert a.valid.tolist() == sorted(perm[40:45].tolist())


@pytest.mark.parametrize("method", ["random_scaffold", "balanced_scaffold"])
def test_scaffold_variants_never_split_a_scaffold_group(method):
    # 20 scaffolds (two benzenes joined by 1..20 CH2), group g holding g % 4 + 1 molecules: 50 in all
    smiles = [f"c1ccccc1{'C' * (g + 1)}c1ccc({'C' * (m + 1)})cc1" for g in range(20) for m in range(g % 4 + 1)]
    assert len(scaffold_groups(smiles)) == 20
    split = make_split(method, smiles, seed=5)
    _check_partition(split, 50)
    where = {}
    for part in ("train", "valid", "test"):
        for i in split.part(part):
            where.setdefault(scaffold_smiles(smiles[i]), set()).add(part)
    assert all(len(parts) == 1 for parts in where.values())
    again = make_split(method, smiles, seed=5)
    assert np.array_equal(split.test, again.test)


def test_column_split_and_its_errors():
    split = make_split("column", ["C"] * 5, split_values=["train", "Valid", "TEST", "val", "training"])
    assert split.train.tolist() == [0, 4] and split.valid.tolist() == [1, 3] and split.test.tolist() == [2]
    with pytest.raises(FinetuneError, match="'holdout' of molecule 1"):
        make_split("column", ["C"] * 3, split_values=["train", "holdout", "test"])
    with pytest.raises(FinetuneError, match="unknown split 'cluster'"):
        make_split("cluster", ["C"])


def test_split_to_json_reports_file_rows():
    import json

    split = make_split("scaffold", HAND)
    rows = np.arange(10) + 100  # e.g. one skipped row before them
    doc = json.loads(split.to_json(rows))
    assert doc["valid_rows"] == [106] and doc["test_rows"] == [104]
