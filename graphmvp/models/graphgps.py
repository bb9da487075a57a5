"""The GraphGPS 2D encoder (Rampasek et al. 2022) with random-walk structural encodings.

Input (the 2D graph contract, as for the GIN): ``g.ndata['atom']`` int64 [N, 2] (Z - 1 with
119 = mask token, chirality tag 0..3), ``g.edata['bond']`` int64 [E, 2] (bond type 0..3 or
5 = mask, direction 0..2), both edge directions, no self loops; optionally ``g.ndata['rwse']``
float32 [N, rwse_steps] precomputed by a dataset (:mod:`graphmvp.models.rwse`; computed on the
fly per molecule otherwise)::

    h_0 = E_type[atom_0] + E_chir[atom_1] + Linear(rwse)                [N, H]   H = hidden_dim
    e   = E_bond[bond_0] + E_dir[bond_1]                                 [E, H]   shared by all layers
    h_l = GPSLayer_l(h_{l-1}, e)                                         l = 1..L (graphmvp.models.gps_layer)
    out = Linear(H, D)(h_L)   (identity when H = D)                      [N, D]   D = emb_dim

Tables as in the GIN: 120 atom types (row 119 = mask token), chirality rows 3 (tag 3 "other" ->
row 0, like the GIN); bond types 6 (0..3 bonds, 4 self loop - unused here: GINE has no self-loop
edges, the row is kept so that bond indices mean the same in both encoders -, 5 mask),
3 directions.

RWSE input: GraphGPS's kernel encoder normalises the raw 20 return probabilities with BatchNorm,
maps them with a Linear layer and CONCATENATES them to a narrower atom embedding; here the
projection has the full width H and is ADDED to the atom embedding (deviation: the atom tables
keep the GIN's layout and width).

``rwse_norm="none"`` (default; deviation) feeds the raw probabilities, which lie in [0, 1], to
the Linear layer; ``"batchnorm"`` is GraphGPS's BatchNorm. Why not BatchNorm by default: the
odd-step return probabilities are exactly 0 on every bipartite graph (trees, even rings, fused
benzenoids), so on a training set with few 3-/5-membered rings their running variance is tiny
and a test molecule with such a ring is scaled by ~100x in evaluation mode. Measured on
FreeSolv (scaffold split, random init, 45 epochs, seed 2): running variance 7.6e-5 on every odd
step, cyclopropane predicted at 95 kcal/mol, test RMSE 23.4 with BatchNorm vs 2.06 without (with
BatchNorm and batch statistics at test time: 3.4, so the running statistics alone were at fault).

Defaults and the parameter budget. Hu et al.'s GIN (5 layers x 300) has 1,857,900 parameters.
A GPS layer of width H has 10 H^2 + 15 H parameters (GINE MLP 2H^2 + 2H, attention 4H^2 + 4H,
FFN 4H^2 + 3H, three BatchNorms 6H), so width 300 would cost 904,500 per layer. The defaults keep
the GIN's depth and output width and narrow the hidden width: 5 layers, H = 192, 4 heads (48 per
head), D = 300 -> 1,944,876 parameters (+4.7% of the GIN; 40 more with BatchNorm on the RWSE).
For comparison GraphGPS's ZINC configuration (10 layers, 4 heads, width 64, attention dropout
0.5) has ~0.42 M layer parameters here. Attention dropout defaults to GraphGPS's 0.5, dropout to 0 (as the GIN in pretraining).
"""

from __future__ import annotations

from typing import Any, Optional

import dgl
import torch
import torch.nn as nn

from graphmvp.models.gin import NUM_ATOM_TYPES, NUM_CHIRALITY_ROWS, NUM_CHIRALITY_TAGS
from graphmvp.models.gin_conv import NUM_BOND_DIRECTIONS, NUM_BOND_TYPES
from graphmvp.models.graph_inputs import graph_inputs
from graphmvp.models.gps_layer import GPSLayer, PaddedLayout
from graphmvp.models.registry import ENCODERS
from graphmvp.models.rwse import RWSE_STEPS, node_rwse

