"""The learnable node scorer of StructMAE-L (Liu et al., "Where to Mask: Structure-Guided Masking
for Graph Masked Autoencoders", IJCAI 2024).

For the UNMASKED input graph (atom features int64 [N, 2], bond features int64 [E, 2])::

    g = GIN_1(atom, bond)                 [N, D]   one Hu et al. GIN layer with its own atom
                                                   embedding, batch norm, no ReLU (JK last)
    m = MLP_2(atom)                       [N, D]   own atom embedding, then
                                                   Linear-BN-ReLU-Linear-BN
    score = sigmoid(mean_channels(g + w * m))   [N]  in (0, 1), w = 1 (upstream's sc_alpha_mlp)

as in the upstream chem code (the GNN and MLP score generators each embed the raw atom features
themselves; ``D`` = the encoder's width). Choice: the scorer has its own embeddings rather than
sharing the encoder's input layer, so it works with any 2D encoder and can score a numpy
:class:`~graphmvp.molgraph.MolGraph` on its own (:func:`score_mol_graphs`, used by the MI
analysis). It is trained only through the masked-prediction loss: the training step multiplies
the UNMASKED atoms' representations by their scores before the decoder
(:class:`graphmvp.objectives.masked_prediction.MaskedNodePrediction`); the ranking itself is not
differentiable.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dgl

from graphmvp.models.gin import GIN, NUM_ATOM_TYPES, NUM_CHIRALITY_ROWS


class AtomMLP(nn.Module):
    """Atom-wise MLP on the raw atom features (no message passing).

    ``h_0 = E_type[atom[:, 0]] + E_chir[atom[:, 1]]`` (chirality tags beyond the table -> row 0,
    as the GIN), then ``num_layers`` times Linear(D, D) - BatchNorm, with ReLU between layers
    (none after the last). Forward: ``atom`` int64 [N, 2] -> float [N, D].
    """

    def __init__(self, emb_dim: int, num_layers: int = 2):
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        self.emb_dim = int(emb_dim)
        self.x_embedding1 = nn.Embedding(NUM_ATOM_TYPES, self.emb_dim)
        self.x_embedding2 = nn.Embedding(NUM_CHIRALITY_ROWS, self.emb_dim)
        nn.init.xavier_uniform_(self.x_embedding1.weight)
        nn.init.xavier_uniform_(self.x_embedding2.weight)
        self.linears = nn.ModuleList([nn.Linear(self.emb_dim, self.emb_dim) for _ in range(int(num_layers))])
        self.batch_norms = nn.ModuleList([nn.BatchNorm1d(self.emb_dim) for _ in range(int(num_layers))])

    def forward(self, atom: torch.Tensor) -> torch.Tensor:
        atom = atom.long()
        chirality = torch.where(atom[:, 1] < NUM_CHIRALITY_ROWS, atom[:, 1], torch.zeros_like(atom[:, 1]))
        h = self.x_embedding1(atom[:, 0]) + self.x_embedding2(chirality)
        last = len(self.linears) - 1
        for layer, (linear, norm) in enumerate(zip(self.linears, self.batch_norms)):
            h = norm(linear(h))
            if layer != last:
                h = F.relu(h)
        return h


class MaskScorer(nn.Module):
    """StructMAE-L's node scorer (see the module docstring).

    Args:
        emb_dim: D, the width of both score generators (upstream: the encoder's, 300).
        mlp_layers: layers of the atom-wise MLP (2 upstream).
        mlp_weight: w, weight of the MLP's output in the sum (1.0 upstream).

    Forward: ``g`` DGLGraph with N nodes (``ndata['atom']``, ``edata['bond']``), optional
    ``atom`` [N, 2] / ``bond`` [E, 2] overriding them -> float [N] scores in (0, 1).
    """

    def __init__(self, emb_dim: int = 300, mlp_layers: int = 2, mlp_weight: float = 1.0):
        super().__init__()
        self.gnn = GIN(num_layers=1, emb_dim=emb_dim, dropout=0.0, jk="last")
        self.mlp = AtomMLP(emb_dim, mlp_layers)
        self.mlp_weight = float(mlp_weight)

    def forward(self, g: dgl.DGLGraph, atom: Optional[torch.Tensor] = None,
                bond: Optional[torch.Tensor] = None) -> torch.Tensor:
        atom = g.ndata["atom"] if atom is None else atom
        h = self.gnn(g, atom=atom, bond=bond) + self.mlp_weight * self.mlp(atom)
        return torch.sigmoid(h.mean(dim=1))

    def extra_repr(self) -> str:
        return f"mlp_weight={self.mlp_weight}"


@torch.no_grad()
def score_mol_graphs(scorer: MaskScorer, graphs: Sequence, batch_size: int = 256) -> list[np.ndarray]:
    """Scores of numpy :class:`~graphmvp.molgraph.MolGraph` s (float64 [n_i] each), computed
    in eval mode (batch norm with its running statistics) in batches of ``batch_size``; the
    scorer's mode is restored afterwards."""
    from graphmvp.data.collate import batch_mol_graphs

    was_training = scorer.training
    scorer.eval()
    device = next(scorer.parameters()).device
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(graphs), batch_size):
            chunk = list(graphs[start:start + batch_size])
            g = batch_mol_graphs(chunk).to(device)
            scores = scorer(g).double().cpu().numpy()
            bounds = np.cumsum([0] + [m.num_atoms for m in chunk])
            out.extend(scores[bounds[i]:bounds[i + 1]] for i in range(len(chunk)))
    finally:
        scorer.train(was_training)
    return out


__all__ = ["AtomMLP", "MaskScorer", "score_mol_graphs"]
