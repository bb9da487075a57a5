"""The MI / JSD estimators of graphmvp-analyze against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from graphmvp.analysis.mutual_information import (
    PairSet,
    binarize,
    contingency,
    entropy,
    jensen_shannon,
    jsd_estimate,
    mi_estimate,
    mutual_information,
)


def _pairs(x, y, molecule, num_x, num_y, draws=1):
    return PairSet(np.asarray(x), np.asarray(y), np.asarray(molecule), int(np.max(molecule)) + 1, num_x, num_y, draws)


def test_hand_computed_table():
    # p(x,y) = [[1/2, 0], [1/4, 1/4]]: H(X) = 1, H(Y) = H(3/4, 1/4), H(X,Y) = 1.5
    table = np.array([[2.0, 0.0], [1.0, 1.0]])
    h_y = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert mutual_information(table) == pytest.approx(1.0 + h_y - 1.5, abs=1e-12)
    assert contingency([0, 0, 1, 1], [0, 0, 0, 1], 2, 2).tolist() == table.tolist()


def test_independent_variables_give_about_zero():
    rng = np.random.default_rng(0)
    n = 20000
    x = rng.integers(10, size=n)
    y = rng.integers(2, size=n)
    pairs = _pairs(x, y, np.arange(n), 10, 2)
    raw = mutual_information(pairs.table())
    corrected = mi_estimate(pairs, n_boot=20).value
    assert raw < 0.002  # plug-in bias ~ 9 / (2 n ln 2) = 3.2e-4 bits
    assert corrected < raw and corrected < 5e-4


def test_deterministic_target_gives_label_entropy():
    rng = np.random.default_rng(1)
    y = rng.integers(2, size=5000)
    x = y * 3 + rng.integers(3, size=5000)  # x determines y (y = x // 3)
    pairs = _pairs(x, y, np.arange(5000), 6, 2)
    h_y = entropy(np.bincount(y))
    assert mutual_information(pairs.table()) == pytest.approx(h_y, abs=1e-12)
    est = mi_estimate(pairs, n_boot=50, miller_madow=False)
    assert est.value == pytest.approx(h_y, abs=1e-12)
    assert est.low <= est.value + 1e-9 and est.high >= est.value - 0.02 and est.std < 0.01


def test_bootstrap_resamples_molecules_not_pairs():
    # two molecules, one with label 0 and target 0 (x 100 pairs), one with label 1 and target 1:
    # every bootstrap sample is either both (MI = 1 bit) or one molecule twice (MI = 0)
    x = np.r_[np.zeros(100), np.ones(100)].astype(int)
    pairs = _pairs(x, x, np.r_[np.zeros(100), np.ones(100)].astype(int), 2, 2)
    est = mi_estimate(pairs, n_boot=400, seed=3, miller_madow=False)
    assert est.value == pytest.approx(1.0)
    assert est.low == pytest.approx(0.0) and est.high == pytest.approx(1.0)
    assert 0.3 < est.std < 0.7


def test_jensen_shannon_known_values():
    assert jensen_shannon(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(np.array([1, 0]), np.array([0, 5])) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4); JSD = H(m) - (1 + 0) / 2
    h_m = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert jensen_shannon(np.array([1, 1]), np.array([1, 0])) == pytest.approx(h_m - 0.5)
    x = np.array([0, 0, 1, 1])
    est = jsd_estimate(_pairs(x, np.array([0, 0, 1, 1]), np.arange(4), 2, 2), n_boot=10)
    assert est.value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="binary"):
        jsd_estimate(_pairs(x, np.array([0, 1, 2, 2]), np.arange(4), 2, 3), n_boot=2)


def test_binarize_at_median_and_errors():
    labels, t = binarize([1.0, 5.0, 3.0, 2.0])
    assert t == 2.5 and labels.tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="NaN"):
        binarize([1.0, float("nan")])
    with pytest.raises(ValueError, match="out of range"):
        contingency([0, 3], [0, 1], 3, 2)
