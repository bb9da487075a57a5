"""Evaluation metrics, on numpy arrays; ranks, the rank-sum statistic and the correlations are scipy's.

Why scipy and not scikit-learn: scipy is already in every install (ase and schnetpack need it),
while scikit-learn would be a core dependency for one function; ROC-AUC is the Mann-Whitney U
statistic divided by ``n+ n-`` (``scipy.stats.mannwhitneyu``), the same number as scikit-learn's
``roc_auc_score`` (the tests check both against each other when scikit-learn is installed).

Missing labels are NaN throughout. All functions take 1D or 2D float arrays and return python
floats (NaN when the metric is undefined, e.g. a constant prediction for Pearson).

* :func:`roc_auc`: area under the ROC curve from the Mann-Whitney U statistic with average ranks
  for tied scores; this equals the trapezoidal area of the ROC curve (scikit-learn's
  ``roc_auc_score``), ties counting one half.
* :func:`multitask_roc_auc`: per-task ROC-AUC over the valid labels of each task, averaged over
  the tasks that have both classes in the evaluated split (Hu et al. / GraphMVP protocol; the
  others are skipped and reported).
* :func:`rmse`, :func:`mae`, :func:`mse`: over all valid (non-NaN) label entries, pooled.
* :func:`concordance_index`: DeepDTA's CI, over all pairs with ``y_i > y_j``: 1 if
  ``p_i > p_j``, 1/2 if ``p_i == p_j``, 0 otherwise, divided by the number of such pairs;
  computed in O(n log n) with a Fenwick tree.
* :func:`pearson`, :func:`spearman` (Pearson of average ranks).

:data:`METRICS` maps metric names to ``f(labels, predictions) -> float``; classification metrics
take logits or probabilities alike (ROC-AUC depends only on the order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

from graphmvp.registry import Registry


def _as_2d(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected a [n] or [n, tasks] array, got shape {a.shape}")
    return a


def _check_shapes(y: np.ndarray, p: np.ndarray) -> None:
    if y.shape != p.shape:
        raise ValueError(f"labels have shape {y.shape} but predictions have shape {p.shape}")


def average_ranks(x) -> np.ndarray:
    """1-based ranks of ``x`` [n], tied values sharing the average of their ranks (float64 [n])."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return stats.rankdata(x, method="average").astype(np.float64) if x.size else np.zeros(0)


