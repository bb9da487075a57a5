"""Infomax (Deep Graph Infomax, Velickovic et al., ICLR 2019, as used for molecules by Hu et al.,
"Strategies for Pre-training Graph Neural Networks", ICLR 2020; "InfoGraph" in GraphMVP's
Table 1): does this atom belong to this molecule?

Per molecule ``b`` of a batch of B, the summary is ``s_b = sigmoid(mean of its node
representations)`` [D]. A bilinear discriminator scores a (node, summary) pair as
``x^T W s`` (``W`` [D, D], initialised uniform in ``±1/sqrt(D)``). Positives: every node with its
own molecule's summary; negatives: every node with the summary of the *next* molecule of the
batch, cyclically (molecule ``b`` gets ``s_{(b+1) % B}``, Hu et al.'s shift by one). Loss =
``BCE(pos, 1) + BCE(neg, 0)`` on logits, each a mean over the N nodes. Gradients flow through the
summaries as well (nothing is detached), as in DGI.

Deviation (stated): none in what is computed. The name "InfoGraph" in GraphMVP's table refers to
this node-vs-graph Infomax baseline of Hu et al., not to InfoGraph's multi-scale local/global
JSD estimator (Sun et al. 2020), which is not implemented here.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contextpred import segment_mean
from .contrastive import cyclic_shift_index
from .registry import OBJECTIVES, Metrics


def infomax_summaries(node_reps: Tensor, node_graph: Tensor, num_graphs: int) -> Tensor:
    """``sigmoid(mean over each graph's nodes)``: [num_graphs, D] from ``node_reps`` [N, D] and
    ``node_graph`` [N] int64 (the graph 0..B-1 of every node; every graph needs a node)."""
    return torch.sigmoid(segment_mean(node_reps, node_graph, num_graphs))


@OBJECTIVES.register("infomax")
class Infomax(nn.Module):
    """Node-vs-summary discrimination with a bilinear discriminator (see the module docstring).

    Args:
        emb_dim: D of the node representations; 300.

    ``forward(node_reps [N, D], node_graph [N] int64, num_graphs B) -> (loss, metrics)``; needs
    B >= 2 (with one molecule the negative summary would be the positive one). Metrics:
    ``acc_infomax`` = (positives scored > 0 + negatives scored < 0) / 2N.
    """

    kind = "2d"

    def __init__(self, emb_dim: int = 300):
        super().__init__()
        if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
            raise ValueError(f"emb_dim must be an int >= 1, got {emb_dim!r}")
        self.weight = nn.Parameter(torch.empty(emb_dim, emb_dim))
        bound = 1.0 / math.sqrt(emb_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def discriminate(self, node_reps: Tensor, summaries: Tensor) -> Tensor:
        """Bilinear scores ``x_k^T W s_k`` [N] of rows ``node_reps`` [N, D], ``summaries`` [N, D]."""
        return ((node_reps @ self.weight) * summaries).sum(dim=1)

    def forward(self, node_reps: Tensor, node_graph: Tensor, num_graphs: int) -> Tuple[Tensor, Metrics]:
        if node_reps.dim() != 2:
            raise ValueError(f"node_reps must be [N, D], got shape {tuple(node_reps.shape)}")
        if node_graph.dim() != 1 or node_graph.dtype != torch.int64 or node_graph.shape[0] != node_reps.shape[0]:
            raise ValueError(
                f"node_graph must be int64 [N] with N = {node_reps.shape[0]}, got {node_graph.dtype} of shape "
                f"{tuple(node_graph.shape)}"
            )
        if int(num_graphs) < 2:
            raise ValueError(f"Infomax needs at least 2 molecules per batch (the negative is the next one), got {num_graphs}")
        summaries = infomax_summaries(node_reps, node_graph, int(num_graphs))
        shifted = summaries[cyclic_shift_index(int(num_graphs), 1, summaries.device)]
        pos = self.discriminate(node_reps, summaries[node_graph])
        neg = self.discriminate(node_reps, shifted[node_graph])
        loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)
        )
        with torch.no_grad():
            acc = ((pos > 0).sum() + (neg < 0).sum()).float() / (2 * pos.numel())
        return loss, {"acc_infomax": float(acc)}
