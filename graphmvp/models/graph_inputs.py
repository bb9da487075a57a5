"""The integer inputs of a 2D encoder: the graph's own features, or explicit overrides.

Every 2D encoder takes ``forward(g, atom=None, bond=None)``: ``atom`` int64 [N, 2] and ``bond``
int64 [E, 2] replace ``g.ndata['atom']`` / ``g.edata['bond']`` when given (the masking objectives
encode masked copies of a batch's features this way).
"""

from __future__ import annotations

from typing import Optional

import dgl
import torch


def graph_inputs(g: dgl.DGLGraph, atom: Optional[torch.Tensor], bond: Optional[torch.Tensor],
                 encoder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(atom [N, 2], bond [E, 2])``: the overrides, else the graph's features. Raises
    ``KeyError`` naming ``encoder`` when a feature is missing and ``ValueError`` when a row count
    disagrees with the graph."""
    if atom is None:
        if "atom" not in g.ndata:
            raise KeyError(f"{encoder} needs g.ndata['atom'] (int64 [N, 2]) or an explicit atom=")
        atom = g.ndata["atom"]
    if bond is None:
        if "bond" not in g.edata:
            raise KeyError(f"{encoder} needs g.edata['bond'] (int64 [E, 2]) or an explicit bond=")
        bond = g.edata["bond"]
    if atom.shape[0] != g.num_nodes():
        raise ValueError(f"atom features have {atom.shape[0]} rows but the graph has {g.num_nodes()} nodes")
    if bond.shape[0] != g.num_edges():
        raise ValueError(f"bond features have {bond.shape[0]} rows but the graph has {g.num_edges()} edges")
    return atom, bond
