"""SchNet's interaction stack with tabulated filter networks (the "tabulated" path).

Same parameters, same result within float32 rounding as schnetpack's forward (the "plain" path),
computed differently (Schuett et al. 2017/2018 for the model): each interaction's filter network
is evaluated on a distance grid and interpolated per edge
(:mod:`graphmvp.models.filter_table`, cubic Hermite, error ~1e-9 of the filter's scale), and
the continuous-filter convolution is DGL's ``u_mul_e_sum`` (no [E, F] message tensor;
:class:`TabulatedConvFunction`, which also keeps no [E, F] filter for the backward). The
per-edge work drops from five GEMMs per interaction (forward + backward) to sparse products
with 4 entries per edge; what remains is memory bound.

Requirements (checked): the fused path's layout (:func:`graphmvp.models.schnet_fused.check_fusable`)
and schnetpack's ``GaussianRBF`` radial basis (its derivative is used for the table). Positions
must not require gradients (forces are not supported: the interpolation weights are constants).
"""

from __future__ import annotations

from dataclasses import dataclass

import dgl
import torch
from torch import Tensor, nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)
from graphmvp.models.cfconv_fused import edge_outer
from graphmvp.models.filter_table import (
    HermiteLookup,
    distance_grid,
    filter_table,
    hermite_lookup,
    lookup_rows,
    lookup_transpose,
)
from graphmvp.models.schnet_fused import check_fusable


def check_tabulable(schnet: nn.Module) -> None:
    """Raise ``ValueError`` unless :func:`schnet_tabulated_forward` can run ``schnet``."""
    from schnetpack.nn import GaussianRBF

    check_fusable(schnet)
    if not isinstance(schnet.radial_basis, GaussianRBF):
        raise ValueError(
            f"the tabulated SchNet path needs schnetpack's GaussianRBF radial basis, got {type(schnet.radial_basis).__name__}"
        )


#: edges per chunk of the tabulated convolution (``SchNetEncoder(edge_chunk=...)``,
#: ``--schnet-edge-chunk``; 0 = all edges at once): its [chunk, F] buffers are 16 MiB at F = 128
DEFAULT_EDGE_CHUNK = 32768


@dataclass(frozen=True)
class EdgeChunk:
    """The edges ``[e0, e1)`` of a graph whose edges are sorted by destination: every in-edge of
    the destination nodes ``[n0, n1)`` and no other. ``block`` (sources: all N nodes,
    destinations: ``n1 - n0``) and ``rblock`` (its reverse) are DGL graphs of these edges alone
    (the graph and its reverse when one chunk holds everything); ``lookup`` interpolates their
    filters."""

    e0: int
    e1: int
    n0: int
    n1: int
    block: dgl.DGLGraph
    rblock: dgl.DGLGraph
    lookup: HermiteLookup


def edge_chunks(g: dgl.DGLGraph, rg: dgl.DGLGraph, d: Tensor, fcut: Tensor, grid: Tensor, spacing: float,
                edge_chunk: int) -> list[EdgeChunk]:
    """``g``'s edges cut into chunks of about ``edge_chunk`` edges at destination-node boundaries
    (a node's in-edges are never split; a chunk may exceed ``edge_chunk`` by one node's
    in-degree). One chunk when ``edge_chunk`` is 0 or not smaller than E, or when the edges are
    not sorted by destination (the 3D graphs of the data pipeline are: radius_neighbors sorts by
    centre atom and batching keeps molecule order)."""
    n, e = g.num_nodes(), g.num_edges()
    src, dst = g.edges()
    if edge_chunk < 0:
        raise ValueError(f"edge_chunk must be >= 0, got {edge_chunk}")
    if edge_chunk == 0 or e <= edge_chunk or bool((dst[1:] < dst[:-1]).any()):
        return [EdgeChunk(0, e, 0, n, g, rg, hermite_lookup(d, fcut, grid, spacing))]
    first_edge = torch.searchsorted(dst, torch.arange(n + 1, dtype=dst.dtype))  # [N + 1] edge start per node
    cuts = torch.searchsorted(first_edge[:n], torch.arange(edge_chunk, e, edge_chunk, dtype=first_edge.dtype))
    nodes = torch.unique(torch.cat([torch.tensor([0, n], dtype=cuts.dtype), cuts])).tolist()
    chunks = []
    for n0, n1 in zip(nodes[:-1], nodes[1:]):
        e0, e1 = int(first_edge[n0]), int(first_edge[n1])
        s, t = src[e0:e1], dst[e0:e1] - n0
        chunks.append(EdgeChunk(
            e0, e1, n0, n1,
            dgl.create_block((s, t), num_src_nodes=n, num_dst_nodes=n1 - n0),
            dgl.create_block((t, s), num_src_nodes=n1 - n0, num_dst_nodes=n),
            hermite_lookup(d[e0:e1], fcut[e0:e1], grid, spacing),
        ))
    return chunks


