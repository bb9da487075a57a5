"""Random-walk structural encodings (RWSE) of Dwivedi et al. (2022), as used by GraphGPS.

For one molecule with adjacency ``A`` (``A[i, j] = 1`` for an edge ``i -> j``) and out-degrees
``d_i``, the random-walk matrix is ``RW = D^{-1} A`` and the encoding of atom ``i`` is its
return probabilities::

    rwse[i, k - 1] = (RW^k)[i, i]          k = 1 .. steps  (GraphGPS: 20 steps)

Isolated atoms (degree 0, e.g. the ions of ``[Na+].[Cl-]``): their row of ``RW`` is zero (a
walk cannot leave nor stay), so every return probability is 0. This is GraphGPS's convention
(it inverts the degrees with ``1/0 -> 0``); the alternative "a walker on an isolated atom stays
put" (probability 1) is not used.

The encodings are computed per molecule: in a batched graph the random walk never crosses from
one molecule to another (the batched adjacency is block-diagonal and the walk is computed
block by block). Two entry points:

* :func:`rwse` - numpy, one molecule from its ``edge_index`` [2, E]: for datasets that store
  the encodings (``g.ndata['rwse']``).
* :func:`batched_rwse` - torch, every molecule of a (batched) DGL graph at once, on the fly:
  row ``i`` of ``RW^k`` restricted to ``i``'s molecule is propagated over the edges with
  ``index_add`` (cost ``steps x E x n_max``; no dense [N, N] matrix).

:func:`node_rwse` returns ``g.ndata['rwse']`` when a dataset precomputed it and computes it
otherwise, so fine-tuning and :func:`graphmvp.embed` need no data change.
"""

from __future__ import annotations

import numpy as np
import torch

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
import dgl

#: number of random-walk steps of GraphGPS's RWSE (k = 1 .. 20)
RWSE_STEPS = 20
#: the node-data key under which a dataset may store precomputed encodings (float32 [N, steps])
RWSE_KEY = "rwse"


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def rwse(edge_index: np.ndarray, num_nodes: int, steps: int = RWSE_STEPS) -> np.ndarray:
    """Return probabilities of one molecule: float32 [num_nodes, steps], column k-1 = diag(RW^k).

    Args:
        edge_index: int [2, E] directed edges ``src -> dst`` (a molecule lists both directions of
            each bond); repeated edges count once.
        num_nodes: number of atoms n (atoms without edges get zero rows).
        steps: number of walk lengths (k = 1 .. steps).
    """
    steps = _check_steps(steps)
    n = int(num_nodes)
    if n < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes!r}")
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {edge_index.shape}")
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise ValueError(f"edge_index has node ids outside 0..{n - 1}")
    adjacency = np.zeros((n, n), dtype=np.float64)
    adjacency[edge_index[0], edge_index[1]] = 1.0
    degree = adjacency.sum(axis=1)
    inv_degree = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    walk = inv_degree[:, None] * adjacency  # RW = D^-1 A
    out = np.empty((n, steps), dtype=np.float64)
    power = walk
    for k in range(steps):
        out[:, k] = np.diagonal(power)
        if k + 1 < steps:
            power = power @ walk
    return out.astype(np.float32)


def batched_rwse(g: dgl.DGLGraph, steps: int = RWSE_STEPS) -> torch.Tensor:
    """Return probabilities of every atom of a (batched) graph: float32 [N, steps].

    Each molecule of the batch (``g.batch_num_nodes()``) is its own random walk; the result
    equals :func:`rwse` of each molecule, concatenated. Computed in float64 on ``g``'s device.
    """
    steps = _check_steps(steps)
    n_total = g.num_nodes()
    device = g.device
    if n_total == 0:
        return torch.zeros((0, steps), dtype=torch.float32, device=device)
    counts = g.batch_num_nodes().to(device)
    graph_of_node = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    local = torch.arange(n_total, device=device) - offsets[graph_of_node]  # position in its molecule
    width = int(counts.max())

    src, dst = g.edges()
    src, dst = src.long(), dst.long()
    if src.numel():
        # repeated edges count once, as in rwse(): keep unique (src, dst) pairs
        pairs = torch.unique(src * n_total + dst)
        src, dst = pairs // n_total, pairs % n_total
    if bool((graph_of_node[src] != graph_of_node[dst]).any()):
        raise ValueError("the graph has edges between different molecules of the batch")
    degree = torch.zeros(n_total, dtype=torch.float64, device=device).index_add_(
        0, src, torch.ones_like(src, dtype=torch.float64)
    )
    inv_degree = torch.where(degree > 0, 1.0 / degree.clamp(min=1.0), torch.zeros_like(degree))

    # walk[i, c] = (RW^k)[i, atom at local position c of i's molecule]; starts as the identity
    walk = torch.zeros((n_total, width), dtype=torch.float64, device=device)
    walk[torch.arange(n_total, device=device), local] = 1.0
    out = torch.empty((n_total, steps), dtype=torch.float64, device=device)
    for k in range(steps):
        # (RW X)[i] = 1/d_i * sum over edges i -> j of X[j]
        walk = torch.zeros_like(walk).index_add_(0, src, walk[dst]) * inv_degree[:, None]
        out[:, k] = walk[torch.arange(n_total, device=device), local]
    return out.float()


def node_rwse(g: dgl.DGLGraph, steps: int = RWSE_STEPS) -> torch.Tensor:
    """``g.ndata['rwse']`` (float32 [N, steps]) if a dataset stored it, else :func:`batched_rwse`.

    Raises ``ValueError`` when the stored encodings have another shape.
    """
    steps = _check_steps(steps)
    if RWSE_KEY in g.ndata:
        stored = g.ndata[RWSE_KEY]
        if stored.dim() != 2 or stored.shape[0] != g.num_nodes() or stored.shape[1] != steps:
            raise ValueError(
                f"g.ndata[{RWSE_KEY!r}] has shape {tuple(stored.shape)}, the encoder needs "
                f"[{g.num_nodes()}, {steps}] (rwse_steps={steps})"
            )
        return stored.float()
    return batched_rwse(g, steps)


__all__ = ["RWSE_KEY", "RWSE_STEPS", "batched_rwse", "node_rwse", "rwse"]
