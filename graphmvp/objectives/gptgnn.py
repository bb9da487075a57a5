"""GPT-GNN's attribute generation (Hu et al., "GPT-GNN: Generative Pre-Training of Graph Neural
Networks", KDD 2020), ported to molecules: predict the type of the next atom along a BFS order.

GPT-GNN factorises a graph's likelihood autoregressively over a node order: each node's
attributes are generated given the nodes (and edges) generated before it. Its attribute
generation step encodes the new node as a *dummy* node (attributes replaced by a learned token)
linked by its observed edges to the earlier nodes, and decodes the attributes from the dummy
node's output representation.

Molecular port (the data side is :mod:`graphmvp.pretrain.tasks.gptgnn`): the node order is a
breadth-first order from a random start atom; a prefix of k >= 1 atoms plus the (k+1)-th atom
with its features set to the mask token (type 119, chirality 0) and its true bonds to the prefix
is encoded by the 2D encoder, and the (k+1)-th atom's type index (Z - 1, 119 classes) is
predicted by a linear head from that atom's node representation (``context="node"``, GPT-GNN's
dummy node) or from the pooled representation of the prefix graph alone (``context="graph"``).
This module is the head and the loss; which representation it receives is the task's choice.

Deviations from GPT-GNN: no edge generation (the molecular baselines of GraphMVP's table
predict atom types only, ``../shared/reference/SSL_METHODS.md``); one independent prefix graph
per generated atom instead of GPT-GNN's single graph with separate attribute/edge generation
node copies (same conditioning, more encoder work); the order is BFS rather than a random
permutation.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .class_labels import argmax_accuracy, check_class_range
from .registry import OBJECTIVES, Metrics


@OBJECTIVES.register("gpt-gnn")
class GPTGNNAttributeGeneration(nn.Module):
    """Next-atom-type prediction (GPT-GNN attribute generation, molecular port).

    Args:
        emb_dim: D of the representations it receives; 300 (Hu et al.'s GIN).
        num_atom_types: classes, atom type indices 0..118; 119 (the mask token is never a target).

    ``forward(reps [P, D], next_type [P] int64) -> (loss, metrics)``: ``reps`` holds one
    representation per generation step (the dummy node's, or the pooled prefix graph's),
    ``next_type`` the true type index of the atom to generate. ``loss`` = mean cross-entropy of
    ``Linear(D, 119)(reps)``; metrics: ``acc_gpt_gnn`` (fraction of steps whose arg-max is the
    true type).
    """

    kind = "2d"

    def __init__(self, emb_dim: int = 300, num_atom_types: int = 119):
        super().__init__()
        for name, value in (("emb_dim", emb_dim), ("num_atom_types", num_atom_types)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.num_atom_types = num_atom_types
        self.classifier = nn.Linear(emb_dim, num_atom_types)

    def forward(self, reps: Tensor, next_type: Tensor) -> Tuple[Tensor, Metrics]:
        if reps.dim() != 2:
            raise ValueError(f"reps must be [P, D], got shape {tuple(reps.shape)}")
        if next_type.dim() != 1 or next_type.shape[0] != reps.shape[0] or next_type.dtype != torch.int64:
            raise ValueError(
                f"next_type must be int64 [P] with P = {reps.shape[0]} rows of reps, got {next_type.dtype} "
                f"of shape {tuple(next_type.shape)}"
            )
        if next_type.numel() == 0:
            raise ValueError("no generation steps: next_type is empty")
        check_class_range("next_type", next_type, self.num_atom_types)
        logits = self.classifier(reps)
        loss = F.cross_entropy(logits, next_type)
        return loss, {"acc_gpt_gnn": argmax_accuracy(logits, next_type)}


__all__ = ["GPTGNNAttributeGeneration"]
