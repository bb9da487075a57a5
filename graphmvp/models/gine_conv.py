"""GINE: the GIN layer with edge features inside the message (Hu et al. 2020), on DGL.

For node ``i`` with incoming edges ``j -> i`` carrying edge features ``e_ji`` (float [D]; the
bond embeddings of the encoder)::

    a_i  = (1 + eps) h_i + sum_j ReLU(h_j + e_ji)
    h'_i = mlp(a_i),    mlp = Linear(D, D) - ReLU - Linear(D, D)

This is the local message passing of a GraphGPS layer (Rampasek et al. 2022, "Recipe for a
General, Powerful, Scalable Graph Transformer"; its GINE uses ``eps = 0`` fixed and the
two-layer D -> D -> D MLP above). The ReLU on each message is what distinguishes it from
Hu et al.'s GIN of :mod:`graphmvp.models.gin_conv`, which sums ``h_j + e_ji`` directly and adds
an explicit self-loop edge; GINE has no self-loop edge: the node's own state enters through
``(1 + eps) h_i``.

Unlike :class:`~graphmvp.models.gin_conv.GINConv`, the layer takes the edge features already
embedded (GraphGPS embeds the bonds once at the input and shares them across layers).
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)


class GINEConv(nn.Module):
    """GINE layer (see the module docstring).

    Args:
        emb_dim: node and edge feature size D (input and output).
        eps: the fixed weight of the node's own state, ``(1 + eps) h_i`` (GraphGPS: 0).

    Forward:
        g: DGLGraph (homogeneous, possibly batched) with N nodes and E edges.
        h: float [N, D] node features.
        edge_feat: float [E, D] edge features (embedded bonds) in the edge order of ``g``.
        returns float [N, D].
    """

    def __init__(self, emb_dim: int, eps: float = 0.0):
        super().__init__()
        if isinstance(emb_dim, bool) or int(emb_dim) < 1:
            raise ValueError(f"emb_dim must be a positive integer, got {emb_dim!r}")
        self.emb_dim = int(emb_dim)
        self.eps = float(eps)
        self.mlp = nn.Sequential(
            nn.Linear(self.emb_dim, self.emb_dim),
            nn.ReLU(),
            nn.Linear(self.emb_dim, self.emb_dim),
        )

    def forward(self, g: dgl.DGLGraph, h: torch.Tensor, edge_feat: torch.Tensor) -> torch.Tensor:
        if h.dim() != 2 or h.shape[0] != g.num_nodes() or h.shape[1] != self.emb_dim:
            raise ValueError(
                f"node features must have shape [{g.num_nodes()}, {self.emb_dim}], got {tuple(h.shape)}"
            )
        if edge_feat.dim() != 2 or edge_feat.shape[0] != g.num_edges() or edge_feat.shape[1] != self.emb_dim:
            raise ValueError(
                f"edge features must have shape [{g.num_edges()}, {self.emb_dim}], got {tuple(edge_feat.shape)}"
            )
        with g.local_scope():
            g.ndata["h"] = h
            g.edata["e"] = edge_feat
            g.apply_edges(fn.u_add_e("h", "e", "m"))
            g.edata["m"] = F.relu(g.edata["m"])
            g.update_all(fn.copy_e("m", "m"), fn.sum("m", "agg"))
            aggregate = g.ndata["agg"]
        return self.mlp((1.0 + self.eps) * h + aggregate)

    def extra_repr(self) -> str:
        return f"emb_dim={self.emb_dim}, eps={self.eps}"


__all__ = ["GINEConv"]
