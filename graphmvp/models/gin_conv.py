"""One GIN layer of Hu et al. (2020) with bond-type and bond-direction edge embeddings, on DGL.

For node ``i`` with incoming edges ``j -> i`` (bond type ``t_ji``, direction ``d_ji``)::

    a_i  = sum_j (h_j + E1[t_ji] + E2[d_ji])  +  (h_i + E1[4] + E2[0])
    h'_i = mlp(a_i),    mlp = Linear(D, 2D) - ReLU - Linear(2D, D)

The second term is the self loop that the upstream layer adds to the edge list (bond type 4
"self loop", direction 0 "none") before its sum aggregation. Adding it to the aggregate directly
gives the same sum without copying or mutating the graph.

Parameter names (``mlp.0``, ``mlp.2``, ``edge_embedding1``, ``edge_embedding2``) are those of
the upstream layer, so released state dicts load one to one.
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch
import torch.nn as nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)
from graphmvp.molgraph import MASK_BOND_TYPE

SELF_LOOP_BOND_TYPE = 4
NUM_BOND_TYPES = MASK_BOND_TYPE + 1  # single, double, triple, aromatic, self loop, mask
NUM_BOND_DIRECTIONS = 3  # none, end-up-right, end-down-right
SELF_LOOP_BOND_DIRECTION = 0


class GINConv(nn.Module):
    """GIN layer with additive edge embeddings and an implicit self loop.

    Args:
        emb_dim: node feature size D (input and output).

    Forward:
        g: DGLGraph (homogeneous, possibly batched) with N nodes and E edges, no self loops.
        h: float [N, D] node features.
        bond: int64 [E, 2] edge features (bond type 0..5, bond direction 0..2).
        edge_extra: optional float [E, D] added to the edge embedding of every edge (the
            descriptor embedding of :mod:`graphmvp.models.descriptor_embedding`; the implicit self
            loop gets none).
        returns float [N, D].
    """

    def __init__(self, emb_dim: int):
        super().__init__()
        if int(emb_dim) < 1:
            raise ValueError(f"emb_dim must be a positive integer, got {emb_dim!r}")
        self.emb_dim = int(emb_dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.emb_dim, 2 * self.emb_dim),
            nn.ReLU(),
            nn.Linear(2 * self.emb_dim, self.emb_dim),
        )
        self.edge_embedding1 = nn.Embedding(NUM_BOND_TYPES, self.emb_dim)
        self.edge_embedding2 = nn.Embedding(NUM_BOND_DIRECTIONS, self.emb_dim)
        nn.init.xavier_uniform_(self.edge_embedding1.weight)
        nn.init.xavier_uniform_(self.edge_embedding2.weight)

    def edge_embedding(self, bond: torch.Tensor) -> torch.Tensor:
        """Embed int64 [E, 2] bond features into float [E, D]: E1[type] + E2[direction]."""
        if bond.dim() != 2 or bond.shape[1] != 2:
            raise ValueError(f"bond features must have shape [E, 2], got {tuple(bond.shape)}")
        bond = bond.long()
        return self.edge_embedding1(bond[:, 0]) + self.edge_embedding2(bond[:, 1])

    def self_loop_embedding(self) -> torch.Tensor:
        """The [D] edge embedding of the implicit self loop, E1[4] + E2[0]."""
        return (
            self.edge_embedding1.weight[SELF_LOOP_BOND_TYPE]
            + self.edge_embedding2.weight[SELF_LOOP_BOND_DIRECTION]
        )

    def forward(self, g: dgl.DGLGraph, h: torch.Tensor, bond: torch.Tensor,
                edge_extra: torch.Tensor | None = None) -> torch.Tensor:
        if h.dim() != 2 or h.shape[0] != g.num_nodes() or h.shape[1] != self.emb_dim:
            raise ValueError(
                f"node features must have shape [{g.num_nodes()}, {self.emb_dim}], "
                f"got {tuple(h.shape)}"
            )
        if bond.shape[0] != g.num_edges():
            raise ValueError(
                f"bond features have {bond.shape[0]} rows but the graph has {g.num_edges()} edges"
            )
        with g.local_scope():
            g.ndata["h"] = h
            e = self.edge_embedding(bond)
            g.edata["e"] = e if edge_extra is None else e + edge_extra
            g.update_all(fn.u_add_e("h", "e", "m"), fn.sum("m", "agg"))
            aggregate = g.ndata["agg"]
        aggregate = aggregate + h + self.self_loop_embedding()
        return self.mlp(aggregate)

    def extra_repr(self) -> str:
        return f"emb_dim={self.emb_dim}"
