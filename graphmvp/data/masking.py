"""GraphMVP's subgraph mask: keep a randomly grown connected part of a molecule.

GraphMVP drops a fraction ``M`` of the atoms of every pretraining sample from BOTH views (2D graph
and 3D conformer) by keeping a connected subgraph grown from a random atom (facts from the
original code):

* ``int(N * (1 - M)) + 1`` atoms are kept (at most ``N``; ``M = 0`` keeps everything);
* the first atom is drawn uniformly from all atoms;
* each further atom is drawn uniformly from the *frontier*: the atoms bonded to a kept atom that
  are not kept yet;
* when the frontier is empty (the molecule has several fragments, e.g. a salt, and the kept part
  covers a whole fragment) the next atom is drawn uniformly from all atoms not kept yet, and
  growth continues from there.

:func:`induced_subgraph` cuts a :class:`~graphmvp.molgraph.MolGraph` down to a set of atoms.
"""

from __future__ import annotations

import numpy as np

from graphmvp.molgraph import MolGraph


def neighbor_lists(num_atoms: int, edge_index: np.ndarray) -> list[list[int]]:
    """For every atom, the list of atoms it has an edge to (``edge_index`` [2, E], row 0 = src).

    Neighbours of each atom are listed in edge order.
    """
    src = np.asarray(edge_index[0], dtype=np.int64)
    dst = np.asarray(edge_index[1], dtype=np.int64)
    order = np.argsort(src, kind="stable")
    ptr = np.zeros(num_atoms + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=num_atoms), out=ptr[1:])
    flat = dst[order].tolist()
    bounds = ptr.tolist()
    return [flat[bounds[a] : bounds[a + 1]] for a in range(num_atoms)]


def num_kept_atoms(num_atoms: int, mask_ratio: float) -> int:
    """How many atoms the subgraph mask keeps: ``min(N, int(N * (1 - M)) + 1)``, N if ``M = 0``."""
    if mask_ratio == 0:
        return num_atoms
    return min(num_atoms, int(num_atoms * (1 - mask_ratio)) + 1)


def _check_mask_ratio(mask_ratio: float) -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio={mask_ratio!r}: must be in [0, 1) (0 = no masking)")


def subgraph_keep(
    num_atoms: int,
    edge_index: np.ndarray,
    mask_ratio: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Atoms kept by the subgraph mask (see the module docstring for the rule).

    Args:
        num_atoms: N, atoms of the molecule.
        edge_index: [2, E] int, directed edges (both directions of every bond).
        mask_ratio: M in [0, 1), the fraction of atoms to drop.
        rng: the random generator of this sample.

    Returns:
        Sorted int64 array [int(N * (1 - M)) + 1] (capped at N) of kept atom ids.
        ``rng`` is not used when everything is kept.
    """
    _check_mask_ratio(mask_ratio)
    n_keep = num_kept_atoms(num_atoms, mask_ratio)
    if n_keep >= num_atoms:
        return np.arange(num_atoms, dtype=np.int64)
    nbrs = neighbor_lists(num_atoms, edge_index)
    # one uniform draw per kept atom: u * (number of candidates) picks uniformly among them
    draws = rng.random(n_keep).tolist()
    kept = [False] * num_atoms
    seen = [False] * num_atoms  # kept, or already in the frontier
    frontier: list[int] = []
    order: list[int] = []

    def add(atom: int) -> None:
        kept[atom] = seen[atom] = True
        order.append(atom)
        for b in nbrs[atom]:
            if not seen[b]:
                seen[b] = True
                frontier.append(b)

    add(int(draws[0] * num_atoms))
    for u in draws[1:]:
        if frontier:
            pos = int(u * len(frontier))
            atom = frontier[pos]
            frontier[pos] = frontier[-1]  # O(1) removal; the pick stays uniform
            frontier.pop()
        else:  # the kept part is a whole fragment: jump to a random atom not kept yet
            rest = [a for a in range(num_atoms) if not kept[a]]
            atom = rest[int(u * len(rest))]
        add(atom)
    keep = np.array(order, dtype=np.int64)
    keep.sort()
    return keep


def induced_edges(num_atoms: int, edge_index: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges between kept atoms, relabelled so that atom ``keep[t]`` becomes ``t``.

    Args:
        num_atoms: N.
        edge_index: [2, E] int.
        keep: [k] distinct atom ids.

    Returns:
        ``(edge_index [2, E'] int64, edge_ids [E'] int64)``: the relabelled edges and their
        positions in the input edge list (to slice edge features with), in input order.
    """
    keep = np.asarray(keep, dtype=np.int64)
    new_id = np.full(num_atoms, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.shape[0], dtype=np.int64)
    relabelled = new_id[np.asarray(edge_index, dtype=np.int64)]
    edge_ids = np.flatnonzero((relabelled[0] >= 0) & (relabelled[1] >= 0))
    return relabelled[:, edge_ids], edge_ids


def induced_subgraph(graph: MolGraph, keep: np.ndarray) -> MolGraph:
    """The subgraph of ``graph`` on the atoms ``keep`` (atom ``keep[t]`` becomes atom ``t``),
    with only the edges whose both ends are kept. The atoms keep their ``atomic_num``; ``graph``
    itself is returned when every atom is kept in order."""
    keep = np.asarray(keep, dtype=np.int64)
    if keep.shape[0] == graph.num_atoms and np.array_equal(keep, np.arange(graph.num_atoms)):
        return graph
    edge_index, edge_ids = induced_edges(graph.num_atoms, graph.edge_index, keep)
    return MolGraph(
        atomic_num=graph.atomic_num[keep],
        atom_features=graph.atom_features[keep],
        edge_index=edge_index,
        edge_features=graph.edge_features[edge_ids],
    )
