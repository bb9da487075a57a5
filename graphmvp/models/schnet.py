"""The 3D encoder: SchNet (schnetpack 2.0.4) with GraphMVP's per-atom output head.

GraphMVP's SchNet: hidden size 300, 128 filters, 6 interaction blocks, 51 Gaussians on [0, 10] A,
cosine cutoff at 10 A, shifted softplus; then per atom Linear(300, 300) - ssp - Linear(300, 300).
The molecule vector is the mean over atoms (``graph_readout(g, h, "mean")``), not done here.

The interaction blocks are ``schnetpack.representation.SchNet``, whose layers match the original
SchNet (filter network Linear(n_rbf, F) - ssp - Linear(F, F) scaled by the cosine cutoff,
bias-free atom-to-filter Linear, sum over neighbours, Linear(F, D) - ssp - Linear(D, D), residual).

Radial basis: ``schnetpack.nn.GaussianRBF(51, 10.0)`` puts centres at ``linspace(0, 10, 51)``
(spacing 0.2 A) with width = spacing, so ``exp(-0.5 / 0.2**2 * (d - mu)**2)`` has coefficient
-12.5, the value of the upstream ``GaussianSmearing`` (-0.5 / spacing**2). Checked in the tests.

Atom embedding: schnetpack's table treats row 0 as padding (kept at zero), so it is fed the TRUE
atomic numbers ``Z`` (1..119), not the type index Z - 1 used by the 2D graph; upstream's table is
indexed by Z - 1. Either way each element has its own learnable row. The table has ``max_z = 120``
rows so every element of the 2D featuriser (Z <= 119) is accepted.

Input (3D graph contract): ``g.ndata['Z']`` int64 [N], ``g.ndata['pos']`` float32 [N, 3] in
Angstrom; an edge ``src = j -> dst = i`` for each neighbour ``j`` of atom ``i`` (see
:func:`graphmvp.data.neighbors.radius_neighbors`). Hence schnetpack's ``idx_i = dst``,
``idx_j = src`` and ``Rij = pos[j] - pos[i]``. Pairs at distance >= cutoff get a zero cutoff
weight, so they contribute nothing even if present.

Implementations (``impl``, registry :data:`SCHNET_IMPLS`; all read the SAME parameters, those
of the ``schnetpack`` module, so state dicts and checkpoints are shared and a model can switch
with ``encoder.impl = name``). Speed-ups: SchNet forward + backward, batch of 256 drug molecules
with hydrogens, 2 threads (``benchmarks/pretrain_throughput.py``, figures in docs/benchmarks.md).

* ``"plain"``: schnetpack's own layers in its forward's order (``x[idx_j] * Wij`` +
  ``index_add``); the reference.
* ``"fused"``: :func:`graphmvp.models.schnet_fused.schnet_fused_forward`, the filter network and
  continuous-filter convolution as one autograd node per interaction on DGL's ``gspmm``; same
  operations as "plain" (outputs equal, gradients within 1e-7 relative).
* ``"tabulated"`` (default): :func:`graphmvp.models.schnet_tabulated.schnet_tabulated_forward`,
  the filter networks evaluated on a 0.005 A distance grid and interpolated per edge (cubic
  Hermite; interpolation error ~3e-9 of the filter's scale, below float32 rounding), the
  convolution on ``gspmm``: equal to "plain" within ~1e-6 relative on outputs and gradients
  (tested at 1e-5), no gradients to positions.
* ``"fused-bf16"``: "fused" with the filter networks' GEMMs in bfloat16 (fp32 weights, fp32
  neighbour sums); NOT equal to float32 (a few 1e-3 relative on outputs and gradients).

Memory: "plain" and "fused" recompute each interaction in the backward
(:mod:`graphmvp.models.recompute`), "tabulated" keeps no [E, F] tensor at all (edge chunks), so
no path holds the per-edge intermediates of all six interactions at once.

``schnetpack`` (slow to import) is imported when a ``SchNetEncoder`` is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import dgl
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)
from graphmvp.models.recompute import recomputed
from graphmvp.models.registry import ENCODERS
from graphmvp.models.schnet_fused import check_fusable, schnet_fused_forward
from graphmvp.models.schnet_tabulated import DEFAULT_EDGE_CHUNK, check_tabulable, schnet_tabulated_forward
from graphmvp.registry import Registry

MAX_Z = 120  # atomic numbers 1..119 (row 0 = schnetpack's padding row)
_LOG2 = math.log(2.0)


def _accept_any(schnet: nn.Module) -> None:
    """Layout check of the plain path: schnetpack runs any SchNet it built."""


@dataclass(frozen=True)
class SchNetImpl:
    """One way to run SchNet's interaction stack on a ``schnetpack.representation.SchNet``.

    ``forward(schnet, g, z, r_ij) -> [N, D]`` (z int64 [N]; r_ij float [E, 3] = pos[src] -
    pos[dst]; plus ``edge_chunk=`` when ``edge_chunked``); ``check(schnet)`` raises
    ``ValueError`` if the module's layout is not supported.
    """

    forward: Callable[..., torch.Tensor]
    check: Callable[[nn.Module], None] = _accept_any
    edge_chunked: bool = False  # forward takes edge_chunk (edges per chunk of the convolution)


def schnetpack_forward(schnet: nn.Module, g: dgl.DGLGraph, z: torch.Tensor, r_ij: torch.Tensor) -> torch.Tensor:
    """schnetpack's own SchNet (the reference path): [N, D] scalar representation.

    The steps of ``schnetpack.representation.SchNet.forward`` (2.0.4) on its own modules
    (embedding; distances, radial basis and cutoff once; ``x = x + interaction(x, f_ij, idx_i,
    idx_j, rcut_ij)`` per block), with each interaction :func:`~graphmvp.models.recompute.recomputed`
    in the backward: bit-equal to ``schnet(inputs)`` (tested), without its [E, F] intermediates
    of all six blocks alive at once."""
    src, dst = g.edges()
    idx_i, idx_j = dst.long(), src.long()
    x = schnet.embedding(z)
    d_ij = torch.norm(r_ij, dim=1)
    f_ij = schnet.radial_basis(d_ij)
    rcut_ij = schnet.cutoff_fn(d_ij)
    for interaction in schnet.interactions:
        x = x + recomputed(interaction, x, f_ij, idx_i, idx_j, rcut_ij)
    return x


#: implementation name -> :class:`SchNetImpl`
SCHNET_IMPLS: Registry[SchNetImpl] = Registry("SchNet implementation")
SCHNET_IMPLS.register("plain")(SchNetImpl(schnetpack_forward))
SCHNET_IMPLS.register("fused")(SchNetImpl(schnet_fused_forward, check_fusable))
SCHNET_IMPLS.register("fused-bf16")(
    SchNetImpl(partial(schnet_fused_forward, compute_dtype=torch.bfloat16), check_fusable)
)
SCHNET_IMPLS.register("tabulated")(SchNetImpl(schnet_tabulated_forward, check_tabulable, edge_chunked=True))
DEFAULT_SCHNET_IMPL = "tabulated"


class ShiftedSoftplus(nn.Module):
    """``ssp(x) = softplus(x) - log 2`` (zero at x = 0), SchNet's activation. Any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - _LOG2


