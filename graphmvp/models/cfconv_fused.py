"""SchNet's continuous-filter convolution fused with its filter network: one autograd node.

SchNet (Schuett et al., NeurIPS 2017; J. Chem. Phys. 148, 241722, 2018), interaction block,
edge part. For every edge ``e = (j -> i)`` (src = neighbour j, dst = centre i) with radial basis
``rbf_e`` [G] and cosine-cutoff weight ``c_e``::

    filter_e = (ssp(rbf_e W1^T + b1) W2^T + b2) * c_e            [F]
    y_i      = sum_{e = (j -> i)} x_j * filter_e                 [F]

which is what ``schnetpack.representation.SchNetInteraction`` computes between its ``in2f`` and
``f2out`` layers (``filter_network``, ``Wij * rcut_ij``, ``x[idx_j] * Wij``, ``scatter_add``).
Same mathematics, different execution (the "fused" SchNet path):

* gather, product and neighbour sum are ONE DGL ``gspmm`` (``u_mul_e_sum``): the [E, F] messages
  ``x_j * filter_e`` are never materialised, and the backward pass has no ``index_put_``
  (the gradient of ``x[idx_j]`` in the plain path, a serial scatter that took ~19% of SchNet's
  forward + backward time on the benchmark batch). Gradients: ``dx = gspmm(reverse graph,
  dy * filter)``, ``dfilter = x[src] * dy[dst]`` (:func:`edge_outer`). The same aggregation
  with given filters is :func:`edge_product_sum` (used by the tabulated path).
* the filter network runs with in-place bias/activation/cutoff steps, and the backward pass is
  written out: per interaction it keeps the pre-activation, the activation and the cut filter
  (3 [E, F] tensors) and computes exactly the gradients that are asked for.
* optional ``compute_dtype=torch.bfloat16``: the filter network's two GEMMs run in bf16 (weights
  cast per call, fp32 master weights; ``rbf`` may be passed already in bf16), with fp32
  accumulation inside the GEMM and bf16 results. The shifted softplus is evaluated in fp32 and
  then rounded (``softplus(p) - log 2`` cancels for small ``p``: computed in bf16 it would carry
  ~3% relative error), its derivative in bf16; the cutoff product, the neighbour sum and every
  gradient reduction over edges stay fp32. Not equal to fp32: a few 1e-3 relative on outputs and
  gradients, see ``docs/benchmarks.md`` for the measured deviation.

Deviation from schnetpack: none in the result (equal within float rounding, tested in
``tests/test_schnet_fast.py``); the sum over the neighbours of an atom is taken in DGL's CSC
order instead of ``index_add``'s edge order.
"""

from __future__ import annotations

import math
from typing import Optional

import dgl
import torch
import torch.nn.functional as F
from torch import Tensor

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)

_LOG2 = math.log(2.0)
# torch's softplus defaults (beta, threshold): softplus(x) = x above the threshold
_SOFTPLUS_BETA = 1.0
_SOFTPLUS_THRESHOLD = 20.0


def _ssp_(p: Tensor) -> Tensor:
    """``softplus(p) - log 2`` into a new tensor (one extra in-place pass for the shift)."""
    return F.softplus(p, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD).sub_(_LOG2)


class FusedCFConvFunction(torch.autograd.Function):
    """Autograd node of :func:`cfconv_fused` (arguments in the same order, graphs first)."""

    @staticmethod
    def forward(ctx, g, rg, x, rbf, fcut, w1, b1, w2, b2, compute_dtype):
        cd = compute_dtype
        p = torch.addmm(b1.to(cd), rbf.to(cd), w1.to(cd).t())  # [E, F] pre-activation
        if cd == x.dtype:
            h = _ssp_(p)  # [E, F] activation
        else:
            # softplus(p) ~ log 2 + p / 2 for small p: rounding it to bf16 before the shift would
            # lose the small part (~3% relative error of h); shift in x's dtype, then round
            h = _ssp_(p.to(x.dtype)).to(cd)
        w_raw = torch.addmm(b2.to(cd), h, w2.to(cd).t())  # [E, F] filter before the cutoff
        # w_raw is needed after this only for the gradient of the cutoff weights
        keep_raw = ctx.needs_input_grad[4]
        if keep_raw or w_raw.dtype != fcut.dtype:
            w = torch.mul(w_raw, fcut.unsqueeze(1))  # the cut filter in fcut's dtype (bf16 x fp32 -> fp32)
        else:
            w = w_raw.mul_(fcut.unsqueeze(1))  # in place: the raw filter is not needed again
        y = dgl.ops.gspmm(g, "mul", "sum", x, w)  # [N, F]
        ctx.graphs = (g, rg)
        ctx.compute_dtype = cd
        ctx.save_for_backward(x, rbf, fcut, w1, w2, p, h, w, w_raw if keep_raw else None)
        return y

    @staticmethod
    def backward(ctx, gy):
        g, rg = ctx.graphs
        cd = ctx.compute_dtype
        x, rbf, fcut, w1, w2, p, h, w, w_raw = ctx.saved_tensors
        need_x, need_rbf, need_fcut, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[2:9]
        gy = gy.contiguous()
        gx = dgl.ops.gspmm(rg, "mul", "sum", gy, w) if need_x else None  # [N, F]
        g_cut = edge_outer(g, x, gy)  # [E, F] d loss / d (cut filter)
        g_fcut = (g_cut * w_raw).sum(1) if need_fcut else None  # [E]
        g_raw = g_cut.mul_(fcut.unsqueeze(1))  # [E, F] d loss / d (filter before the cutoff)
        g_b2 = g_raw.sum(0) if need_b2 else None
        g_raw_cd = g_raw.to(cd)
        g_w2 = g_raw_cd.t().mm(h).to(w2.dtype) if need_w2 else None  # [F, F]
        g_w1 = g_b1 = g_rbf = None
        if need_w1 or need_b1 or need_rbf:
            g_h = g_raw_cd.mm(w2.to(cd))  # [E, F]
            g_p = torch.ops.aten.softplus_backward(g_h, p, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD)
            g_b1 = g_p.sum(0, dtype=w1.dtype) if need_b1 else None  # fp32 sum of bf16 terms
            g_w1 = g_p.t().mm(rbf.to(cd)).to(w1.dtype) if need_w1 else None  # [F, G]
            g_rbf = g_p.mm(w1.to(cd)).to(rbf.dtype) if need_rbf else None  # [E, G]
        if g_b2 is not None:
            g_b2 = g_b2.to(w2.dtype)
        if g_b1 is not None:
            g_b1 = g_b1.to(w1.dtype)
        return None, None, gx, g_rbf, g_fcut, g_w1, g_b1, g_w2, g_b2, None


