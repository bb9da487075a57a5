"""radius_neighbors against a brute-force double loop; the nearest-k cap, ties and the cutoff."""

import math

import numpy as np
import pytest

from graphmvp.data.neighbors import radius_neighbors


def brute_force(pos, cutoff, max_neighbors):
    pairs_i, pairs_j = [], []
    for i in range(len(pos)):
        cands = []
        for j in range(len(pos)):
            if j == i:
                continue
            d = math.sqrt(sum((float(pos[j][k]) - float(pos[i][k])) ** 2 for k in range(3)))
            if d < cutoff:
                cands.append((d, j))
        cands.sort()  # by distance, then by j
        if max_neighbors is not None:
            cands = cands[:max_neighbors]
        pairs_i += [i] * len(cands)
        pairs_j += [j for _, j in cands]
    return np.array(pairs_i, dtype=np.int64), np.array(pairs_j, dtype=np.int64)


@pytest.mark.parametrize("n", [0, 1, 2, 15, 60])
@pytest.mark.parametrize("max_neighbors", [32, 5, 1, None])
def test_matches_brute_force_on_random_points(n, max_neighbors):
    rng = np.random.default_rng(n * 100 + (max_neighbors or 0))
    pos = rng.uniform(0.0, 8.0, size=(n, 3))
    for cutoff in (3.0, 10.0):
        idx_i, idx_j = radius_neighbors(pos, cutoff=cutoff, max_neighbors=max_neighbors)
        ref_i, ref_j = brute_force(pos, cutoff, max_neighbors)
        assert idx_i.dtype == idx_j.dtype == np.int64
        np.testing.assert_array_equal(idx_i, ref_i)
        np.testing.assert_array_equal(idx_j, ref_j)


def test_float32_input_matches_brute_force():
    pos = np.random.default_rng(3).normal(scale=3.0, size=(50, 3)).astype(np.float32)
    idx_i, idx_j = radius_neighbors(pos, cutoff=4.0, max_neighbors=8)
    ref_i, ref_j = brute_force(pos, 4.0, 8)
    np.testing.assert_array_equal(idx_i, ref_i)
    np.testing.assert_array_equal(idx_j, ref_j)


def test_cap_keeps_the_32_nearest():
    rng = np.random.default_rng(7)
    pos = rng.normal(scale=1.0, size=(40, 3))  # all pairs well within 10 A
    idx_i, idx_j = radius_neighbors(pos, cutoff=10.0, max_neighbors=32)
    assert len(idx_i) == 40 * 32
    np.testing.assert_array_equal(np.bincount(idx_i), np.full(40, 32))
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    for i in range(40):
        kept = idx_j[idx_i == i]
        others = np.setdiff1d(np.arange(40), np.append(kept, i))
        assert len(others) == 7
        assert i not in kept and len(set(kept)) == 32
        assert dist[i, kept].max() < dist[i, others].min()
        assert np.all(np.diff(dist[i, kept]) >= 0)  # nearest first
    # without a cap everyone sees the 39 others
    all_i, _ = radius_neighbors(pos, cutoff=10.0, max_neighbors=None)
    assert len(all_i) == 40 * 39


def test_cutoff_is_strict():
    pos = np.array(
        [
            [0.0, 0.0, 0.0],
            [10.0, 0.0, 0.0],  # exactly at the cutoff from atom 0: excluded
            [0.0, 9.999, 0.0],  # just inside from atom 0
            [0.0, 0.0, -10.001],  # just outside from atom 0
        ]
    )
    idx_i, idx_j = radius_neighbors(pos, cutoff=10.0)
    assert list(zip(idx_i.tolist(), idx_j.tolist())) == [(0, 2), (2, 0)]


def test_ties_broken_by_lower_index_and_sorted_by_distance():
    pos = np.array(
        [
            [0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0],
            [-1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    idx_i, idx_j = radius_neighbors(pos, cutoff=1.5, max_neighbors=3)
    # atom 0: atoms 2, 3, 4, 5 at exactly 1.0 (atom 1 is out at 2.0) -> the three lowest indices
    assert idx_j[idx_i == 0].tolist() == [2, 3, 4]
    i2, j2 = radius_neighbors(pos, cutoff=2.5, max_neighbors=None)
    assert j2[i2 == 0].tolist() == [2, 3, 4, 5, 1]  # sorted by distance, then index
    assert np.all(np.diff(i2) >= 0)


def test_symmetric_without_cap():
    pos = np.random.default_rng(11).uniform(0, 6, size=(30, 3))
    idx_i, idx_j = radius_neighbors(pos, cutoff=3.0, max_neighbors=None)
    pairs = set(zip(idx_i.tolist(), idx_j.tolist()))
    assert pairs == {(j, i) for i, j in pairs}


@pytest.mark.parametrize(
    "pos, kwargs, word",
    [
        (np.zeros((4, 2)), {}, "shape"),
        (np.zeros(3), {}, "shape"),
        (np.zeros((4, 3)), {"cutoff": 0.0}, "cutoff"),
        (np.zeros((4, 3)), {"max_neighbors": 0}, "max_neighbors"),
        (np.zeros((4, 3)), {"max_neighbors": 2.5}, "max_neighbors"),
        (np.array([[0.0, 0.0, np.nan], [0.0, 0.0, 0.0]]), {}, "non-finite"),
    ],
)
def test_bad_arguments(pos, kwargs, word):
    with pytest.raises(ValueError, match=word):
        radius_neighbors(pos, **kwargs)