@ENCODERS.register("schnet")
class SchNetEncoder(nn.Module):
    """SchNet node encoder over the 3D graph.

    Args:
        hidden: atom representation size D (300 = the GIN size in GraphMVP).
        n_filters: continuous-filter size F.
        n_interactions: number of interaction blocks.
        n_gaussians: number of Gaussian radial basis functions on [0, cutoff].
        cutoff: cosine cutoff radius (Angstrom).
        max_z: rows of the atom embedding (accepts Z in 1..max_z - 1).
        impl: how the interaction stack is run, a name in :data:`SCHNET_IMPLS` ("plain",
            "fused", "tabulated", "fused-bf16"; see the module docstring). Not part of the state dict;
            settable later (``encoder.impl = "plain"``).
        edge_chunk: edges per chunk of the tabulated convolution (0 = all at once; other
            implementations ignore it): its per-edge buffers are [edge_chunk, n_filters] instead
            of [E, n_filters] (:func:`graphmvp.models.schnet_tabulated.edge_chunks`). Not part of
            the state dict.

    Forward:
        g: DGLGraph (possibly batched) with ``ndata['Z']`` int64 [N], ``ndata['pos']`` float [N, 3],
            edges src = neighbour j -> dst = centre i.
        returns float [N, D] atom representations (after the output head).
    """

    def __init__(
        self,
        hidden: int = 300,
        n_filters: int = 128,
        n_interactions: int = 6,
        n_gaussians: int = 51,
        cutoff: float = 10.0,
        max_z: int = MAX_Z,
        impl: str = DEFAULT_SCHNET_IMPL,
        edge_chunk: int = DEFAULT_EDGE_CHUNK,
    ):
        super().__init__()
        for name, value in (
            ("hidden", hidden),
            ("n_filters", n_filters),
            ("n_interactions", n_interactions),
            ("max_z", max_z),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(n_gaussians) < 2:
            raise ValueError(f"n_gaussians must be >= 2, got {n_gaussians!r}")
        if not float(cutoff) > 0.0:
            raise ValueError(f"cutoff must be > 0, got {cutoff!r}")

        from schnetpack.nn import CosineCutoff, GaussianRBF
        from schnetpack.representation import SchNet

        self.hidden = int(hidden)
        self.cutoff = float(cutoff)
        self.max_z = int(max_z)
        self.schnet = SchNet(
            n_atom_basis=self.hidden,
            n_interactions=int(n_interactions),
            radial_basis=GaussianRBF(n_rbf=int(n_gaussians), cutoff=self.cutoff),
            cutoff_fn=CosineCutoff(self.cutoff),
            n_filters=int(n_filters),
            max_z=self.max_z,
        )
        self.head = nn.Sequential(
            nn.Linear(self.hidden, self.hidden),
            ShiftedSoftplus(),
            nn.Linear(self.hidden, self.hidden),
        )
        for layer in (self.head[0], self.head[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.impl = impl
        if int(edge_chunk) < 0:
            raise ValueError(f"edge_chunk must be >= 0 (0: all edges at once), got {edge_chunk!r}")
        self.edge_chunk = int(edge_chunk)

    @property
    def impl(self) -> str:
        """Name of the implementation in :data:`SCHNET_IMPLS` that runs the interactions."""
        return self._impl

    @impl.setter
    def impl(self, name: str) -> None:
        if name not in SCHNET_IMPLS:
            raise ValueError(f"unknown SchNet implementation {name!r}; allowed: {', '.join(SCHNET_IMPLS.names())}")
        SCHNET_IMPLS.get(name).check(self.schnet)
        self._impl = name

    @property
    def embedding(self) -> nn.Embedding:
        """The [max_z, D] atom-type embedding (indexed by atomic number)."""
        return self.schnet.embedding

    @property
    def gaussian_coefficient(self) -> torch.Tensor:
        """The [n_gaussians] exponent factors -0.5 / width**2 of the radial basis."""
        widths = self.schnet.radial_basis.widths
        return -0.5 / widths.pow(2)

    def forward(self, g: dgl.DGLGraph) -> torch.Tensor:
        for key in ("Z", "pos"):
            if key not in g.ndata:
                raise KeyError(f"SchNetEncoder needs g.ndata['{key}']")
        z = g.ndata["Z"].long()
        pos = g.ndata["pos"]
        if pos.dim() != 2 or pos.shape[1] != 3:
            raise ValueError(f"g.ndata['pos'] must have shape [N, 3], got {tuple(pos.shape)}")
        if z.numel() and (int(z.min()) < 1 or int(z.max()) >= self.max_z):
            raise ValueError(
                f"atomic numbers must be in 1..{self.max_z - 1} (true Z, not Z - 1), "
                f"got range {int(z.min())}..{int(z.max())}"
            )
        src, dst = g.edges()
        r_ij = pos[src] - pos[dst]  # [E, 3] = pos[j] - pos[i]
        impl = SCHNET_IMPLS.get(self._impl)
        if impl.edge_chunked:
            x = impl.forward(self.schnet, g, z, r_ij, edge_chunk=self.edge_chunk)  # [N, D]
        else:
            x = impl.forward(self.schnet, g, z, r_ij)  # [N, D]
        return self.head(x)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, cutoff={self.cutoff}, max_z={self.max_z}, impl={self._impl!r}, "
                f"edge_chunk={self.edge_chunk}")