def edge_outer(g: dgl.DGLGraph, x: Tensor, gy: Tensor) -> Tensor:
    """[E, F]: ``x[src] * gy[dst]`` per edge (the filter gradient of ``u_mul_e_sum``).

    Two ``index_select`` and an in-place product: ~2x faster on CPU than DGL's ``gsddmm``
    (``u_mul_v``) at 300,000 edges x 128 features (measured, torch 2.2 / DGL 2.1).
    """
    src, dst = g.edges()
    return x.index_select(0, src).mul_(gy.index_select(0, dst))


class EdgeProductSumFunction(torch.autograd.Function):
    """Autograd node of :func:`edge_product_sum`."""

    @staticmethod
    def forward(ctx, g, rg, x, w):
        ctx.graphs = (g, rg)
        ctx.save_for_backward(x, w)
        return dgl.ops.gspmm(g, "mul", "sum", x, w)

    @staticmethod
    def backward(ctx, gy):
        g, rg = ctx.graphs
        x, w = ctx.saved_tensors
        gy = gy.contiguous()
        gx = dgl.ops.gspmm(rg, "mul", "sum", gy, w) if ctx.needs_input_grad[2] else None
        gw = edge_outer(g, x, gy) if ctx.needs_input_grad[3] else None
        return None, None, gx, gw


def edge_product_sum(g: dgl.DGLGraph, x: Tensor, w: Tensor, rg: Optional[dgl.DGLGraph] = None) -> Tensor:
    """[N, F]: ``y_i = sum_{e = (j -> i)} x_j * w_e`` (SchNet's continuous-filter convolution for
    given per-edge filters ``w`` [E, F]; ``x`` [N, F]).

    DGL's ``u_mul_e_sum`` forward (no [E, F] message tensor); backward ``dx`` = the same on the
    reverse graph ``rg`` (``dgl.reverse(g)``, made when omitted), ``dw = x[src] * dy[dst]``
    (:func:`edge_outer`).
    """
    if rg is None:
        rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)
    return EdgeProductSumFunction.apply(g, rg, x, w)


def cfconv_fused(
    g: dgl.DGLGraph,
    x: Tensor,
    rbf: Tensor,
    fcut: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    rg: Optional[dgl.DGLGraph] = None,
    compute_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Filter network + cosine cutoff + continuous-filter convolution (see the module docstring).

    Args:
        g: DGLGraph with N nodes and E edges, src = neighbour j -> dst = centre i.
        x: float [N, F] atom features after SchNet's ``in2f``.
        rbf: [E, G] radial basis of each edge's distance (float32, or already ``compute_dtype``).
        fcut: float [E] cosine-cutoff weight of each edge.
        w1, b1: [F, G], [F]: the filter network's first Linear (followed by shifted softplus).
        w2, b2: [F, F], [F]: its second Linear.
        rg: ``dgl.reverse(g, copy_ndata=False)``, shared by the interactions of one forward
            (made here when omitted).
        compute_dtype: dtype of the filter network's GEMMs and activation: None = ``x``'s
            dtype (equal to the plain path within rounding) or e.g. ``torch.bfloat16`` (faster
            GEMMs on CPUs with bf16 units, ~3 significant digits).

    Returns:
        float [N, F]: ``y_i = sum_{j -> i} x_j * filter_ji``.
    """
    if compute_dtype is None:
        compute_dtype = x.dtype
    if not compute_dtype.is_floating_point:
        raise ValueError(f"compute_dtype={compute_dtype}: must be a floating-point dtype or None")
    n, e = g.num_nodes(), g.num_edges()
    if x.dim() != 2 or x.shape[0] != n:
        raise ValueError(f"x must have shape [N={n}, F], got {tuple(x.shape)}")
    if rbf.dim() != 2 or rbf.shape[0] != e or rbf.shape[1] != w1.shape[1]:
        raise ValueError(f"rbf must have shape [E={e}, G={w1.shape[1]}], got {tuple(rbf.shape)}")
    if fcut.shape != (e,):
        raise ValueError(f"fcut must have shape [E={e}], got {tuple(fcut.shape)}")
    if w2.shape != (x.shape[1], w1.shape[0]):
        raise ValueError(f"w2 must have shape [F={x.shape[1]}, {w1.shape[0]}], got {tuple(w2.shape)}")
    if rg is None:
        rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)
    return FusedCFConvFunction.apply(g, rg, x, rbf, fcut, w1, b1, w2, b2, compute_dtype)
