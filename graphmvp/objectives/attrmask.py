"""Masked-node prediction, registered as ``attrmask``: AttrMask (Hu et al. 2020, the 2D task of
GraphMVP-G) generalised along the axes of the masking-design study (Yang, Thost, Ma, arXiv
2512.07064): what is predicted (``target``), how (``decoder``, ``decoder_loss``) and, for
learnable masking (StructMAE-L), the scorer that decides where to mask.

The training step (:mod:`graphmvp.pretrain.tasks.attrmask`) masks some atoms of the 2D graph
(type index set to the mask token 119, chirality to 0), runs the encoder on that graph and hands
the node representations here together with the masked atoms' indices and their target classes::

    h' = h, or for learnable masking: h'_i = s_i * h_i at UNMASKED atoms i    [N, D]
    out = decoder(h', masked_index, graph)                                    [M, C]
    loss = ce(out, labels) | sce(out, onehot(labels))^gamma                   scalar

With the defaults (atom target, linear decoder, cross-entropy) this is Hu et al.'s AttrMask:
``Linear(D, 119)`` (state-dict keys ``classifier.weight`` / ``classifier.bias``, unchanged) and
the mean cross-entropy over the masked atoms.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

import dgl

from graphmvp.data.mask_distributions import MASK_DISTRIBUTIONS
from graphmvp.data.mask_targets import MASK_TARGETS, build_mask_target
from graphmvp.models.mask_scorer import MaskScorer
from .decoders import DECODER_LOSSES, DECODERS, build_decoder
from .class_labels import argmax_accuracy, check_class_range
from .registry import OBJECTIVES, Metrics


def _choice(name: str, value: str, allowed) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed: {', '.join(allowed)}")


@OBJECTIVES.register("attrmask")
class MaskedNodePrediction(nn.Module):
    """Predict a class for every masked atom (AttrMask and its study variants).

    Args:
        emb_dim: D of the node representations; 300 (released).
        target: what is predicted, a name in :data:`graphmvp.data.mask_targets.MASK_TARGETS`
            ("atom": type index, 119 classes; "motif", "contextual": vocabulary classes).
        store: the conformer store (targets read from its label sidecar need it for the
            vocabulary size).
        num_classes: C; default: the target's (119 for "atom").
        decoder: "linear" (Linear(D, C)) or "gnn" (GraphMAE's re-mask decoder), see
            :mod:`graphmvp.objectives.decoders`.
        decoder_loss: "ce" (cross-entropy) or "sce" (scaled cosine error against the one-hot
            class vector).
        sce_gamma: gamma of the scaled cosine error (1.0: GraphMAE's and StructMAE's chem value).
        mask_dist: the masking distribution; "learnable" adds the StructMAE-L scorer
            (``self.scorer``, a :class:`~graphmvp.models.mask_scorer.MaskScorer`) so that it is
            trained, saved and optimised with the other heads.
        learnable_alpha: boost of the top-scored atoms' random keys for learnable masking (0.5).

    ``forward(node_reps [N, D], masked_index [M] int64, target [M] int64, graph=None, bond=None,
    node_weight=None) -> (loss, metrics)``; ``graph`` (the batch's 2D graph) is needed by the gnn
    decoder, ``bond`` [E, 2] overrides its bond features, ``node_weight`` [N] are the learnable
    scores (multiplied into the unmasked atoms' representations). Metric ``acc_attrmask``: the
    fraction of masked atoms whose arg-max output is the true class.
    """

    kind = "2d"

    def __init__(
        self,
        emb_dim: int = 300,
        target: str = "atom",
        store: Optional[str] = None,
        num_classes: Optional[int] = None,
        decoder: str = "linear",
        decoder_loss: str = "ce",
        sce_gamma: float = 1.0,
        mask_dist: str = "uniform",
        learnable_alpha: float = 0.5,
    ):
        super().__init__()
        if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
            raise ValueError(f"emb_dim must be an int >= 1, got {emb_dim!r}")
        _choice("target", target, MASK_TARGETS.names())
        _choice("decoder", decoder, DECODERS.names())
        _choice("decoder_loss", decoder_loss, DECODER_LOSSES)
        _choice("mask_dist", mask_dist, MASK_DISTRIBUTIONS.names())
        if not float(sce_gamma) > 0:
            raise ValueError(f"sce_gamma={sce_gamma!r}: must be > 0")
        if num_classes is None:
            num_classes = build_mask_target(target, store, preload=False).num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        needs_scorer = MASK_DISTRIBUTIONS.get(mask_dist).needs_scorer
        if needs_scorer and not DECODERS.get(decoder).uses_graph:
            raise ValueError(
                f"mask_dist={mask_dist!r} with decoder={decoder!r}: the scorer is trained through the score-weighted "
                "UNMASKED atoms, which a linear decoder never reads; use decoder='gnn'"
            )
        self.target = target
        self.num_classes = num_classes
        self.decoder_name = decoder
        self.decoder_loss = decoder_loss
        self.sce_gamma = float(sce_gamma)
        self.mask_dist = mask_dist
        self.learnable_alpha = float(learnable_alpha)
        #: the decoder; named ``classifier`` so that AttrMask's linear head keeps its keys
        self.classifier = build_decoder(decoder, emb_dim, num_classes)
        self.scorer: Optional[MaskScorer] = MaskScorer(emb_dim) if needs_scorer else None

    @property
    def num_atom_types(self) -> int:
        """C (the name of AttrMask's class count)."""
        return self.num_classes

    def forward(
        self,
        node_reps: Tensor,
        masked_index: Tensor,
        target: Tensor,
        graph: Optional[dgl.DGLGraph] = None,
        bond: Optional[Tensor] = None,
        node_weight: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Metrics]:
        if node_reps.dim() != 2:
            raise ValueError(f"node_reps must be [N, D], got shape {tuple(node_reps.shape)}")
        if masked_index.dim() != 1 or masked_index.shape != target.shape:
            raise ValueError(
                f"masked_index and target must be 1-D of equal length, got {tuple(masked_index.shape)} "
                f"and {tuple(target.shape)}"
            )
        if masked_index.numel() == 0:
            raise ValueError("no masked atoms: masked_index is empty")
        if masked_index.dtype != torch.int64 or target.dtype != torch.int64:
            raise ValueError(f"masked_index and target must be int64, got {masked_index.dtype} and {target.dtype}")
        check_class_range("target", target, self.num_classes)
        h = node_reps
        if node_weight is not None:
            if node_weight.shape != (node_reps.shape[0],):
                raise ValueError(f"node_weight must be [{node_reps.shape[0]}], got {tuple(node_weight.shape)}")
            unmasked = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
            unmasked[masked_index] = False
            h = torch.where(unmasked.unsqueeze(1), h * node_weight.unsqueeze(1), h)
        out = self.classifier(h, masked_index, graph, bond)
        loss = DECODER_LOSSES[self.decoder_loss](out, target, self.sce_gamma)
        return loss, {"acc_attrmask": argmax_accuracy(out, target)}

    def extra_repr(self) -> str:
        return (f"target={self.target!r}, num_classes={self.num_classes}, decoder={self.decoder_name!r}, "
                f"decoder_loss={self.decoder_loss!r}, sce_gamma={self.sce_gamma}, mask_dist={self.mask_dist!r}")


#: the name of this objective before it was generalised (Hu et al.'s AttrMask)
AttributeMasking = MaskedNodePrediction

__all__ = ["AttributeMasking", "MaskedNodePrediction"]
