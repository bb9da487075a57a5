"""Ensembles (``--ensemble N``): N models per run seed, their predictions averaged.

Member ``k`` of run seed ``s`` trains exactly like a single run of seed ``s`` - same split, same
data, same options - except that its initialisation, dropout and batch order are seeded with
:func:`member_seed` ``(s, k)`` (member 0 uses ``s`` itself, so ``--ensemble 1`` is the plain run).

Best epoch: every member is selected on its own - the first epoch with its best validation
value, with its own early stopping - and the ensemble's prediction is the mean of the members'
predictions at their own best-validation epochs (``*_at_best``); ``*_at_last`` averages the
members' predictions at their last trained epoch. The ensemble's validation and test metrics
are computed on these mean predictions. There is no common "ensemble epoch": members may stop at
different epochs, as chemprop's ensembles do.

Averaging (:func:`average`): regression outputs in label units; classification probabilities
(the sigmoid of each member's logits), never logits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def member_seed(seed: int, member: int) -> int:
    """The seed of member ``member`` of run seed ``seed``: ``seed`` for member 0, else a 31-bit
    value drawn from ``numpy.random.SeedSequence((seed, member))`` (deterministic, distinct per
    (seed, member) with overwhelming probability)."""
    if member == 0:
        return int(seed)
    return int(np.random.SeedSequence((int(seed), int(member))).generate_state(1)[0] >> 1)


def to_output(pred: np.ndarray, task_type: str) -> np.ndarray:
    """What is averaged: probabilities for classification (from logits), the values otherwise."""
    pred = np.asarray(pred, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-pred)) if task_type == "classification" else pred


def average(member_predictions: Sequence[np.ndarray], task_type: str) -> np.ndarray:
    """The ensemble's prediction: the mean over members of :func:`to_output` ([n, T])."""
    return np.mean([to_output(p, task_type) for p in member_predictions], axis=0)


def member_name(seed: int, member: int, size: int) -> str:
    """``seed_<s>`` for a single model, ``seed_<s>_member_<k>`` in an ensemble."""
    return f"seed_{seed}" if size == 1 else f"seed_{seed}_member_{member}"


__all__ = ["average", "member_name", "member_seed", "to_output"]
