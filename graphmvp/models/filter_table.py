"""SchNet's filter network evaluated through a cubic Hermite table over distance.

In SchNet (Schuett et al. 2017/2018) the continuous filter of an edge depends on the edge only
through its distance ``d``: per interaction ``filter(d) = ssp(rbf(d) W1^T + b1) W2^T + b2``, a
smooth function R -> R^F (Gaussians of width 0.2 A at GraphMVP's sizes). The plain path evaluates
the filter network once per edge and interaction: two GEMMs on [E, G] and [E, F] (E ~ 300,000
edges per batch of 256 drug molecules) forward, three more backward, about 85% of SchNet's
FLOPs. Here it is evaluated on a uniform grid of ``M`` distances in [0, cutoff] (values AND
exact derivatives, a few [M, F] GEMMs), and each edge's filter is the cubic Hermite interpolant
between its two grid neighbours::

    filter(d) ~ h00(t) T[b] + h01(t) T[b+1] + s (h10(t) D[b] + h11(t) D[b+1]),
    b = floor(d / s), t = d / s - b, s = grid spacing,

with T = filter values and D = d filter / d d at the grid points (h.. the Hermite basis).
Interpolation error: at most ``s**4 / 384 * max |filter''''|`` per component. The grid spacing
is ``width / GRID_POINTS_PER_WIDTH`` of the narrowest Gaussian (0.005 A at upstream sizes,
M = 2,001): the measured error is ~3e-9 of max |filter| (below float32 rounding, 6e-8), for
random-initialised weights with the filter weights doubled and random biases. Gradients to the
filter network's parameters are exact derivatives of the interpolant, i.e. the interpolant of
the exact derivatives (interpolation is linear in the table), so they carry the same error.

Per edge the interpolation is one sparse-dense product ``S @ [T; D]`` (S: [E, 2M] with 4 entries
per row, the Hermite weights times the cosine cutoff) and its backward is ``S^T @ g``, both run
as ``embedding_bag`` sums; S and S^T (a stable sort of the entries by table row) are built once
per forward and shared by all interactions.
Not supported: gradients to positions (the weights S are treated as constants): callers must
check (``schnet_tabulated_forward`` raises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: grid points per Gaussian width (spacing = width / this); error ~ spacing**4 (see the docstring)
GRID_POINTS_PER_WIDTH = 40
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class HermiteLookup:
    """The interpolation operator of one batch, shared by all interactions of a forward pass.

    As a sparse matrix S [E, 2M]: row e holds 4 entries, the Hermite weights (times the cutoff
    weight of edge e) of table rows ``b, b+1`` (values) and ``M+b, M+b+1`` (derivatives).
    Stored for ``torch.nn.functional.embedding_bag`` (sum mode with per-sample weights, the
    fastest CPU kernel for "weighted sum of a few rows" here; torch.sparse.mm was 4-5x slower):

    * ``rows`` int64 [E, 4], ``weights`` [E, 4]: S by edge (forward: filter = S @ table);
    * ``t_edges`` int64 [4E], ``t_offsets`` int64 [2M], ``t_weights`` [4E]: the same entries
      grouped by table row, edges ascending within a row (backward: S^T @ grad);
    * ``grid`` [M] distances, ``spacing`` (A).
    """

    rows: Tensor
    weights: Tensor
    t_edges: Tensor
    t_offsets: Tensor
    t_weights: Tensor
    grid: Tensor
    spacing: float


def distance_grid(widths: Tensor, cutoff: float, dtype=torch.float32) -> tuple[Tensor, float]:
    """The uniform grid [M] on [0, cutoff] with spacing <= min(widths) / GRID_POINTS_PER_WIDTH
    (on ``widths``' device)."""
    target = float(widths.min()) / GRID_POINTS_PER_WIDTH
    m = int(math.ceil(cutoff / target)) + 1
    return torch.linspace(0.0, cutoff, m, dtype=dtype, device=widths.device), cutoff / (m - 1)


def hermite_lookup(d: Tensor, fcut: Tensor, grid: Tensor, spacing: float) -> HermiteLookup:
    """The interpolation operator for edge distances ``d`` [E] and cutoff weights ``fcut`` [E].

    Distances outside [0, grid[-1]] are clamped to it (beyond the cutoff ``fcut`` is 0 anyway).
    """
    m = grid.shape[0]
    d = d.detach()
    u = (d / spacing).clamp(0.0, m - 1)
    b = u.floor().long().clamp(max=m - 2)  # [E] left grid point
    t = (u - b).unsqueeze(1)  # [E, 1] in [0, 1]
    t2, t3 = t * t, t * t * t
    weights = torch.cat(
        [2 * t3 - 3 * t2 + 1, -2 * t3 + 3 * t2, spacing * (t3 - 2 * t2 + t), spacing * (t3 - t2)], dim=1
    ) * fcut.detach().unsqueeze(1)  # [E, 4]: T[b], T[b+1], D[b], D[b+1]
    rows = torch.stack([b, b + 1, m + b, m + b + 1], dim=1)  # [E, 4]
    flat_rows = rows.reshape(-1)
    order = torch.argsort(flat_rows, stable=True)  # entries by table row, then by edge
    counts = torch.bincount(flat_rows, minlength=2 * m)
    t_offsets = torch.cumsum(counts, 0) - counts  # [2M] start of each row's entries
    t_edges = torch.div(order, 4, rounding_mode="floor")
    return HermiteLookup(rows, weights.contiguous(), t_edges, t_offsets, weights.reshape(-1)[order], grid, spacing)


def filter_table(first: nn.Linear, second: nn.Linear, offsets: Tensor, coeff: Tensor, grid: Tensor) -> Tensor:
    """[2M, F]: the filter network's values (rows 0..M-1) and distance derivatives (rows M..2M-1)
    on ``grid``, differentiable in the layers' parameters.

    ``first`` (Linear G -> F, then shifted softplus) and ``second`` (Linear F -> F) are the filter
    network; the radial basis is ``exp(coeff * (d - offsets)**2)`` [G] (schnetpack's GaussianRBF,
    ``coeff = -0.5 / width**2``).
    """
    diff = grid.unsqueeze(1) - offsets  # [M, G]
    rbf = torch.exp(coeff * diff * diff)  # [M, G]
    drbf = 2.0 * coeff * diff * rbf  # [M, G] d rbf / d d
    p = F.linear(rbf, first.weight, first.bias)  # [M, F]
    dp = F.linear(drbf, first.weight)  # [M, F]
    h = F.softplus(p) - _LOG2
    dh = torch.sigmoid(p) * dp  # d ssp(p) / d d
    values = F.linear(h, second.weight, second.bias)
    slopes = F.linear(dh, second.weight)
    return torch.cat([values, slopes], dim=0)


def lookup_rows(table: Tensor, lookup: HermiteLookup) -> Tensor:
    """[E, F] = ``S @ table``: every edge's interpolated filter (no autograd node of its own)."""
    return F.embedding_bag(lookup.rows, table, per_sample_weights=lookup.weights, mode="sum")


def lookup_transpose(grad: Tensor, lookup: HermiteLookup) -> Tensor:
    """[2M, F] = ``S^T @ grad`` for ``grad`` [E, F]: the table gradient of :func:`lookup_rows`."""
    return F.embedding_bag(lookup.t_edges, grad.contiguous(), offsets=lookup.t_offsets,
                           per_sample_weights=lookup.t_weights, mode="sum")


class _LookupFunction(torch.autograd.Function):
    """``S @ table`` with the backward ``S^T @ grad`` (no gradient to the weights of S)."""

    @staticmethod
    def forward(ctx, table, lookup):
        ctx.lookup = lookup
        return lookup_rows(table, lookup)

    @staticmethod
    def backward(ctx, grad):
        return lookup_transpose(grad, ctx.lookup), None


def tabulated_filter(table: Tensor, lookup: HermiteLookup) -> Tensor:
    """[E, F]: each edge's filter times its cutoff weight, interpolated from ``table`` [2M, F]."""
    if table.shape[0] != 2 * lookup.grid.shape[0]:
        raise ValueError(f"table must have 2M = {2 * lookup.grid.shape[0]} rows, got {table.shape[0]}")
    return _LookupFunction.apply(table, lookup)
