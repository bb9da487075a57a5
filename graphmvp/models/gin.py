"""The 2D encoder: Hu et al.'s GIN as used by GraphMVP (5 layers, 300 dims, JK = last).

Input (2D graph contract): ``g.ndata['atom']`` int64 [N, 2] = (atomic number - 1 with 119 =
mask token, chirality tag 0..3) and ``g.edata['bond']`` int64 [E, 2] = (bond type 0..3 or 5 =
mask, direction 0..2), both edge directions present, no self loops.

Per layer ``l``: ``h = conv_l(h)``, ``h = batch_norm_l(h)``, ``h = relu(h)`` on every layer but
the last, then ``h = dropout(h)`` on every layer including the last (the upstream code applies
dropout after the last layer as well).

Jumping knowledge (``jk``) combines the list ``[h_0, h_1, ..., h_L]`` where ``h_0`` is the input
embedding, as upstream does:

- ``"last"``: ``h_L`` [N, D] (GraphMVP's setting)
- ``"concat"``: ``cat(h_0..h_L)`` [N, (L + 1) D]
- ``"max"``: elementwise max over ``h_0..h_L`` [N, D]
- ``"sum"``: elementwise sum over ``h_0..h_L`` [N, D]

Chirality: the featuriser emits tag 3 (``CHI_OTHER``), but the upstream chirality table has only
3 rows (the original would fail on such atoms). Tags beyond the table are mapped to row 0
("unspecified"); with ``num_chirality=4`` tag 3 gets its own row.

State-dict keys equal the upstream ones (``x_embedding1.weight``, ``x_embedding2.weight``,
``gnns.{i}.mlp.{0,2}.{weight,bias}``, ``gnns.{i}.edge_embedding{1,2}.weight``,
``batch_norms.{i}.{weight,bias,running_mean,running_var,num_batches_tracked}``), so released
GraphMVP and Hu et al. checkpoints load with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import dgl
import torch
import torch.nn as nn
import torch.nn.functional as F

from graphmvp.models.gin_conv import GINConv
from graphmvp.models.graph_inputs import graph_inputs
from graphmvp.models.registry import ENCODERS

NUM_ATOM_TYPES = 120  # atomic number - 1 in 0..118, 119 = mask token
NUM_CHIRALITY_ROWS = 3  # upstream table: unspecified, CW, CCW
NUM_CHIRALITY_TAGS = 4  # featuriser tags: unspecified, CW, CCW, other


def _jk_last(hs: list[torch.Tensor]) -> torch.Tensor:
    return hs[-1]


def _jk_concat(hs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(hs, dim=1)


def _jk_max(hs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(hs, dim=0).max(dim=0).values


def _jk_sum(hs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(hs, dim=0).sum(dim=0)


# name -> function of [h_0, ..., h_L] (each [N, D]) returning the node representation
JK_MODES: dict[str, Callable[[list[torch.Tensor]], torch.Tensor]] = {
    "last": _jk_last,
    "concat": _jk_concat,
    "max": _jk_max,
    "sum": _jk_sum,
}


@ENCODERS.register("gin")
class GIN(nn.Module):
    """Hu et al. GIN over the 2D molecular graph.

    Args:
        num_layers: number of GIN layers L (>= 1).
        emb_dim: hidden size D.
        dropout: dropout probability after each layer, in [0, 1).
        jk: jumping-knowledge mode, one of ``JK_MODES`` ("last", "concat", "max", "sum").
        num_atom_type: rows of the atom-type table (120: 119 elements + mask token).
        num_chirality: rows of the chirality table (3 upstream; tags >= this map to row 0).

    Forward:
        g: DGLGraph (possibly batched) with N nodes, E edges.
        atom: optional int64 [N, 2] replacing ``g.ndata['atom']`` (e.g. masked atoms).
        bond: optional int64 [E, 2] replacing ``g.edata['bond']``.
        node_extra: optional float [N, D] added to the input embedding ``h_0``.
        edge_extra: optional list of L float [E, D], layer ``l``'s added to its edge embedding
            (both from :class:`graphmvp.models.descriptor_embedding.DescriptorEmbedding`).
        returns float [N, out_dim] node representations (``out_dim`` = D, or (L + 1) D for
        ``jk="concat"``).
    """

    def __init__(
        self,
        num_layers: int = 5,
        emb_dim: int = 300,
        dropout: float = 0.0,
        jk: str = "last",
        num_atom_type: int = NUM_ATOM_TYPES,
        num_chirality: int = NUM_CHIRALITY_ROWS,
    ):
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        if int(emb_dim) < 1:
            raise ValueError(f"emb_dim must be >= 1, got {emb_dim!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if jk not in JK_MODES:
            raise ValueError(f"unknown jk mode {jk!r}; allowed: {', '.join(JK_MODES)}")
        if int(num_atom_type) < 1 or int(num_chirality) < 1:
            raise ValueError(
                f"num_atom_type and num_chirality must be >= 1, got {num_atom_type!r}, "
                f"{num_chirality!r}"
            )
        self.num_layers = int(num_layers)
        self.emb_dim = int(emb_dim)
        self.dropout = float(dropout)
        self.jk = jk
        self.out_dim = self.emb_dim * (self.num_layers + 1) if jk == "concat" else self.emb_dim

        self.x_embedding1 = nn.Embedding(int(num_atom_type), self.emb_dim)
        self.x_embedding2 = nn.Embedding(int(num_chirality), self.emb_dim)
        nn.init.xavier_uniform_(self.x_embedding1.weight)
        nn.init.xavier_uniform_(self.x_embedding2.weight)
        self.gnns = nn.ModuleList([GINConv(self.emb_dim) for _ in range(self.num_layers)])
        self.batch_norms = nn.ModuleList(
            [nn.BatchNorm1d(self.emb_dim) for _ in range(self.num_layers)]
        )

        # chirality tag -> table row; tags without a row (CHI_OTHER when there are 3 rows) -> 0.
        # Not persistent: it is derived from num_chirality and must not change the state dict.
        n_tags = max(NUM_CHIRALITY_TAGS, int(num_chirality))
        rows = torch.arange(n_tags)
        rows[rows >= int(num_chirality)] = 0
        self.register_buffer("chirality_row", rows, persistent=False)

    def input_embedding(self, atom: torch.Tensor) -> torch.Tensor:
        """Embed int64 [N, 2] atom features to float [N, D]: E_type[atom[:, 0]] + E_chir[...]."""
        if atom.dim() != 2 or atom.shape[1] != 2:
            raise ValueError(f"atom features must have shape [N, 2], got {tuple(atom.shape)}")
        atom = atom.long()
        chirality = self.chirality_row[atom[:, 1]]
        return self.x_embedding1(atom[:, 0]) + self.x_embedding2(chirality)

    def forward(
        self,
        g: dgl.DGLGraph,
        atom: Optional[torch.Tensor] = None,
        bond: Optional[torch.Tensor] = None,
        node_extra: Optional[torch.Tensor] = None,
        edge_extra: Optional[Sequence[torch.Tensor]] = None,
    ) -> torch.Tensor:
        atom, bond = graph_inputs(g, atom, bond, "GIN")
        if edge_extra is not None and len(edge_extra) != self.num_layers:
            raise ValueError(f"edge_extra has {len(edge_extra)} tensors for {self.num_layers} layers")

        h = self.input_embedding(atom)
        if node_extra is not None:
            h = h + node_extra
        hs = [h]
        last = self.num_layers - 1
        for layer, (conv, norm) in enumerate(zip(self.gnns, self.batch_norms)):
            h = norm(conv(g, h, bond, None if edge_extra is None else edge_extra[layer]))
            if layer != last:
                h = F.relu(h)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(h)
        return JK_MODES[self.jk](hs)

    def config(self) -> dict:
        """Constructor arguments (plain python) that rebuild this architecture:
        ``build_encoder("gin", **gin.config())``."""
        return {
            "num_layers": self.num_layers,
            "emb_dim": self.emb_dim,
            "dropout": self.dropout,
            "jk": self.jk,
            "num_atom_type": int(self.x_embedding1.num_embeddings),
            "num_chirality": int(self.x_embedding2.num_embeddings),
        }

    def extra_repr(self) -> str:
        return (
            f"num_layers={self.num_layers}, emb_dim={self.emb_dim}, "
            f"dropout={self.dropout}, jk={self.jk!r}"
        )