def roc_auc(labels, scores) -> float:
    """ROC-AUC of binary ``labels`` [n] (0/1; NaN entries ignored) for ``scores`` [n].

    ``(R+ - n+(n+ + 1)/2) / (n+ n-)`` with R+ the sum of the average ranks of the positives.
    NaN if only one class is present; a non-finite score is a ``ValueError`` (it must not pass
    for a task without both classes and drop out of an average).
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels have shape {y.shape} but scores have shape {s.shape}")
    valid = ~np.isnan(y)
    y, s = y[valid], s[valid]
    if not np.all((y == 0) | (y == 1)):
        bad = np.unique(y[(y != 0) & (y != 1)])[:5]
        raise ValueError(f"ROC-AUC needs labels 0/1, got {bad.tolist()}")
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if not np.all(np.isfinite(s)):  # a diverged model, not a task without both classes: never NaN
        raise ValueError(f"ROC-AUC of non-finite scores ({int((~np.isfinite(s)).sum())} of {s.shape[0]} NaN/inf)")
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = stats.mannwhitneyu(s[y == 1], s[y == 0], alternative="two-sided", method="asymptotic").statistic
    return float(u / (n_pos * n_neg))


@dataclass
class MultitaskAUC:
    """``mean``: average over evaluated tasks (NaN if none); ``per_task``: [T] (NaN = skipped,
    a task without both classes); ``evaluated``: how many tasks entered the mean."""

    mean: float
    per_task: list[float]
    evaluated: int

    @property
    def skipped(self) -> int:
        return len(self.per_task) - self.evaluated


def multitask_roc_auc(labels, scores) -> MultitaskAUC:
    """Per-task ROC-AUC of ``labels`` [n, T] (0/1/NaN) and ``scores`` [n, T], averaged over the
    tasks that have both classes among their valid labels."""
    y, s = _as_2d(labels), _as_2d(scores)
    _check_shapes(y, s)
    per_task = [roc_auc(y[:, t], s[:, t]) for t in range(y.shape[1])]
    done = [a for a in per_task if not np.isnan(a)]
    mean = float(np.mean(done)) if done else float("nan")
    return MultitaskAUC(mean=mean, per_task=per_task, evaluated=len(done))


def _valid_pairs(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    y, p = _as_2d(labels), _as_2d(predictions)
    _check_shapes(y, p)
    valid = ~np.isnan(y)
    return y[valid], p[valid]


def mse(labels, predictions) -> float:
    """Mean squared error over the valid entries (NaN labels ignored)."""
    y, p = _valid_pairs(labels, predictions)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def rmse(labels, predictions) -> float:
    """Root mean squared error over the valid entries."""
    return float(np.sqrt(mse(labels, predictions)))


def mae(labels, predictions) -> float:
    """Mean absolute error over the valid entries."""
    y, p = _valid_pairs(labels, predictions)
    return float(np.mean(np.abs(p - y))) if y.size else float("nan")


def _constant(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def pearson(labels, predictions) -> float:
    """Pearson correlation over the valid entries; NaN when either side is constant."""
    y, p = _valid_pairs(labels, predictions)
    if y.size < 2 or _constant(y) or _constant(p):
        return float("nan")
    return float(stats.pearsonr(y, p).statistic)


def spearman(labels, predictions) -> float:
    """Spearman rank correlation (Pearson of average ranks) over the valid entries; NaN when
    either side is constant."""
    y, p = _valid_pairs(labels, predictions)
    if y.size < 2 or _constant(y) or _constant(p):
        return float("nan")
    return float(stats.spearmanr(y, p).statistic)


def concordance_index(labels, predictions) -> float:
    """DeepDTA's concordance index over the valid entries (see the module docstring).

    O(n log n): samples are visited in increasing label order, one group of equal labels at a
    time; a Fenwick tree over the prediction ranks counts, among the samples with a smaller
    label, those with a smaller and with an equal prediction. NaN if all labels are equal.
    """
    y, p = _valid_pairs(labels, predictions)
    n = y.shape[0]
    if n < 2:
        return float("nan")
    # dense ranks of the predictions: 1..K (Fenwick indices)
    uniq, p_rank = np.unique(p, return_inverse=True)
    p_rank = (p_rank + 1).tolist()
    size = len(uniq)
    tree = [0] * (size + 1)

    def prefix(i: int) -> int:  # how many inserted predictions have rank <= i
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    order = np.argsort(y, kind="mergesort")
    ys = y[order]
    boundaries = np.flatnonzero(np.diff(ys)) + 1
    groups = np.split(order, boundaries)
    inserted = 0
    pairs = 0
    score2 = 0  # twice the concordance sum (integer arithmetic)
    for group in groups:
        members = group.tolist()
        if inserted:
            for i in members:
                r = p_rank[i]
                less = prefix(r - 1)
                equal = prefix(r) - less
                score2 += 2 * less + equal
            pairs += inserted * len(members)
        for i in members:
            r = p_rank[i]
            while r <= size:
                tree[r] += 1
                r += r & -r
        inserted += len(members)
    if pairs == 0:
        return float("nan")
    return float(score2 / (2.0 * pairs))


def concordance_index_bruteforce(labels, predictions) -> float:
    """The O(n^2) definition of :func:`concordance_index` (for tests and small inputs)."""
    y, p = _valid_pairs(labels, predictions)
    greater = y[:, None] > y[None, :]
    pairs = int(greater.sum())
    if pairs == 0:
        return float("nan")
    score = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    return float(score[greater].sum() / pairs)


def _roc_auc_metric(labels, scores) -> float:
    return multitask_roc_auc(labels, scores).mean


#: metric name -> ``f(labels, predictions) -> float``
METRICS: Registry = Registry("metric")
for _name, _fn in (
    ("roc_auc", _roc_auc_metric),
    ("rmse", rmse),
    ("mae", mae),
    ("mse", mse),
    ("ci", concordance_index),
    ("pearson", pearson),
    ("spearman", spearman),
):
    METRICS.register(_name)(_fn)


def compute_metrics(names, labels, predictions) -> dict[str, float]:
    """``{name: value}`` for the metric ``names``."""
    out: dict[str, float] = {}
    for name in names:
        fn: Callable = METRICS.get(name)
        out[name] = fn(labels, predictions)
    return out


__all__ = [
    "METRICS",
    "MultitaskAUC",
    "average_ranks",
    "compute_metrics",
    "concordance_index",
    "concordance_index_bruteforce",
    "mae",
    "mse",
    "multitask_roc_auc",
    "pearson",
    "rmse",
    "roc_auc",
    "spearman",
]
