"""Training losses with missing labels (NaN) ignored.

* ``masked_bce``: binary cross-entropy with logits over the valid entries of a [B, T] label
  matrix, averaged over those entries (Hu et al.'s multi-task loss: a molecule may be labelled
  for some tasks only).
* ``mse``: squared error over the valid entries, averaged over them.

A batch without any valid label gives a zero loss that still depends on the predictions (so the
backward pass runs and changes nothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphmvp.registry import Registry


def _check(pred: Tensor, target: Tensor) -> Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"predictions have shape {tuple(pred.shape)} but labels {tuple(target.shape)}")
    return ~torch.isnan(target)


def masked_bce_with_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE over the valid entries. ``logits``, ``labels``: float [B, T], labels 0/1/NaN."""
    valid = _check(logits, labels)
    n = valid.sum()
    if n == 0:
        return logits.sum() * 0.0
    per_entry = F.binary_cross_entropy_with_logits(logits, torch.where(valid, labels, torch.zeros_like(labels)), reduction="none")
    return (per_entry * valid).sum() / n


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the valid entries. ``pred``, ``target``: float [B, T]."""
    valid = _check(pred, target)
    n = valid.sum()
    if n == 0:
        return pred.sum() * 0.0
    diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return (diff * diff).sum() / n


#: loss name (TaskType.loss) -> ``f(pred [B, T], target [B, T]) -> scalar``
LOSSES: Registry = Registry("loss")
LOSSES.register("masked_bce")(masked_bce_with_logits)
LOSSES.register("mse")(masked_mse)

__all__ = ["LOSSES", "masked_bce_with_logits", "masked_mse"]
