"""Graph augmentations for contrastive 2D pretraining (GraphCL, JOAO), on numpy :class:`MolGraph`.

Every augmentation is a pure function ``f(graph, ratio, rng) -> MolGraph`` of the sample's
(already subgraph-masked) graph, a strength ``ratio`` in [0, 1) and the sample's random generator
(all randomness is drawn from ``rng``; the input graph is never modified). They are registered
in :data:`AUGMENTATIONS` under the names below. With ``n`` atoms and ``b`` bonds, the count rule
of all of them is the one of GraphCL (You et al., NeurIPS 2020): ``int(ratio * count)``, rounded
down, so a small molecule may be left unchanged (``n = 4`` at 0.2 drops ``int(0.8) = 0`` atoms).

``identity``
    the graph itself (JOAO's "no augmentation"); draws nothing.
``node_drop``
    drop ``d = int(ratio * n)`` atoms drawn uniformly without replacement, with their bonds; the
    remaining ``n - d`` atoms keep their order (an induced subgraph).
``subgraph``
    keep a connected subgraph of ``n - int(ratio * n)`` atoms grown from an atom drawn uniformly:
    each further atom is drawn uniformly from the frontier (atoms bonded to the kept part and not
    kept yet), as GraphCL's random-walk/neighbourhood growth. Growth stops early when the frontier
    is empty, i.e. the start atom's connected fragment (one ion of a salt) is smaller than the
    target: the result then is that whole fragment. Kept atoms keep their relative order.
``edge_perturb``
    remove ``m = int(ratio * b)`` bonds drawn uniformly without replacement (both directions) and
    add ``min(m, c)`` new bonds between atom pairs drawn uniformly without replacement from the
    ``c`` pairs not bonded in the input graph (so a removed bond is never added back, and the bond
    count stays ``b`` whenever ``c >= m``). New bonds are single bonds without direction
    (features ``(0, 0)``): a random pair has no bond type to copy; this choice is ours. New edges
    are appended after the kept ones, ``(i, j)`` then ``(j, i)`` with ``i < j``.
``attr_mask``
    set the features of ``int(ratio * n)`` atoms drawn uniformly without replacement to the mask
    token (type 119, chirality 0), as GraphCL's attribute masking on Hu et al.'s features (which
    have a mask token, so no Gaussian noise is needed); the structure is unchanged.

:class:`AugmentedViews` is the :class:`~graphmvp.data.pretrain_dataset.SampleTransform` of
GraphCL and JOAO: per sample it draws one augmentation *pair* ``(a1, a2)`` from a probability
vector over the ``K x K`` pairs of its ``K`` augmentations (pair id ``a1 * K + a2``), and applies
``a1`` then ``a2`` to the same graph with the same generator, giving two views
(:class:`ViewPair`, batched as :class:`ViewPairBatch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

import dgl  # graphmvp (the parent package, imported first) has set DGLBACKEND

from graphmvp.data.collate import BatchLayout, batch_mol_graphs
from graphmvp.data.masking import induced_subgraph, neighbor_lists
from graphmvp.molgraph import MASK_ATOM_TYPE, MolGraph
from graphmvp.registry import Registry

#: augmentation name -> ``f(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph``
AUGMENTATIONS: Registry[Callable[[MolGraph, float, np.random.Generator], MolGraph]] = Registry("augmentation")

#: features ``(bond type, direction)`` of a bond added by ``edge_perturb``: single, no direction
ADDED_BOND_FEATURES = (0, 0)


def check_ratio(ratio: float) -> float:
    """``ratio`` as a float; raises ``ValueError`` unless it is a number in [0, 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"augmentation ratio={ratio!r}: must be a number in [0, 1)")
    return float(ratio)


def num_perturbed(count: int, ratio: float) -> int:
    """How many of ``count`` atoms/bonds an augmentation of strength ``ratio`` changes:
    ``int(ratio * count)`` (GraphCL's rule, rounded down)."""
    return int(check_ratio(ratio) * count)


