"""EdgePred (Hu et al., "Strategies for Pre-training Graph Neural Networks", ICLR 2020; the
GraphSAGE-style unsupervised link objective of Hamilton et al. 2017): are two atoms bonded?

The data pipeline gives, per molecule, its bonds as positive atom pairs (each bond once) and as
many atom pairs that are *not* bonded as negatives (fewer when the molecule has fewer non-bonded
pairs than bonds), drawn without replacement with the sample's generator
(:class:`graphmvp.pretrain.tasks.edgepred.EdgePredSampler`). The score of a pair is the dot
product of the two atoms' node representations; the loss is
``BCE(score_pos, 1) + BCE(score_neg, 0)`` on logits, each a mean over its pairs, as Hu et al.

Deviation (stated): Hu et al. draw random atom pairs and reject bonded ones; we draw uniformly
without replacement from the exact list of non-bonded pairs (same distribution up to
duplicates; no duplicate negatives within a molecule).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import OBJECTIVES, Metrics


def _check_pairs(name: str, pairs: Tensor, num_nodes: int) -> None:
    if pairs.dim() != 2 or pairs.shape[0] != 2 or pairs.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor [2, P], got {pairs.dtype} of shape {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes):
        raise ValueError(f"{name} holds node ids outside 0..{num_nodes - 1}")


def pair_scores(node_reps: Tensor, pairs: Tensor) -> Tensor:
    """Dot products ``h_i . h_j`` [P] of the atom pairs ``pairs`` [2, P] of ``node_reps`` [N, D]."""
    return (node_reps[pairs[0]] * node_reps[pairs[1]]).sum(dim=1)


@OBJECTIVES.register("edgepred")
class EdgePrediction(nn.Module):
    """Bonded-or-not classification of atom pairs from dot products of node representations.

    No parameters of its own (Hu et al.'s EdgePred has no head).

    ``forward(node_reps [N, D], positive [2, P] int64, negative [2, Q] int64) -> (loss, metrics)``:
    ``positive`` / ``negative`` hold node ids in the batched graph (bonded pairs / non-bonded
    pairs). ``loss = BCE(pos, 1) + BCE(neg, 0)`` (means; the negative term is left out when
    Q = 0, which only happens for batches of molecules without any non-bonded pair).
    Metrics: ``acc_edgepred`` = (positives scored > 0 + negatives scored < 0) / (P + Q).
    """

    kind = "2d"

    def __init__(self) -> None:  # no arguments (the edgepred method declares none)
        super().__init__()

    def forward(self, node_reps: Tensor, positive: Tensor, negative: Tensor) -> Tuple[Tensor, Metrics]:
        if node_reps.dim() != 2:
            raise ValueError(f"node_reps must be [N, D], got shape {tuple(node_reps.shape)}")
        _check_pairs("positive", positive, node_reps.shape[0])
        _check_pairs("negative", negative, node_reps.shape[0])
        if positive.shape[1] == 0:
            raise ValueError("no positive pairs: the batch has no bond")
        pos = pair_scores(node_reps, positive)
        loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        correct = (pos > 0).sum()
        total = pos.numel()
        if negative.shape[1] > 0:
            neg = pair_scores(node_reps, negative)
            loss = loss + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
            correct = correct + (neg < 0).sum()
            total += neg.numel()
        return loss, {"acc_edgepred": float(correct) / total}
