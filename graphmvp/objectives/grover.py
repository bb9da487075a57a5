"""GROVER's two self-supervised tasks (Rong et al., "Self-Supervised Graph Transformer on
Large-Scale Molecular Data", NeurIPS 2020) on our 2D encoders, as in GraphMVP's table
(G-Contextual, G-Motif: GROVER's tasks on Hu et al.'s GIN, not GROVER's transformer).

G-Contextual (``g-contextual``)
    Contextual property prediction: every atom has a label, its element symbol followed by the
    sorted counts of its (neighbour symbol, bond type) pairs (:mod:`graphmvp.chem.contextual`),
    mapped to a vocabulary whose class 0 is ``<other>`` (rare or unseen labels); ``<other>`` is a
    class like the others, as in GROVER. A linear head predicts the class of ``ceil(0.15 n)``
    randomly chosen atoms per molecule from their node representations (cross-entropy).
    GROVER's paper describes masking the chosen atoms' neighbourhood; its released collator only
    chooses the atoms whose labels count, with unchanged inputs (tencent-ailab/grover issues #18,
    #19): the release's behaviour is the default and the task's ``mask_atoms`` option gives the
    masked-input reading. GROVER's edge-level contextual task (bond labels) is not included.
G-Motif (``g-motif``)
    Semantic motif prediction: multi-label binary cross-entropy of the presence flags of RDKit's
    85 ``fr_*`` functional groups (:mod:`graphmvp.chem.functional_groups`) from the pooled graph
    representation through a linear head.

Labels come precomputed from the store's label sidecar (``graphmvp-prep labels STORE``); the
data side is :mod:`graphmvp.pretrain.tasks.grover`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmvp.chem.functional_groups import NUM_FUNCTIONAL_GROUPS

from .class_labels import argmax_accuracy, check_class_range
from .registry import OBJECTIVES, Metrics

#: the sidecar kind of G-Contextual's labels
CONTEXTUAL_KIND = "contextual"


def _check_dim(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def contextual_num_classes(store: Optional[str]) -> int:
    """The size of the contextual vocabulary of ``store``'s label sidecar (``<other>`` included).

    Raises ``ValueError`` naming the command that builds the sidecar when there is none."""
    from graphmvp.data.annotations import AtomLabels, rebuild_command

    if store is None:
        raise ValueError(
            "g-contextual needs the store's contextual vocabulary: give the store (its label sidecar is built with: "
            f"{rebuild_command('STORE', [CONTEXTUAL_KIND])}) or num_classes"
        )
    return int(AtomLabels.open(store, CONTEXTUAL_KIND, preload=False).num_classes)


@OBJECTIVES.register("g-contextual")
class GroverContextual(nn.Module):
    """G-Contextual: predict the contextual class of the chosen atoms.

    Args:
        emb_dim: D of the node representations; 300.
        store: the store whose label sidecar gives the vocabulary (used only when
            ``num_classes`` is None).
        num_classes: C, the vocabulary size with ``<other>``; default: read from the sidecar.

    ``forward(node_reps [M, D], label [M] int64) -> (loss, metrics)``: the representations of
    the M chosen atoms and their classes; loss = mean cross-entropy of ``Linear(D, C)``; metrics
    ``acc_g_contextual`` (arg-max equals the class) and ``g_contextual_other`` (fraction of
    chosen atoms labelled ``<other>``).
    """

    kind = "2d"

    def __init__(self, emb_dim: int = 300, store: Optional[str] = None, num_classes: Optional[int] = None):
        super().__init__()
        emb_dim = _check_dim("emb_dim", emb_dim)
        if num_classes is None:
            num_classes = contextual_num_classes(store)
        self.num_classes = _check_dim("num_classes", num_classes)
        self.classifier = nn.Linear(emb_dim, self.num_classes)

    def forward(self, node_reps: Tensor, label: Tensor) -> Tuple[Tensor, Metrics]:
        if node_reps.dim() != 2 or label.dim() != 1 or label.shape[0] != node_reps.shape[0]:
            raise ValueError(f"node_reps [M, D] and label [M] expected, got {tuple(node_reps.shape)} and {tuple(label.shape)}")
        if label.numel() == 0:
            raise ValueError("no labelled atoms: label is empty")
        if label.dtype != torch.int64:
            raise ValueError(f"label must be int64, got {label.dtype}")
        check_class_range("label", label, self.num_classes,
                          " (is the sidecar's vocabulary the one this model was built with?)")
        logits = self.classifier(node_reps)
        loss = F.cross_entropy(logits, label)
        other = float((label == 0).float().mean())
        return loss, {"acc_g_contextual": argmax_accuracy(logits, label), "g_contextual_other": other}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


@OBJECTIVES.register("g-motif")
class GroverMotif(nn.Module):
    """G-Motif: multi-label prediction of the functional groups a molecule contains.

    Args:
        emb_dim: D of the graph representations; 300.
        num_groups: F, the flags per molecule; 85 (RDKit's ``fr_*`` descriptors).

    ``forward(graph_reps [B, D], flags [B, F] float 0/1) -> (loss, metrics)``: loss = binary
    cross-entropy with logits of ``Linear(D, F)``, averaged over all B x F entries (GROVER's
    ``BCEWithLogitsLoss``); metrics ``acc_g_motif`` (fraction of the B x F flags predicted right
    at probability 0.5) and ``acc_g_motif_present`` (the same over the flags that are 1: the
    all-absent prediction scores ~0.98 on ``acc_g_motif`` and 0 here).
    """

    kind = "2d"

    def __init__(self, emb_dim: int = 300, num_groups: int = NUM_FUNCTIONAL_GROUPS):
        super().__init__()
        self.num_groups = _check_dim("num_groups", num_groups)
        self.classifier = nn.Linear(_check_dim("emb_dim", emb_dim), self.num_groups)

    def forward(self, graph_reps: Tensor, flags: Tensor) -> Tuple[Tensor, Metrics]:
        if graph_reps.dim() != 2 or flags.shape != (graph_reps.shape[0], self.num_groups):
            raise ValueError(
                f"graph_reps [B, D] and flags [B, {self.num_groups}] expected, got {tuple(graph_reps.shape)} and "
                f"{tuple(flags.shape)}"
            )
        if flags.shape[0] == 0:
            raise ValueError("no molecules: graph_reps is empty")
        flags = flags.to(graph_reps.dtype)
        logits = self.classifier(graph_reps)
        loss = F.binary_cross_entropy_with_logits(logits, flags)
        with torch.no_grad():
            right = (logits > 0) == (flags > 0.5)
            present = flags > 0.5
            metrics = {"acc_g_motif": float(right.float().mean())}
            if bool(present.any()):
                metrics["acc_g_motif_present"] = float(right[present].float().mean())
        return loss, metrics


__all__ = ["CONTEXTUAL_KIND", "GroverContextual", "GroverMotif", "contextual_num_classes"]
