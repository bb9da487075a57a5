"""Checks and the accuracy metric shared by the 2D objectives that classify atoms or steps
(AttrMask and its targets, GPT-GNN's next atom type, G-Contextual's labels)."""

from __future__ import annotations

from torch import Tensor


def check_class_range(name: str, labels: Tensor, num_classes: int, hint: str = "") -> None:
    """Raise ``ValueError`` unless every entry of the non-empty ``labels`` is a class index in
    ``0..num_classes-1`` (``hint``: appended to the message, e.g. where the labels come from)."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} values must be in 0..{num_classes - 1}, got range {low}..{high}{hint}")


def argmax_accuracy(scores: Tensor, labels: Tensor) -> float:
    """Fraction of rows of ``scores`` [M, C] whose arg-max is ``labels`` [M] (no gradient)."""
    return float((scores.detach().argmax(dim=1) == labels).float().mean())
