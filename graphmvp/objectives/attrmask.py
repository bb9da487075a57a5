"""AttrMask (Hu et al.), the 2D task of GraphMVP-G: predict the type of masked atoms.

The training loop masks some atoms of the 2D graph (type index set to the mask token 119,
chirality to 0), runs the GIN a second time on that graph and hands the node representations
here together with the masked atoms' indices and their true type indices (atomic number - 1).
A ``Linear(D, 119)`` classifies each masked atom; the loss is the mean cross-entropy.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import OBJECTIVES, Metrics


@OBJECTIVES.register("attrmask")
class AttributeMasking(nn.Module):
    """Masked atom-type prediction.

    Args:
        emb_dim: D of the node representations; 300 (released).
        num_atom_types: classes predicted, atom type indices 0..118; 119 (the mask token 119 is
            never a target).

    ``forward(node_reps [N, D], masked_index [M] int64, true_type [M] int64) -> (loss, metrics)``
    with ``loss`` = mean cross-entropy over the M masked atoms and metrics ``acc_attrmask``
    (fraction of masked atoms whose arg-max is the true type).
    """

    kind = "2d"

    def __init__(self, emb_dim: int = 300, num_atom_types: int = 119):
        super().__init__()
        for name, value in (("emb_dim", emb_dim), ("num_atom_types", num_atom_types)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.num_atom_types = num_atom_types
        self.classifier = nn.Linear(emb_dim, num_atom_types)

    def forward(self, node_reps: Tensor, masked_index: Tensor, true_type: Tensor) -> Tuple[Tensor, Metrics]:
        if node_reps.dim() != 2:
            raise ValueError(f"node_reps must be [N, D], got shape {tuple(node_reps.shape)}")
        if masked_index.dim() != 1 or masked_index.shape != true_type.shape:
            raise ValueError(
                f"masked_index and true_type must be 1-D of equal length, got {tuple(masked_index.shape)} "
                f"and {tuple(true_type.shape)}"
            )
        if masked_index.numel() == 0:
            raise ValueError("no masked atoms: masked_index is empty")
        if masked_index.dtype != torch.int64 or true_type.dtype != torch.int64:
            raise ValueError(
                f"masked_index and true_type must be int64, got {masked_index.dtype} and {true_type.dtype}"
            )
        if int(true_type.min()) < 0 or int(true_type.max()) >= self.num_atom_types:
            raise ValueError(
                f"true_type values must be in 0..{self.num_atom_types - 1}, got range "
                f"{int(true_type.min())}..{int(true_type.max())}"
            )
        logits = self.classifier(node_reps[masked_index])
        loss = F.cross_entropy(logits, true_type)
        with torch.no_grad():
            acc = (logits.argmax(dim=1) == true_type).float().mean()
        return loss, {"acc_attrmask": float(acc)}