class TabulatedConvFunction(torch.autograd.Function):
    """``y_i = sum_{e = (j -> i)} x_j * (S @ table)_e`` without keeping [E, F] tensors.

    Chunk by chunk of edges (:func:`edge_chunks`) the forward interpolates the chunk's filters
    (``S @ table``), takes the neighbour sums of its destination nodes on DGL's ``u_mul_e_sum``
    and drops them; the backward interpolates them again (``embedding_bag``, a few % of the
    tabulated step) for ``dx`` and forms the filter gradient ``x[src] * dy[dst]`` after that.
    So the per-edge buffers are [chunk, F] and none is kept between forward and backward
    (keeping the filters held 6 x E x F floats, 780 MB at batch 256). With one chunk the
    operations are those of interpolating once and keeping the filter (results bit-equal);
    with several, ``dx`` and the table gradient are sums of per-chunk parts (float rounding).
    """

    @staticmethod
    def forward(ctx, x, table, chunks):
        parts = [dgl.ops.gspmm(c.block, "mul", "sum", x, lookup_rows(table, c.lookup)) for c in chunks]
        ctx.chunks = chunks
        ctx.save_for_backward(x, table)
        return parts[0] if len(parts) == 1 else torch.cat(parts)  # [N, F]

    @staticmethod
    def backward(ctx, gy):
        x, table = ctx.saved_tensors
        gy = gy.contiguous()
        gx = g_table = None
        for c in ctx.chunks:
            gy_c = gy[c.n0 : c.n1]
            if ctx.needs_input_grad[0]:
                part = dgl.ops.gspmm(c.rblock, "mul", "sum", gy_c, lookup_rows(table, c.lookup))  # [N, F]
                gx = part if gx is None else gx.add_(part)
            if ctx.needs_input_grad[1]:
                part = lookup_transpose(edge_outer(c.block, x, gy_c), c.lookup)  # [2M, F]
                g_table = part if g_table is None else g_table.add_(part)
        return gx, g_table, None


def tabulated_conv(x: Tensor, table: Tensor, chunks: list[EdgeChunk]) -> Tensor:
    """[N, F]: SchNet's continuous-filter convolution of ``x`` [N, F] with the filters
    interpolated from ``table`` [2M, F] (:func:`graphmvp.models.filter_table.filter_table`)
    over the edges of ``chunks`` (:func:`edge_chunks`). See :class:`TabulatedConvFunction`."""
    return TabulatedConvFunction.apply(x, table, chunks)


def schnet_tabulated_forward(schnet: nn.Module, g: dgl.DGLGraph, z: Tensor, r_ij: Tensor,
                             edge_chunk: int = DEFAULT_EDGE_CHUNK) -> Tensor:
    """SchNet's atom representations [N, D] with tabulated filter networks.

    Args: as :func:`graphmvp.models.schnet_fused.schnet_fused_forward` (``r_ij`` float [E, 3] =
    ``pos[src] - pos[dst]``; it must not require gradients); ``edge_chunk``: edges per chunk of
    the convolution (0: all at once; see :func:`edge_chunks`).
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
    coeff = -0.5 / rbf.widths.pow(2)
    rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)  # for the backward's gspmm
    chunks = edge_chunks(g, rg, d_ij, fcut, grid, spacing, edge_chunk)  # shared by the interactions
    for block in schnet.interactions:
        first, second = block.filter_network[0], block.filter_network[1]
        table = filter_table(first, second, rbf.offsets, coeff, grid)  # [2M, F]
        v = tabulated_conv(block.in2f(x), table, chunks)  # [N, F], cutoff included
        x = x + block.f2out(v)
    return x
