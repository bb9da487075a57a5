"""Radius neighbour lists with a cap on the number of neighbours, per molecule.

GraphMVP's SchNet links every atom ``i`` to the atoms ``j`` within 10 A, at most 32 of them.
Upstream (``radius_graph(..., max_num_neighbors=32)`` from torch_cluster) keeps whichever 32 the
search happens to return first, so which atoms are dropped in crowded molecules is arbitrary and
implementation dependent. Here the cap is defined: the ``max_neighbors`` NEAREST atoms are kept,
ties in distance broken by the lower index ``j``. The result is deterministic and independent of
how the search is run.

Call this per molecule: a neighbour list over several molecules concatenated would link atoms of
different molecules (as ``dgl.radius_graph`` does on a batched graph).
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def radius_neighbors(
    pos: np.ndarray,
    cutoff: float = 10.0,
    max_neighbors: Optional[int] = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour pairs ``(i, j)``: ``j != i`` with ``|pos[j] - pos[i]| < cutoff``, capped.

    Args:
        pos: float [N, 3] positions of one molecule (Angstrom).
        cutoff: strict distance cutoff (pairs at exactly ``cutoff`` are excluded).
        max_neighbors: keep at most this many nearest ``j`` per ``i`` (ties -> lower ``j``);
            ``None`` keeps all.

    Returns:
        ``(idx_i, idx_j)``, int64 [P] each: centre atoms and their neighbours, sorted by ``i``,
        then by distance, then by ``j``. Distances are computed in float64. For the 3D graph,
        edges run ``src = idx_j -> dst = idx_i``.
    """
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape [N, 3], got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.floating) and not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"pos must be numeric, got dtype {pos.dtype}")
    cutoff = float(cutoff)
    if not cutoff > 0.0:
        raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
    if max_neighbors is not None and (int(max_neighbors) != max_neighbors or max_neighbors < 1):
        raise ValueError(f"max_neighbors must be a positive integer or None, got {max_neighbors!r}")

    n = pos.shape[0]
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()

    p = pos.astype(np.float64, copy=False)
    diff = p[None, :, :] - p[:, None, :]  # [i, j, 3] = pos[j] - pos[i]
    dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)  # [N, N]
    if not np.isfinite(dist).all():
        raise ValueError("pos contains non-finite values")
    dist[dist >= cutoff] = np.inf
    np.fill_diagonal(dist, np.inf)

    k = n - 1 if max_neighbors is None else min(int(max_neighbors), n - 1)
    # a stable sort over j = 0..N-1 orders equal distances by ascending j
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # [N, k]
    keep = np.isfinite(np.take_along_axis(dist, order, axis=1))  # [N, k]
    idx_i = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, k))[keep]
    idx_j = order[keep].astype(np.int64, copy=False)
    return np.ascontiguousarray(idx_i), np.ascontiguousarray(idx_j)
