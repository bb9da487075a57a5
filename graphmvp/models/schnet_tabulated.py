"""SchNet's interaction stack with tabulated filter networks (the "tabulated" path).

Same parameters, same result within float32 rounding as schnetpack's forward (the "plain" path),
computed differently (Schuett et al. 2017/2018 for the model): each interaction's filter network
is evaluated on a distance grid and interpolated per edge
(:mod:`graphmvp.models.filter_table`, cubic Hermite, error ~1e-9 of the filter's scale), and
the continuous-filter convolution is DGL's ``u_mul_e_sum`` (no [E, F] message tensor;
:func:`graphmvp.models.cfconv_fused.edge_product_sum`). The
per-edge work drops from five GEMMs per interaction (forward + backward) to sparse products
with 4 entries per edge; what remains is memory bound.

Requirements (checked): the fused path's layout (:func:`graphmvp.models.schnet_fused.check_fusable`)
and schnetpack's ``GaussianRBF`` radial basis (its derivative is used for the table). Positions
must not require gradients (forces are not supported: the interpolation weights are constants).
"""

from __future__ import annotations

import dgl
import torch
from torch import Tensor, nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)
from graphmvp.models.cfconv_fused import edge_product_sum
from graphmvp.models.filter_table import distance_grid, filter_table, hermite_lookup, tabulated_filter
from graphmvp.models.schnet_fused import check_fusable


def check_tabulable(schnet: nn.Module) -> None:
    """Raise ``ValueError`` unless :func:`schnet_tabulated_forward` can run ``schnet``."""
    from schnetpack.nn import GaussianRBF

    check_fusable(schnet)
    if not isinstance(schnet.radial_basis, GaussianRBF):
        raise ValueError(
            f"the tabulated SchNet path needs schnetpack's GaussianRBF radial basis, got {type(schnet.radial_basis).__name__}"
        )


def schnet_tabulated_forward(schnet: nn.Module, g: dgl.DGLGraph, z: Tensor, r_ij: Tensor) -> Tensor:
    """SchNet's atom representations [N, D] with tabulated filter networks.

    Args: as :func:`graphmvp.models.schnet_fused.schnet_fused_forward` (``r_ij`` float [E, 3] =
    ``pos[src] - pos[dst]``; it must not require gradients).
    """
    if r_ij.requires_grad:
        raise ValueError(
            "the tabulated SchNet path gives no gradients to positions; use impl='fused' or 'plain'"
        )
    rbf = schnet.radial_basis
    x = schnet.embedding(z)  # [N, D]
    d_ij = torch.norm(r_ij, dim=1)  # [E]
    fcut = schnet.cutoff_fn(d_ij)  # [E]
    grid, spacing = distance_grid(rbf.widths, float(schnet.cutoff), dtype=x.dtype)
    lookup = hermite_lookup(d_ij, fcut, grid, spacing)  # shared by the interactions
    coeff = -0.5 / rbf.widths.pow(2)
    rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)  # for the backward's gspmm
    for block in schnet.interactions:
        first, second = block.filter_network[0], block.filter_network[1]
        table = filter_table(first, second, rbf.offsets, coeff, grid)  # [2M, F]
        w = tabulated_filter(table, lookup)  # [E, F], cutoff included
        v = edge_product_sum(g, block.in2f(x), w, rg)  # [N, F]
        x = x + block.f2out(v)
    return x