#: how the raw RWSE probabilities are normalised before their Linear map (module docstring)
RWSE_NORMS = ("none", "batchnorm")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


@ENCODERS.register("graphgps")
class GraphGPS(nn.Module):
    """GraphGPS over the 2D molecular graph (see the module docstring).

    Args:
        num_layers: GPS layers L (>= 1).
        emb_dim: output width D (what pooling, heads and the 3D view see).
        hidden_dim: width H of the layers; None = ``emb_dim``. Must be divisible by ``heads``.
        heads: attention heads.
        dropout: dropout inside each layer, in [0, 1) (settable: ``encoder.dropout = p``
            updates every layer, as fine-tuning does).
        attn_dropout: dropout on the attention weights, in [0, 1).
        rwse_steps: random-walk lengths of the structural encoding (k = 1..rwse_steps).
        num_atom_type / num_chirality: rows of the atom tables (120 / 3, as the GIN).

    Forward:
        g: DGLGraph (possibly batched) with N nodes, E edges.
        atom: optional int64 [N, 2] replacing ``g.ndata['atom']`` (e.g. masked atoms).
        bond: optional int64 [E, 2] replacing ``g.edata['bond']``.
        returns float [N, emb_dim] node representations.

    ``config()`` returns the constructor arguments as plain python values:
    ``build_encoder("graphgps", **encoder.config())`` rebuilds the same architecture.
    """

    def __init__(
        self,
        num_layers: int = 5,
        emb_dim: int = 300,
        hidden_dim: Optional[int] = 192,
        heads: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.5,
        rwse_steps: int = RWSE_STEPS,
        num_atom_type: int = NUM_ATOM_TYPES,
        num_chirality: int = NUM_CHIRALITY_ROWS,
        rwse_norm: str = "none",
    ):
        super().__init__()
        self.num_layers = _positive_int("num_layers", num_layers)
        self.emb_dim = _positive_int("emb_dim", emb_dim)
        self.hidden_dim = self.emb_dim if hidden_dim is None else _positive_int("hidden_dim", hidden_dim)
        self.heads = _positive_int("heads", heads)
        if self.hidden_dim % self.heads:
            raise ValueError(f"heads={self.heads} must divide hidden_dim={self.hidden_dim}")
        dropout = _probability("dropout", dropout)
        attn_dropout = _probability("attn_dropout", attn_dropout)
        self.rwse_steps = _positive_int("rwse_steps", rwse_steps)
        num_atom_type = _positive_int("num_atom_type", num_atom_type)
        num_chirality = _positive_int("num_chirality", num_chirality)
        self.out_dim = self.emb_dim
        width = self.hidden_dim

        self.x_embedding1 = nn.Embedding(num_atom_type, width)
        self.x_embedding2 = nn.Embedding(num_chirality, width)
        self.edge_embedding1 = nn.Embedding(NUM_BOND_TYPES, width)
        self.edge_embedding2 = nn.Embedding(NUM_BOND_DIRECTIONS, width)
        for table in (self.x_embedding1, self.x_embedding2, self.edge_embedding1, self.edge_embedding2):
            nn.init.xavier_uniform_(table.weight)
        if rwse_norm not in RWSE_NORMS:
            raise ValueError(f"rwse_norm={rwse_norm!r}: allowed: {', '.join(RWSE_NORMS)}")
        self.rwse_norm_kind = rwse_norm
        self.rwse_norm = nn.BatchNorm1d(self.rwse_steps) if rwse_norm == "batchnorm" else nn.Identity()
        self.rwse_linear = nn.Linear(self.rwse_steps, width)
        self.layers = nn.ModuleList(
            [GPSLayer(width, self.heads, dropout, attn_dropout) for _ in range(self.num_layers)]
        )
        self.output = nn.Identity() if width == self.emb_dim else nn.Linear(width, self.emb_dim)
        self._dropout = dropout

        # chirality tag -> table row, as in the GIN (not persistent: derived from num_chirality)
        rows = torch.arange(max(NUM_CHIRALITY_TAGS, num_chirality))
        rows[rows >= num_chirality] = 0
        self.register_buffer("chirality_row", rows, persistent=False)

    # -- configuration -----------------------------------------------------------------------
    @property
    def dropout(self) -> float:
        """Dropout inside every layer; setting it updates all layers."""
        return self._dropout

    @dropout.setter
    def dropout(self, value: float) -> None:
        value = _probability("dropout", value)
        self._dropout = value
        for layer in self.layers:
            layer.dropout = value

    @property
    def attn_dropout(self) -> float:
        return self.layers[0].attn_dropout

    def config(self) -> dict[str, Any]:
        """Constructor arguments (plain python) that rebuild this architecture."""
        return {
            "num_layers": self.num_layers,
            "emb_dim": self.emb_dim,
            "hidden_dim": self.hidden_dim,
            "heads": self.heads,
            "dropout": self.dropout,
            "attn_dropout": self.attn_dropout,
            "rwse_steps": self.rwse_steps,
            "num_atom_type": int(self.x_embedding1.num_embeddings),
            "num_chirality": int(self.x_embedding2.num_embeddings),
            "rwse_norm": self.rwse_norm_kind,
        }

    # -- inputs --------------------------------------------------------------------------------
    def atom_embedding(self, atom: torch.Tensor) -> torch.Tensor:
        """int64 [N, 2] atom features -> float [N, H]: E_type[atom[:, 0]] + E_chir[row(atom[:, 1])]."""
        if atom.dim() != 2 or atom.shape[1] != 2:
            raise ValueError(f"atom features must have shape [N, 2], got {tuple(atom.shape)}")
        atom = atom.long()
        return self.x_embedding1(atom[:, 0]) + self.x_embedding2(self.chirality_row[atom[:, 1]])

    def bond_embedding(self, bond: torch.Tensor) -> torch.Tensor:
        """int64 [E, 2] bond features -> float [E, H]: E_bond[type] + E_dir[direction]."""
        if bond.dim() != 2 or bond.shape[1] != 2:
            raise ValueError(f"bond features must have shape [E, 2], got {tuple(bond.shape)}")
        bond = bond.long()
        return self.edge_embedding1(bond[:, 0]) + self.edge_embedding2(bond[:, 1])

    def input_embedding(self, g: dgl.DGLGraph, atom: torch.Tensor) -> torch.Tensor:
        """h_0 [N, H] = atom embedding + Linear(RWSE of g, BatchNorm-ed if rwse_norm="batchnorm")."""
        encodings = node_rwse(g, self.rwse_steps).to(self.rwse_linear.weight.dtype)
        return self.atom_embedding(atom) + self.rwse_linear(self.rwse_norm(encodings))

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        g: dgl.DGLGraph,
        atom: Optional[torch.Tensor] = None,
        bond: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        atom, bond = graph_inputs(g, atom, bond, "GraphGPS")

        h = self.input_embedding(g, atom)
        edge_feat = self.bond_embedding(bond)
        layout = PaddedLayout.of(g)
        for layer in self.layers:
            h = layer(g, h, edge_feat, layout)
        return self.output(h)

    def extra_repr(self) -> str:
        return (
            f"num_layers={self.num_layers}, emb_dim={self.emb_dim}, hidden_dim={self.hidden_dim}, "
            f"heads={self.heads}, dropout={self.dropout}, attn_dropout={self.attn_dropout}, "
            f"rwse_steps={self.rwse_steps}, rwse_norm={self.rwse_norm_kind}"
        )


__all__ = ["GraphGPS"]
