"""Embedding of the categorical atom and bond descriptors (:mod:`graphmvp.descriptors`) into a GIN.

Each descriptor column has its own table; a row's embedding is the sum over its columns, as the
GIN embeds Hu et al.'s features. The atom sum is added to the GIN's input embedding ``h_0``; the
bond sum, with one set of tables per layer (as the GIN has its own bond tables per layer), is
added to that layer's edge embedding::

    node_extra    = sum_c A_c[atom_desc[:, c]]                 [N, D]
    edge_extra[l] = sum_c B_{l,c}[bond_desc[:, c]]             [E, D]   for l = 0..L-1

The module sits outside the encoder, so a pretrained encoder's state dict is unchanged and loads
strictly. ``zero_init=True`` (what fine-tuning uses on a pretrained encoder) starts every table at
zero: the model then computes exactly what the pretrained encoder alone does, and the
descriptors enter only as fine-tuning learns them. Otherwise the tables get the GIN's own
initialisation (Xavier uniform).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn


def _tables(sizes: Mapping[str, int], dim: int, zero_init: bool) -> nn.ModuleList:
    tables = nn.ModuleList(nn.Embedding(int(n), dim) for n in sizes.values())
    for t in tables:
        nn.init.zeros_(t.weight) if zero_init else nn.init.xavier_uniform_(t.weight)
    return tables


def _embed(tables: nn.ModuleList, index: Tensor) -> Tensor:
    index = index.long()
    if index.dim() != 2 or index.shape[1] != len(tables):
        raise ValueError(f"descriptors must have shape [n, {len(tables)}], got {tuple(index.shape)}")
    out = tables[0](index[:, 0])
    for c in range(1, len(tables)):
        out = out + tables[c](index[:, c])
    return out


class DescriptorEmbedding(nn.Module):
    """Args:
        atom_sizes / bond_sizes: descriptor name -> table rows, in column order
            (:data:`graphmvp.descriptors.ATOM_DESCRIPTORS` / ``BOND_DESCRIPTORS``).
        emb_dim: D, the encoder's width.
        num_layers: L, the encoder's layers (one set of bond tables each).
        zero_init: start every table at zero (see the module docstring).

    Forward: ``atom_desc`` int [N, Ca], ``bond_desc`` int [E, Cb] ->
    (``node_extra`` float [N, D], ``edge_extra`` list of L float [E, D]).
    """

    def __init__(self, atom_sizes: Mapping[str, int], bond_sizes: Mapping[str, int], emb_dim: int,
                 num_layers: int, zero_init: bool = False):
        super().__init__()
        if not atom_sizes or not bond_sizes:
            raise ValueError("DescriptorEmbedding needs at least one atom and one bond descriptor")
        self.atom_tables = _tables(atom_sizes, int(emb_dim), zero_init)
        self.bond_tables = nn.ModuleList(_tables(bond_sizes, int(emb_dim), zero_init) for _ in range(int(num_layers)))

    def forward(self, atom_desc: Tensor, bond_desc: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _embed(self.atom_tables, atom_desc), [_embed(t, bond_desc) for t in self.bond_tables]


__all__ = ["DescriptorEmbedding"]
