"""The fast forward pass of SchNet's interaction stack, on the weights of schnetpack's module.

``schnet_fused_forward(schnet, g, z, r_ij)`` computes what ``schnetpack.representation.SchNet``
computes (Schuett et al. 2017/2018: embedding, then per interaction ``x = x + f2out(cfconv(
in2f(x)))``) and returns the same [N, D] "scalar_representation", reading the parameters of the
given schnetpack module. No parameter is added, renamed or copied, so a state dict is the same
for the plain (schnetpack) and the fused path and checkpoints load into either.

What differs is the execution (measured in ``benchmarks/pretrain_throughput.py``; figures in
``docs/benchmarks.md``):

* the edge part of each interaction is :func:`graphmvp.models.cfconv_fused.cfconv_fused`
  (filter network + cutoff + gather/product/neighbour sum as one autograd node on DGL's
  ``gspmm``, no [E, F] message tensor, no ``index_put_`` in the backward);
* distances, the Gaussian expansion and the cosine cutoff are computed once per forward and
  shared by the interactions (schnetpack does the same), as is the reverse graph used by the
  backward pass; with ``compute_dtype=torch.bfloat16`` the expansion is also cast once;
* each interaction is recomputed in the backward (:mod:`graphmvp.models.recompute`), so the
  [E, F] tensors ``cfconv_fused`` keeps for its gradients exist for one interaction at a time.

The activation of the filter network must be schnetpack's shifted softplus and the
interactions must not share weights (GraphMVP's setting); anything else is rejected with a
``ValueError`` rather than computed differently.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import dgl
import torch
from torch import Tensor, nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)
from graphmvp.models.cfconv_fused import cfconv_fused
from graphmvp.models.recompute import recomputed


def check_fusable(schnet: nn.Module) -> None:
    """Raise ``ValueError`` unless ``schnet`` has the layout :func:`schnet_fused_forward` assumes.

    Expected: ``schnetpack.representation.SchNet`` with per-interaction ``in2f`` (bias-free
    Linear), ``filter_network`` = [Dense(G, F, shifted softplus), Dense(F, F)], ``f2out``, not
    shared across interactions.
    """
    from schnetpack.nn.activations import shifted_softplus

    interactions = list(schnet.interactions)
    if len({id(m) for m in interactions}) != len(interactions):
        raise ValueError("the fused SchNet path needs unshared interaction blocks (shared_interactions=False)")
    for k, block in enumerate(interactions):
        first, second = block.filter_network[0], block.filter_network[1]
        if first.activation is not shifted_softplus:
            raise ValueError(
                f"interaction {k}: the fused SchNet path supports the shifted-softplus filter "
                f"activation only, got {first.activation!r}"
            )
        if not isinstance(second.activation, nn.Identity):
            raise ValueError(f"interaction {k}: the filter network's second layer must be linear")
        if first.bias is None or second.bias is None:
            raise ValueError(f"interaction {k}: the fused SchNet path expects biases in the filter network")


def schnet_fused_forward(
    schnet: nn.Module,
    g: dgl.DGLGraph,
    z: Tensor,
    r_ij: Tensor,
    compute_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """SchNet's atom representations, computed on the parameters of ``schnet``.

    Args:
        schnet: a ``schnetpack.representation.SchNet`` (layout checked by :func:`check_fusable`).
        g: DGLGraph, N nodes, E edges src = neighbour j -> dst = centre i.
        z: int64 [N] atomic numbers (rows of ``schnet.embedding``).
        r_ij: float [E] x 3 = ``pos[src] - pos[dst]`` per edge (``pos[j] - pos[i]``).
        compute_dtype: dtype of the filter networks (None = float32, i.e. equal to the plain
            path within rounding; ``torch.bfloat16`` = bf16 filter GEMMs, see cfconv_fused).

    Returns:
        float [N, D]: the representation after the last interaction (before any output head).
    """
    x = schnet.embedding(z)  # [N, D]
    d_ij = torch.norm(r_ij, dim=1)  # [E] (as schnetpack computes it)
    rbf = schnet.radial_basis(d_ij)  # [E, G], shared by all interactions
    fcut = schnet.cutoff_fn(d_ij)  # [E]
    if compute_dtype is not None and compute_dtype != rbf.dtype:
        rbf = rbf.to(compute_dtype)  # cast once, not once per interaction
    rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)  # for the backward's gspmm

    def interaction(block: nn.Module, x: Tensor, rbf: Tensor, fcut: Tensor) -> Tensor:
        first, second = block.filter_network[0], block.filter_network[1]
        v = block.in2f(x)  # [N, F]
        v = cfconv_fused(
            g, v, rbf, fcut, first.weight, first.bias, second.weight, second.bias,
            rg=rg, compute_dtype=compute_dtype,
        )
        return block.f2out(v)  # [N, D]

    for block in schnet.interactions:
        # recomputed in the backward: cfconv_fused keeps [E, F] tensors for its gradients
        x = x + recomputed(partial(interaction, block), x, rbf, fcut)
    return x
