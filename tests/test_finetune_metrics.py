"""Fine-tuning losses and metrics against hand-computed values and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graphmvp.finetune.losses import masked_bce_with_logits, masked_mse
from graphmvp.finetune.metrics import (
    average_ranks,
    compute_metrics,
    concordance_index,
    concordance_index_bruteforce,
    mae,
    multitask_roc_auc,
    pearson,
    rmse,
    roc_auc,
    spearman,
)

NAN = float("nan")


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_masked_bce_equals_hand_computed_mean_over_valid_entries():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [-3.0, 0.5]], requires_grad=True)
    labels = torch.tensor([[1.0, NAN], [0.0, 1.0], [NAN, 0.0]])
    # valid entries: (0,0) y=1 logit 0 -> softplus(-0); (1,0) y=0 logit 1 -> softplus(1);
    # (1,1) y=1 logit -1 -> softplus(1); (2,1) y=0 logit 0.5 -> softplus(0.5)
    expected = (softplus(0.0) + softplus(1.0) + softplus(1.0) + softplus(0.5)) / 4
    loss = masked_bce_with_logits(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.0734372, rel=1e-6)
    loss.backward()
    # missing labels get no gradient; a valid entry gets (sigmoid(x) - y) / n_valid
    assert logits.grad[0, 1] == 0 and logits.grad[2, 0] == 0
    assert logits.grad[0, 0].item() == pytest.approx((0.5 - 1.0) / 4)
    assert logits.grad[2, 1].item() == pytest.approx((1 / (1 + math.exp(-0.5)) - 0.0) / 4)


def test_masked_losses_without_any_label_are_zero_and_differentiable():
    x = torch.zeros(2, 3, requires_grad=True)
    y = torch.full((2, 3), NAN)
    for fn in (masked_bce_with_logits, masked_mse):
        loss = fn(x, y)
        assert loss.item() == 0.0
        loss.backward()


def test_masked_mse_ignores_missing_targets():
    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    target = torch.tensor([[0.0, NAN], [3.0, 1.0]])
    assert masked_mse(pred, target).item() == pytest.approx((1 + 0 + 16) / 3)


def test_roc_auc_hand_example_with_tied_scores():
    # positives 0.9, 0.8, 0.4; negatives 0.8, 0.1: pairs 1 + 1 + 0.5 (tie) + 1 + 0 + 1 = 4.5 of 6
    assert roc_auc([1, 0, 1, 0, 1], [0.9, 0.8, 0.8, 0.1, 0.4]) == pytest.approx(0.75)


def test_roc_auc_equals_pair_counting_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(float)
    s = rng.integers(0, 20, 300).astype(float)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)


def test_multitask_roc_auc_skips_single_class_tasks_and_missing_labels():
    labels = np.array([
        [1, 1, NAN],
        [0, 1, 1],
        [1, NAN, 0],
        [0, 1, NAN],
        [1, NAN, 0],
        [NAN, 1, NAN],
    ])
    scores = np.array([
        [0.9, 0.1, 5.0],
        [0.8, 0.2, 0.3],
        [0.8, 0.3, 0.2],
        [0.1, 0.4, -1.0],
        [0.4, 0.5, 0.7],
        [100.0, 0.6, 9.0],
    ])
    res = multitask_roc_auc(labels, scores)
    # task 0: the hand example above (row 5 unlabelled) = 0.75; task 1: only positives -> skipped;
    # task 2: positive 0.3 vs negatives 0.2 (win) and 0.7 (loss) = 0.5
    assert res.per_task[0] == pytest.approx(0.75)
    assert math.isnan(res.per_task[1])
    assert res.per_task[2] == pytest.approx(0.5)
    assert res.evaluated == 2 and res.skipped == 1
    assert res.mean == pytest.approx((0.75 + 0.5) / 2)
    assert compute_metrics(["roc_auc"], labels, scores)["roc_auc"] == pytest.approx(0.625)


def test_roc_auc_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])


def test_concordance_index_hand_example():
    # pairs with y_i > y_j: (y=2 vs 1): p 3 > 1 -> 1; (3 vs 1): 2 > 1 -> 1; (3 vs 2): 2 < 3 -> 0
    assert concordance_index([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 3)
    # a tied prediction counts one half
    assert concordance_index([1, 2], [5, 5]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_concordance_index_equals_bruteforce_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 250
    y = rng.integers(0, 15, n).astype(float)  # tied labels
    p = np.round(y + rng.normal(0, 3, n))  # tied predictions
    fast = concordance_index(y, p)
    # independent O(n^2) loop, the DeepDTA definition
    num = den = 0.0
    for i in range(n):
        for j in range(n):
            if y[i] > y[j]:
                den += 1
                num += 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
    assert fast == pytest.approx(num / den, abs=1e-12)
    assert concordance_index_bruteforce(y, p) == pytest.approx(num / den, abs=1e-12)


def test_regression_metrics_skip_missing_labels():
    y = np.array([[1.0], [NAN], [3.0], [0.0]])
    p = np.array([[2.0], [100.0], [1.0], [0.0]])
    assert rmse(y, p) == pytest.approx(math.sqrt((1 + 4 + 0) / 3))
    assert mae(y, p) == pytest.approx((1 + 2 + 0) / 3)


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 10, 30]).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_pearson_and_spearman_match_their_definitions():
    """Independent of scipy: numpy's corrcoef, and Spearman as Pearson of hand-averaged ranks."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 10, 200).astype(float)
    p = y * 0.5 + rng.normal(0, 2, 200)
    p[::7] = p[0]  # ties in the predictions
    assert pearson(y, p) == pytest.approx(np.corrcoef(y, p)[0, 1], abs=1e-10)

    def ranks(a):  # average of the 1-based positions of each value's ties, by brute force
        return np.array([np.mean([i + 1 for i, b in enumerate(sorted(a)) if b == v]) for v in a])

    assert spearman(y, p) == pytest.approx(np.corrcoef(ranks(y), ranks(p))[0, 1], abs=1e-10)
    assert math.isnan(pearson([1, 2, 3], [4, 4, 4]))
    assert math.isnan(spearman([1, 1, 1], [4, 5, 6]))
    assert spearman([1, 2, 3, NAN], [10, 20, 30, 0]) == pytest.approx(1.0)


def test_roc_auc_equals_scikit_learn_where_installed():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is in the [bench] extra only")
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, (400, 3)).astype(float)
    s = np.round(rng.normal(size=(400, 3)) + y, 1)  # ties
    y[::9, 1] = NAN
    auc = multitask_roc_auc(y, s)
    for t in range(3):
        valid = ~np.isnan(y[:, t])
        assert auc.per_task[t] == pytest.approx(metrics.roc_auc_score(y[valid, t], s[valid, t]), abs=1e-12)