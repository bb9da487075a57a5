"""Contrastive objectives between the 2D and 3D views: EBM-NCE and InfoNCE.

Both compare the graph-level 2D representation ``X`` (mean-pooled GIN output, [B, D]) with the
3D representation ``Y`` (SchNet output, [B, D]) of the same molecules; sample ``k`` of one view
is the positive of sample ``k`` of the other. With ``normalize`` both are L2-normalised first,
so the score ``x . y / T`` is a cosine similarity over a temperature. The loss is symmetric:
``(L(X, Y) + L(Y, X)) / 2``, and so is the reported accuracy. Nothing is detached.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import OBJECTIVES, Metrics


def cyclic_shift_index(num: int, shift: int, device: torch.device | None = None) -> Tensor:
    """Index [num] int64 that pairs row ``k`` with row ``(k + shift) % num``.

    For ``0 < shift <= num`` this is the upstream ``cycle_index``; larger shifts wrap around
    instead of failing.
    """
    return (torch.arange(num, device=device) + shift) % num


def _check_pair(z2d: Tensor, z3d: Tensor) -> None:
    if z2d.dim() != 2 or z3d.dim() != 2 or z2d.shape != z3d.shape:
        raise ValueError(
            f"expected 2D and 3D representations of equal shape [B, D], got {tuple(z2d.shape)} "
            f"and {tuple(z3d.shape)}"
        )
    if z2d.shape[0] == 0:
        raise ValueError("expected a non-empty batch, got B = 0")


def ebm_nce_one_way(x: Tensor, y: Tensor, temperature: float, num_negatives: int) -> Tuple[Tensor, Tensor]:
    """EBM-NCE of ``x`` [B, D] against ``y`` [B, D]; returns (loss, accuracy), both scalars.

    Positives: ``(x_k, y_k)``. Negatives: for each shift ``i = 1..K``, ``(x_k, y_{(k+i) % B})``.
    Scores are ``sum(x * y) / T``; loss = ``BCE(pos, 1) + K * BCE(neg, 0)`` (each a mean over its
    pairs). Accuracy = fraction of positives scored > 0 and negatives scored < 0.
    For ``K >= B`` some negatives are positives again (as upstream does for ``K == B``).
    """
    batch = x.shape[0]
    neg_y = torch.cat([y[cyclic_shift_index(batch, i, y.device)] for i in range(1, num_negatives + 1)])
    neg_x = x.repeat(num_negatives, 1)
    pred_pos = (x * y).sum(dim=1) / temperature
    pred_neg = (neg_x * neg_y).sum(dim=1) / temperature
    loss_pos = F.binary_cross_entropy_with_logits(pred_pos, torch.ones_like(pred_pos))
    loss_neg = F.binary_cross_entropy_with_logits(pred_neg, torch.zeros_like(pred_neg))
    loss = loss_pos + num_negatives * loss_neg
    with torch.no_grad():
        correct = (pred_pos > 0).sum() + (pred_neg < 0).sum()
        acc = correct.float() / (pred_pos.numel() + pred_neg.numel())
    return loss, acc


def infonce_one_way(x: Tensor, y: Tensor, temperature: float) -> Tuple[Tensor, Tensor]:
    """InfoNCE of ``x`` [B, D] against ``y`` [B, D]; returns (loss, accuracy), both scalars.

    Logits ``x @ y.T / T`` [B, B]; cross-entropy (mean over rows) with row ``k``'s label ``k``.
    Accuracy = fraction of rows whose arg-max is the diagonal.
    """
    logits = x @ y.t() / temperature
    labels = torch.arange(x.shape[0], device=x.device)
    loss = F.cross_entropy(logits, labels)
    with torch.no_grad():
        acc = (logits.argmax(dim=1) == labels).float().mean()
    return loss, acc


class DualContrastive(nn.Module):
    """Symmetric contrastive loss between 2D and 3D representations (base class).

    Subclasses define :meth:`one_way` ``(x, y) -> (loss, acc)``.
    ``forward(z2d [B, D], z3d [B, D]) -> (loss, metrics)`` with metrics ``acc_2d_3d`` (2D
    anchors against 3D candidates), ``acc_3d_2d`` and their mean ``acc_cl``.
    """

    kind = "contrastive"

    def __init__(self, temperature: float = 0.2, normalize: bool = True):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.normalize = bool(normalize)

    def one_way(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, z2d: Tensor, z3d: Tensor) -> Tuple[Tensor, Metrics]:
        _check_pair(z2d, z3d)
        if self.normalize:
            z2d = F.normalize(z2d, p=2, dim=-1)
            z3d = F.normalize(z3d, p=2, dim=-1)
        loss_23, acc_23 = self.one_way(z2d, z3d)
        loss_32, acc_32 = self.one_way(z3d, z2d)
        loss = (loss_23 + loss_32) / 2
        metrics = {
            "acc_2d_3d": float(acc_23),
            "acc_3d_2d": float(acc_32),
            "acc_cl": float((acc_23 + acc_32) / 2),
        }
        return loss, metrics

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}"


@OBJECTIVES.register("ebm-nce")
class EBMNCE(DualContrastive):
    """EBM-NCE (GraphMVP's default contrastive objective), both directions averaged.

    Args:
        temperature: ``T`` dividing the scores; 0.2 (released GraphMVP and GraphMVP-C; GraphMVP-G
            used 0.05).
        normalize: L2-normalise both views first; True (all released settings).
        num_negatives: ``K`` cyclic shifts of the other view used as negatives; 1 (released).
    """

    def __init__(self, temperature: float = 0.2, normalize: bool = True, num_negatives: int = 1):
        super().__init__(temperature=temperature, normalize=normalize)
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"num_negatives must be an int >= 1, got {num_negatives!r}")
        self.num_negatives = num_negatives

    def one_way(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        return ebm_nce_one_way(x, y, self.temperature, self.num_negatives)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_negatives={self.num_negatives}"


@OBJECTIVES.register("infonce")
class InfoNCE(DualContrastive):
    """InfoNCE over the in-batch similarity matrix, both directions averaged.

    Args:
        temperature: ``T`` dividing the logits; 0.2 (the released GraphMVP value).
        normalize: L2-normalise both views first; True (released).
    """

    def one_way(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        return infonce_one_way(x, y, self.temperature)
