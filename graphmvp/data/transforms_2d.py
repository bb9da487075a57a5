"""2D-view transforms of the GraphMVP-G / GraphMVP-C variants: AttrMask and ContextPred inputs.

Both act on the (already subgraph-masked) :class:`~graphmvp.molgraph.MolGraph` of a sample and
take the sample's random generator, so that they are reproducible per (seed, epoch, sample).

AttrMask (Hu et al. 2020, as used by GraphMVP-G): ``int(rate * n + 1)`` atoms (capped at n) are
drawn uniformly without replacement; a copy of the atom features gets type 119 (mask token) and
chirality 0 at those atoms; the labels are the true type indices (Z-1). Optionally (upstream's
``mask_edge``, off by default in GraphMVP) every directed edge with a masked atom at either end
gets bond type 5 (mask token) and direction 0, and its true bond type becomes an edge label.

ContextPred (Hu et al. 2020, as used by GraphMVP-C), with d = shortest-path distance (in bonds)
from a centre atom drawn uniformly:

* substructure: the atoms with ``d <= k`` (induced subgraph; the centre's index inside it is kept);
* context: the atoms with ``r1 < d <= r2`` (induced subgraph);
* overlap: the context atoms that are also substructure atoms (``r1 < d <= k``), as indices inside
  the context graph.

A sample whose context or overlap is empty (a small molecule, or a centre far from everything) has
no context pair: :attr:`ContextPair.has_context` is False and the collate function leaves it out of
the ContextPred part of the batch, as upstream does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from graphmvp.data.masking import induced_subgraph, neighbor_lists
from graphmvp.molgraph import MASK_ATOM_TYPE, MASK_BOND_TYPE, MolGraph


# --------------------------------------------------------------------------------------------
# AttrMask
# --------------------------------------------------------------------------------------------
@dataclass
class AttrMaskResult:
    """Masked copy of a graph's features, and what was masked.

    Shapes: ``atom`` [n, 2] (masked copy), ``index`` [m] int64 (masked atoms, sorted),
    ``label`` [m] int64 (their true type index Z-1). With edge masking: ``bond`` [e, 2] (masked
    copy), ``edge_index`` [me] int64 (masked directed edges, sorted), ``edge_label`` [me] int64
    (their true bond type 0..3); otherwise these three are None.
    """

    atom: np.ndarray
    index: np.ndarray
    label: np.ndarray
    bond: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    edge_label: np.ndarray | None = None


def num_attrmask_atoms(num_atoms: int, rate: float) -> int:
    """``int(rate * n + 1)``, capped at n: how many atoms AttrMask masks."""
    return min(num_atoms, int(rate * num_atoms + 1))


class AttrMask:
    """Mask ``int(rate * n + 1)`` atom types of a graph (and optionally the bonds touching them).

    Args:
        rate: fraction of atoms to mask, in (0, 1].
        mask_edges: also mask the bonds at masked atoms (bond type 5), default off as in GraphMVP.
    """

    def __init__(self, rate: float = 0.15, mask_edges: bool = False):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"attrmask rate={rate!r}: must be in (0, 1]")
        self.rate = float(rate)
        self.mask_edges = bool(mask_edges)

    def __repr__(self) -> str:
        return f"AttrMask(rate={self.rate}, mask_edges={self.mask_edges})"

    def __call__(self, graph: MolGraph, rng: np.random.Generator) -> AttrMaskResult:
        n = graph.num_atoms
        m = num_attrmask_atoms(n, self.rate)
        index = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        atom = graph.atom_features.copy()
        label = atom[index, 0].astype(np.int64)
        atom[index, 0] = MASK_ATOM_TYPE
        atom[index, 1] = 0
        if not self.mask_edges:
            return AttrMaskResult(atom=atom, index=index, label=label)
        masked = np.zeros(n, dtype=bool)
        masked[index] = True
        edge_ids = np.flatnonzero(masked[graph.edge_index[0]] | masked[graph.edge_index[1]]).astype(np.int64)
        bond = graph.edge_features.copy()
        edge_label = bond[edge_ids, 0].astype(np.int64)
        bond[edge_ids, 0] = MASK_BOND_TYPE
        bond[edge_ids, 1] = 0
        return AttrMaskResult(
            atom=atom, index=index, label=label, bond=bond, edge_index=edge_ids, edge_label=edge_label
        )


# --------------------------------------------------------------------------------------------
# ContextPred
# --------------------------------------------------------------------------------------------
def bfs_distances(num_atoms: int, edge_index: np.ndarray, source: int) -> np.ndarray:
    """Shortest-path distances (in edges) from ``source`` to every atom, by breadth-first search.

    Returns int64 [num_atoms]; -1 for atoms not reachable from ``source``.
    """
    nbrs = neighbor_lists(num_atoms, edge_index)
    dist = [-1] * num_atoms
    dist[source] = 0
    queue = deque([source])
    while queue:
        a = queue.popleft()
        da = dist[a] + 1
        for b in nbrs[a]:
            if dist[b] < 0:
                dist[b] = da
                queue.append(b)
    return np.array(dist, dtype=np.int64)


@dataclass
class ContextPair:
    """ContextPred input of one sample.

    ``substruct``: atoms within k hops of the centre (induced subgraph), ``center``: the centre's
    index inside ``substruct``; ``substruct_atoms`` / ``context_atoms``: the ids of their atoms in
    the graph the pair was cut from. ``context``: atoms at r1 < d <= r2 (None when there is no
    context pair), ``overlap`` [n_ov] int64: indices inside ``context`` of the atoms also in
    ``substruct``. ``has_context`` is False when the context or the overlap is empty.
    """

    substruct: MolGraph
    center: int
    substruct_atoms: np.ndarray
    context: MolGraph | None
    context_atoms: np.ndarray
    overlap: np.ndarray

    @property
    def has_context(self) -> bool:
        return self.context is not None


class ContextPred:
    """Cut a (substructure, context) pair around a random centre atom (Hu et al.).

    Args:
        k: substructure radius in bonds (5 upstream).
        r1, r2: the context is the ring r1 < d <= r2 (4 and 7 upstream); needs r1 < k so that
            context and substructure can overlap, and r1 < r2.
    """

    def __init__(self, k: int = 5, r1: int = 4, r2: int = 7):
        if k < 1:
            raise ValueError(f"contextpred k={k!r}: must be >= 1")
        if not 0 <= r1 < r2:
            raise ValueError(f"contextpred r1={r1!r}, r2={r2!r}: need 0 <= r1 < r2")
        if r1 >= k:
            raise ValueError(
                f"contextpred r1={r1!r} >= k={k!r}: the context (d > r1) could never overlap the "
                "substructure (d <= k); use r1 < k (upstream: k=5, r1=4, r2=7)"
            )
        self.k, self.r1, self.r2 = int(k), int(r1), int(r2)

    def __repr__(self) -> str:
        return f"ContextPred(k={self.k}, r1={self.r1}, r2={self.r2})"

    def __call__(self, graph: MolGraph, rng: np.random.Generator) -> ContextPair:
        n = graph.num_atoms
        if n == 0:
            raise ValueError("ContextPred needs a graph with at least one atom")
        return self.pair(graph, int(rng.integers(n)))

    def pair(self, graph: MolGraph, center: int) -> ContextPair:
        """The pair around a given centre atom (no randomness)."""
        dist = bfs_distances(graph.num_atoms, graph.edge_index, center)
        substruct_atoms = np.flatnonzero((dist >= 0) & (dist <= self.k)).astype(np.int64)
        substruct = induced_subgraph(graph, substruct_atoms)
        center_in_sub = int(np.searchsorted(substruct_atoms, center))
        context_atoms = np.flatnonzero((dist > self.r1) & (dist <= self.r2)).astype(np.int64)
        overlap = np.flatnonzero(dist[context_atoms] <= self.k).astype(np.int64)
        if context_atoms.shape[0] == 0 or overlap.shape[0] == 0:
            return ContextPair(
                substruct=substruct,
                center=center_in_sub,
                substruct_atoms=substruct_atoms,
                context=None,
                context_atoms=np.zeros(0, dtype=np.int64),
                overlap=np.zeros(0, dtype=np.int64),
            )
        return ContextPair(
            substruct=substruct,
            center=center_in_sub,
            substruct_atoms=substruct_atoms,
            context=induced_subgraph(graph, context_atoms),
            context_atoms=context_atoms,
            overlap=overlap,
        )
