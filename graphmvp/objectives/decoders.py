"""Decoders and reconstruction losses of masked-node prediction.

Decoders (:data:`DECODERS`) map the encoder's node representations [N, D] to one output per
MASKED atom [M, C] (C = the target's classes):

``linear`` (Hu et al. 2020, AttrMask)
    ``Linear(D, C)`` on the masked atoms' representations. An ``nn.Linear`` itself, so its
    parameters are ``weight`` / ``bias`` (the AttrMask head's state-dict keys are unchanged).
``gnn`` (GraphMAE, Hou et al., KDD 2022; its chem code)
    re-mask decoder on the whole batch graph::

        x = W_e2d PReLU(h)                   [N, D]   encoder-to-decoder map (no bias)
        x[masked] = DMASK                    [D]      re-masking with a learnable vector
        y = GINConv(x, bond)                 [N, D]   ONE Hu et al. GIN layer, bond embeddings
        out = Linear(D, C)(y[masked])        [M, C]

    Deviations: GraphMAE's code resets the masked rows to 0 (its paper's [DMASK] token); here
    DMASK is a learnable vector initialised to 0, so it starts from GraphMAE's zeros. GraphMAE's
    decoder GIN layer ends its MLP in ``Linear(2D, C)``; ours keeps the encoder's GIN layer
    (``Linear(2D, D)``) and adds ``Linear(D, C)``, a factorised form of the same map.

Losses (:data:`DECODER_LOSSES`), each ``f(out [M, C], labels [M] int64, gamma) -> scalar``:

``ce``: mean cross-entropy of ``out`` as logits.
``sce`` (GraphMAE's scaled cosine error): ``mean_i (1 - cos(out_i, onehot(labels_i)))^gamma``;
    gamma = 1 is the chem default of GraphMAE and StructMAE (``alpha_l``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import dgl

from graphmvp.models.gin_conv import GINConv
from graphmvp.registry import Registry

DECODERS: Registry = Registry("masked-node decoder")


@DECODERS.register("linear")
class LinearDecoder(nn.Linear):
    """``Linear(D, C)`` on the masked atoms (an ``nn.Linear``: keys ``weight``, ``bias``).

    ``forward(h [N, D], masked_index [M], graph=None, bond=None) -> [M, C]``; called with a
    single tensor it is a plain linear layer.
    """

    uses_graph = False

    def __init__(self, emb_dim: int, num_classes: int):
        super().__init__(emb_dim, num_classes)

    def forward(self, h: Tensor, masked_index: Optional[Tensor] = None, graph: Optional[dgl.DGLGraph] = None,
                bond: Optional[Tensor] = None) -> Tensor:
        return super().forward(h if masked_index is None else h[masked_index])


@DECODERS.register("gnn")
class ReMaskGNNDecoder(nn.Module):
    """GraphMAE's re-mask decoder (see the module docstring).

    ``forward(h [N, D], masked_index [M], graph, bond=None) -> [M, C]``; ``bond`` [E, 2]
    overrides ``graph.edata['bond']`` (the masked bonds when bonds are masked too).
    """

    uses_graph = True

    def __init__(self, emb_dim: int, num_classes: int):
        super().__init__()
        self.activation = nn.PReLU()
        self.enc_to_dec = nn.Linear(emb_dim, emb_dim, bias=False)
        self.dmask = nn.Parameter(torch.zeros(emb_dim))
        self.conv = GINConv(emb_dim)
        self.out = nn.Linear(emb_dim, num_classes)

    def remask(self, h: Tensor, masked_index: Tensor) -> Tensor:
        """``W_e2d PReLU(h)`` with the masked rows replaced by DMASK: float [N, D]."""
        x = self.enc_to_dec(self.activation(h))
        is_masked = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        is_masked[masked_index] = True
        return torch.where(is_masked.unsqueeze(1), self.dmask.expand_as(x), x)

    def forward(self, h: Tensor, masked_index: Tensor, graph: Optional[dgl.DGLGraph] = None,
                bond: Optional[Tensor] = None) -> Tensor:
        if graph is None:
            raise ValueError("the gnn decoder needs the batch graph: decoder(h, masked_index, graph)")
        if bond is None:
            bond = graph.edata["bond"]
        y = self.conv(graph, self.remask(h, masked_index), bond)
        return self.out(y[masked_index])


# -- losses -------------------------------------------------------------------------------------
def scaled_cosine_error(x: Tensor, z: Tensor, gamma: float = 1.0) -> Tensor:
    """GraphMAE's SCE: ``mean_i (1 - cos(x_i, z_i))^gamma`` over the rows of x, z [M, C]
    (``1 - cos`` clamped at 0 against rounding, so a fractional gamma stays finite)."""
    if x.shape != z.shape or x.dim() != 2:
        raise ValueError(f"x and z must be [M, C] of one shape, got {tuple(x.shape)} and {tuple(z.shape)}")
    cos = (F.normalize(x, p=2, dim=-1) * F.normalize(z, p=2, dim=-1)).sum(dim=-1)
    return (1.0 - cos).clamp_min(0.0).pow(gamma).mean()


def _ce(out: Tensor, labels: Tensor, gamma: float) -> Tensor:
    return F.cross_entropy(out, labels)


def _sce(out: Tensor, labels: Tensor, gamma: float) -> Tensor:
    return scaled_cosine_error(out, F.one_hot(labels, out.shape[1]).to(out.dtype), gamma)


#: loss name -> ``f(out [M, C], labels [M], gamma) -> scalar``
DECODER_LOSSES: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {"ce": _ce, "sce": _sce}


def build_decoder(name: str, emb_dim: int, num_classes: int) -> nn.Module:
    """The decoder ``name`` (raises KeyError naming the known ones)."""
    return DECODERS.get(name)(emb_dim, num_classes)


__all__ = ["DECODERS", "DECODER_LOSSES", "LinearDecoder", "ReMaskGNNDecoder", "build_decoder", "scaled_cosine_error"]