def bonded_pairs(graph: MolGraph) -> np.ndarray:
    """The bonds of ``graph`` as atom pairs ``(i, j)`` with ``i < j``: int64 [2, b], sorted by
    ``(i, j)`` (each bond once, whichever direction its edges are listed in)."""
    src = np.asarray(graph.edge_index[0], dtype=np.int64)
    dst = np.asarray(graph.edge_index[1], dtype=np.int64)
    n = max(graph.num_atoms, 1)
    keys = np.unique(np.minimum(src, dst) * n + np.maximum(src, dst))
    return np.stack([keys // n, keys % n]).astype(np.int64)


def non_bonded_pairs(graph: MolGraph) -> np.ndarray:
    """All atom pairs ``(i, j)``, ``i < j``, without a bond between them: int64 [2, c] sorted by
    ``(i, j)``; ``c = n (n - 1) / 2 - b``."""
    n = graph.num_atoms
    i, j = np.triu_indices(n, k=1)
    adjacent = np.zeros((n, n), dtype=bool)
    adjacent[graph.edge_index[0], graph.edge_index[1]] = True
    free = ~adjacent[i, j]
    return np.stack([i[free], j[free]]).astype(np.int64)


# -- the augmentations ------------------------------------------------------------------------------
@AUGMENTATIONS.register("identity")
def identity(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph:
    """The graph itself (JOAO's "no augmentation"); ``ratio`` is checked but unused, ``rng`` unused."""
    check_ratio(ratio)
    return graph


@AUGMENTATIONS.register("node_drop")
def node_drop(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph:
    """Drop ``int(ratio * n)`` uniformly drawn atoms and their bonds (GraphCL's NodeDrop).

    Returns the induced subgraph on the ``n - int(ratio * n)`` other atoms (order kept).
    Draws ``rng.choice(n, d, replace=False)`` only when ``d > 0``.
    """
    n = graph.num_atoms
    d = num_perturbed(n, ratio)
    if d == 0:
        return graph
    dropped = rng.choice(n, size=d, replace=False)
    keep = np.setdiff1d(np.arange(n, dtype=np.int64), dropped)
    return induced_subgraph(graph, keep)


@AUGMENTATIONS.register("subgraph")
def subgraph(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph:
    """A connected subgraph of ``min(n - int(ratio * n), size of the start atom's fragment)``
    atoms grown from a uniformly drawn atom through uniformly drawn frontier atoms (GraphCL's
    Subgraph; see the module docstring). Draws: the start atom (``rng.integers(n)``), then one
    ``rng.integers(len(frontier))`` per added atom; nothing when nothing is removed."""
    n = graph.num_atoms
    target = n - num_perturbed(n, ratio)
    if target >= n:
        return graph
    nbrs = neighbor_lists(n, graph.edge_index)
    seen = [False] * n  # kept or in the frontier
    kept: list[int] = []
    frontier: list[int] = []

    def add(atom: int) -> None:
        seen[atom] = True
        kept.append(atom)
        for b in nbrs[atom]:
            if not seen[b]:
                seen[b] = True
                frontier.append(b)

    add(int(rng.integers(n)))
    while len(kept) < target and frontier:
        pos = int(rng.integers(len(frontier)))
        atom = frontier[pos]
        frontier[pos] = frontier[-1]  # O(1) removal; the next draw stays uniform over the frontier
        frontier.pop()
        add(atom)
    return induced_subgraph(graph, np.sort(np.array(kept, dtype=np.int64)))


@AUGMENTATIONS.register("edge_perturb")
def edge_perturb(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph:
    """Remove ``m = int(ratio * b)`` uniformly drawn bonds and add ``min(m, c)`` bonds between
    uniformly drawn non-bonded pairs (GraphCL/JOAO's EdgePert; see the module docstring).

    Both directions of every removed bond go; both directions of every added bond come, with
    features :data:`ADDED_BOND_FEATURES`. Draws: ``rng.choice(b, m, replace=False)`` over the
    bonds sorted by ``(i, j)``, then ``rng.choice(c, min(m, c), replace=False)`` over the
    non-bonded pairs sorted by ``(i, j)``; nothing when ``m = 0``.
    """
    bonds = bonded_pairs(graph)
    m = num_perturbed(bonds.shape[1], ratio)
    if m == 0:
        return graph
    n = graph.num_atoms
    removed = bonds[:, rng.choice(bonds.shape[1], size=m, replace=False)]
    removed_keys = removed[0] * n + removed[1]
    src = np.asarray(graph.edge_index[0], dtype=np.int64)
    dst = np.asarray(graph.edge_index[1], dtype=np.int64)
    edge_keys = np.minimum(src, dst) * n + np.maximum(src, dst)
    kept_edges = np.flatnonzero(~np.isin(edge_keys, removed_keys))
    candidates = non_bonded_pairs(graph)
    n_add = min(m, candidates.shape[1])
    added = candidates[:, np.sort(rng.choice(candidates.shape[1], size=n_add, replace=False))]
    new_index = np.empty((2, 2 * n_add), dtype=np.int64)
    new_index[0, 0::2], new_index[1, 0::2] = added[0], added[1]
    new_index[0, 1::2], new_index[1, 1::2] = added[1], added[0]
    new_bond = np.tile(np.asarray(ADDED_BOND_FEATURES, dtype=graph.edge_features.dtype), (2 * n_add, 1))
    return MolGraph(
        atomic_num=graph.atomic_num,
        atom_features=graph.atom_features,
        edge_index=np.concatenate([np.asarray(graph.edge_index, dtype=np.int64)[:, kept_edges], new_index], axis=1),
        edge_features=np.concatenate([graph.edge_features[kept_edges], new_bond]),
    )


@AUGMENTATIONS.register("attr_mask")
def attr_mask(graph: MolGraph, ratio: float, rng: np.random.Generator) -> MolGraph:
    """Mask ``int(ratio * n)`` uniformly drawn atoms: type -> 119 (mask token), chirality -> 0
    (GraphCL's AttrMask on Hu et al.'s features). Draws ``rng.choice(n, k, replace=False)``
    only when ``k > 0``; the structure (edges, bonds) is shared with the input."""
    n = graph.num_atoms
    k = num_perturbed(n, ratio)
    if k == 0:
        return graph
    masked = rng.choice(n, size=k, replace=False)
    atom = graph.atom_features.copy()
    atom[masked, 0] = MASK_ATOM_TYPE
    atom[masked, 1] = 0
    return graph.with_atom_features(atom)


# -- two views per sample ---------------------------------------------------------------------------
@dataclass
class ViewPairBatch:
    """Two augmented views of B samples: ``first`` / ``second`` batched 2D DGLGraphs (B graphs
    each, sample b is graph b of both), ``pair`` int64 [B] (the augmentation pair id of each
    sample, ``a1 * K + a2``)."""

    first: dgl.DGLGraph
    second: dgl.DGLGraph
    pair: torch.Tensor


@dataclass
class ViewPair:
    """Two augmented views of one sample's graph and the id of the augmentation pair used."""

    first: MolGraph
    second: MolGraph
    pair: int

    @staticmethod
    def collate(payloads: Sequence["ViewPair"], layout: Optional[BatchLayout] = None) -> ViewPairBatch:
        """Batch the views (each view list into one DGL graph); ``layout`` is not needed."""
        return ViewPairBatch(
            first=batch_mol_graphs([p.first for p in payloads]),
            second=batch_mol_graphs([p.second for p in payloads]),
            pair=torch.tensor([p.pair for p in payloads], dtype=torch.int64),
        )


class AugmentedViews:
    """Sample transform: two augmented views per sample (GraphCL, JOAO).

    Args:
        name: key of the payload in ``batch.extras``.
        augmentations: K names in :data:`AUGMENTATIONS` (K >= 1, distinct).
        ratio: strength of every augmentation, in [0, 1).
        probabilities: [K * K] sampling probabilities of the pairs (pair ``a1 * K + a2`` =
            augmentation ``a1`` for the first view, ``a2`` for the second); None = uniform, i.e.
            each view's augmentation drawn independently and uniformly (GraphCL).

    ``__call__(graph, rng, info) -> ViewPair``: draws the pair with ``rng.choice(K * K, p=...)``,
    then the first view's augmentation draws, then the second's (all from ``rng``).
    """

    def __init__(self, name: str, augmentations: Sequence[str], ratio: float,
                 probabilities: Optional[Sequence[float]] = None):
        names = list(augmentations)
        if not names:
            raise ValueError("augmentations is empty: name at least one of " + ", ".join(AUGMENTATIONS.names()))
        for aug in names:
            if aug not in AUGMENTATIONS:
                raise ValueError(f"augmentation {aug!r} is unknown; allowed: {', '.join(AUGMENTATIONS.names())}")
        if len(set(names)) != len(names):
            raise ValueError(f"augmentations {names}: a name is given twice")
        self.name = name
        self.augmentations = tuple(names)
        self.ratio = check_ratio(ratio)
        self.functions = tuple(AUGMENTATIONS.get(a) for a in names)
        self.set_probabilities(probabilities)

    @property
    def num_pairs(self) -> int:
        return len(self.augmentations) ** 2

    def pair_names(self, pair: int) -> tuple[str, str]:
        """The (first view, second view) augmentation names of pair id ``pair``."""
        first, second = divmod(int(pair), len(self.augmentations))
        return self.augmentations[first], self.augmentations[second]

    def set_probabilities(self, probabilities: Optional[Sequence[float]]) -> None:
        """Use ``probabilities`` ([K * K], >= 0, summing to 1 within 1e-6; None = uniform)."""
        k2 = self.num_pairs
        if probabilities is None:
            self.probabilities = np.full(k2, 1.0 / k2)
            return
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if p.shape[0] != k2:
            raise ValueError(f"{self.name}: {p.shape[0]} pair probabilities for {k2} augmentation pairs")
        if not np.all(np.isfinite(p)) or (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
            raise ValueError(f"{self.name}: pair probabilities must be >= 0 and sum to 1, got {p.tolist()}")
        self.probabilities = p / p.sum()

    def views(self, graph: MolGraph, rng: np.random.Generator, pair: int) -> ViewPair:
        """The two views of ``graph`` under augmentation pair ``pair`` (first view drawn first)."""
        first, second = divmod(int(pair), len(self.augmentations))
        view1 = self.functions[first](graph, self.ratio, rng)
        view2 = self.functions[second](graph, self.ratio, rng)
        return ViewPair(view1, view2, int(pair))

    def __call__(self, graph: MolGraph, rng: np.random.Generator, info=None) -> ViewPair:
        pair = int(rng.choice(self.num_pairs, p=self.probabilities))
        return self.views(graph, rng, pair)

    def __repr__(self) -> str:
        return f"AugmentedViews(name={self.name!r}, augmentations={self.augmentations}, ratio={self.ratio})"


__all__ = [
    "ADDED_BOND_FEATURES",
    "AUGMENTATIONS",
    "AugmentedViews",
    "ViewPair",
    "ViewPairBatch",
    "attr_mask",
    "bonded_pairs",
    "check_ratio",
    "edge_perturb",
    "identity",
    "node_drop",
    "non_bonded_pairs",
    "num_perturbed",
    "subgraph",
]
