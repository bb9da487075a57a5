"""ContextPred (Hu et al.), the 2D task of GraphMVP-C: does this context surround this centre?

For each of B' sampled molecules the data pipeline picks a centre atom, a substructure (the
k-hop neighbourhood of the centre, k = 5 = the main GIN's depth) and a context graph (the atoms
between r1 = 4 and r2 = 7 hops of the centre, with their bonds). The main GIN encodes the
substructure graphs; the training loop passes its node representations here. A separate
context GIN, owned by this module (``r2 - r1 = 3`` layers), encodes the context graphs; the
context representation of sample ``b`` is the mean of its node representations over the
*overlap* atoms (context atoms that are also in the substructure).

With ``s_b`` = substructure representation at the centre atom and ``c_b`` the context
representation: positives ``s_b . c_b``, negatives ``s_b . c_{(b+i) % B'}`` for ``i = 1..K``
(cyclic shift, K = 1), loss = ``BCE(pos, 1) + K * BCE(neg, 0)`` on the raw dot products (no
normalisation, no temperature), i.e. one-way EBM-NCE with ``T = 1``.
"""

from __future__ import annotations

from typing import Tuple

import dgl
import torch
from torch import Tensor, nn

from graphmvp.models.gin import GIN

from .contrastive import ebm_nce_one_way
from .registry import OBJECTIVES, Metrics


def segment_mean(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Mean of the rows of ``values`` [n, D] per segment id ``segment`` [n] -> [num_segments, D].

    Every segment must have at least one row.
    """
    counts = torch.bincount(segment, minlength=num_segments)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"samples {empty} have no overlap atoms (every sample needs at least one)")
    sums = values.new_zeros(num_segments, values.shape[1]).index_add_(0, segment, values)
    return sums / counts.unsqueeze(1).to(values.dtype)


def _check_index(name: str, index: Tensor) -> None:
    if index.dim() != 1 or index.dtype != torch.int64:
        raise ValueError(f"{name} must be a 1-D int64 tensor, got {index.dtype} of shape {tuple(index.shape)}")


@OBJECTIVES.register("contextpred")
class ContextPrediction(nn.Module):
    """Context prediction with its own context GIN.

    Args:
        emb_dim: D of the main GIN's node representations and of the context GIN; 300.
        context_layers: layers of the context GIN, ``r2 - r1`` = 7 - 4 = 3 (upstream).
        dropout: dropout of the context GIN; 0.0 (released pretraining setting, as the main GIN).
        jk: jumping knowledge of the context GIN; "last" (as the main GIN).
        num_negatives: K cyclic shifts of the context representations used as negatives; 1.

    ``forward(substruct_node_reps [N_sub, D], center_index [B'] int64, context_graph,
    overlap_index [n_ov] int64, overlap_segment [n_ov] int64) -> (loss, metrics)``:

    * ``substruct_node_reps``: main-GIN node representations of the batched substructure graphs.
    * ``center_index``: for each sample, the node id of its centre atom in that batch.
    * ``context_graph``: batched DGLGraph of the context graphs (2D convention: ``ndata['atom']``
      int64 [N_ctx, 2], ``edata['bond']`` int64 [E_ctx, 2]).
    * ``overlap_index``: node ids in ``context_graph`` of the overlap atoms of all samples.
    * ``overlap_segment``: the sample (0..B'-1) each overlap atom belongs to.

    Metrics: ``acc_contextpred``, the fraction of positives scored > 0 and negatives < 0.
    """

    kind = "2d"

    def __init__(
        self,
        emb_dim: int = 300,
        context_layers: int = 3,
        dropout: float = 0.0,
        jk: str = "last",
        num_negatives: int = 1,
    ):
        super().__init__()
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"num_negatives must be an int >= 1, got {num_negatives!r}")
        if jk == "concat":
            raise ValueError("jk 'concat' changes the context width; allowed: 'last', 'max', 'sum'")
        self.num_negatives = num_negatives
        self.context_gin = GIN(num_layers=context_layers, emb_dim=emb_dim, dropout=dropout, jk=jk)

    def forward(
        self,
        substruct_node_reps: Tensor,
        center_index: Tensor,
        context_graph: dgl.DGLGraph,
        overlap_index: Tensor,
        overlap_segment: Tensor,
    ) -> Tuple[Tensor, Metrics]:
        if substruct_node_reps.dim() != 2:
            raise ValueError(f"substruct_node_reps must be [N_sub, D], got shape {tuple(substruct_node_reps.shape)}")
        for name, index in (
            ("center_index", center_index),
            ("overlap_index", overlap_index),
            ("overlap_segment", overlap_segment),
        ):
            _check_index(name, index)
        if overlap_index.shape != overlap_segment.shape:
            raise ValueError(
                f"overlap_index and overlap_segment must have equal length, got {overlap_index.numel()} "
                f"and {overlap_segment.numel()}"
            )
        num_samples = center_index.numel()
        if num_samples == 0:
            raise ValueError("no samples: center_index is empty")
        if overlap_segment.numel() and (int(overlap_segment.min()) < 0 or int(overlap_segment.max()) >= num_samples):
            raise ValueError(
                f"overlap_segment values must be in 0..{num_samples - 1}, got range "
                f"{int(overlap_segment.min())}..{int(overlap_segment.max())}"
            )

        substruct_rep = substruct_node_reps[center_index]
        context_node_reps = self.context_gin(context_graph)
        context_rep = segment_mean(context_node_reps[overlap_index], overlap_segment, num_samples)
        loss, acc = ebm_nce_one_way(substruct_rep, context_rep, temperature=1.0, num_negatives=self.num_negatives)
        return loss, {"acc_contextpred": float(acc)}

    def extra_repr(self) -> str:
        return f"num_negatives={self.num_negatives}"
