"""Where to mask: the masking distributions of masked-node prediction (one axis of the
masking-design study, Yang, Thost, Ma, arXiv 2512.07064).

A distribution picks the atoms of one molecule graph whose features are replaced by the mask
token. Each one is a plain numpy object usable without a model (the MI analysis samples from it
directly)::

    dist = build_mask_distribution("pagerank", rate=0.5, total_epochs=100)
    masked = dist.sample(graph, rng, epoch=40)        # sorted int64 atom ids

Registered in :data:`MASK_DISTRIBUTIONS`:

``uniform`` (Hu et al. 2020, AttrMask)
    ``m`` atoms drawn uniformly without replacement (``rng.choice(n, m, replace=False)``, sorted):
    exactly the draws of :class:`graphmvp.data.transforms_2d.AttrMask`.
``pagerank`` (StructMAE-P, Liu et al., "Where to Mask: Structure-Guided Masking for Graph Masked
Autoencoders", IJCAI 2024)
    PageRank score ``p`` of every atom on the molecule graph (:func:`pagerank`: damping 0.85,
    power iteration, L1 tolerance ``n * 1e-6``, networkx' defaults, which upstream calls). Easy-to-hard curriculum in epoch ``e`` (0-based) of ``E``: the
    ``b = ceil(rate * sqrt(e / E) * n)`` atoms with the highest PageRank get ``+alpha`` (0.25) added
    to uniform random keys ``u ~ U[0, 1)``; the ``m`` atoms with the largest keys are masked.
``learnable`` (StructMAE-L, same paper)
    the same rule with the scores of a learned scorer
    (:class:`graphmvp.models.mask_scorer.MaskScorer`) instead of PageRank and ``alpha = 0.5``;
    ``sample(graph, rng, epoch, scores=...)`` takes the scorer's numpy output. In training the
    scores come from the model, so the selection runs in the training step
    (:func:`structure_guided_mask` on the whole batch) from the random keys drawn here
    (:meth:`LearnableMasking.draw`).

How many atoms (``m``), :data:`MASK_COUNTS`:

``hu``: ``min(n, int(rate * n + 1))`` (Hu et al.'s AttrMask and GraphMAE's chem code, which reuses
it); ``ceil``: ``min(n, ceil(rate * n))``, at least 1 (StructMAE: PyG's ``topk`` with a ratio keeps
``ceil(ratio * n)``). ``count="auto"`` (default) gives each distribution its paper's rule:
uniform -> ``hu``, pagerank and learnable -> ``ceil``; set ``count`` explicitly to compare
distributions at equal counts. ``ceil`` is taken of ``rate * n - 1e-9`` so that floating-point
noise (``0.15 * 20 = 3.0000000000000004``) does not add an atom.

Reading of the curriculum (documented choices):

* "the top ``mask_rate * sqrt(epoch / E)`` nodes" is a FRACTION of each graph's atoms, turned
  into a count with the same ``ceil`` as PyG's ``topk(ratio)`` upstream: ``b = 0`` exactly when
  the fraction is 0.
* ``e`` is our 0-based epoch, so the first epoch (``e = 0``) masks uniformly and the last one
  uses ``sqrt((E - 1) / E)``. Upstream counts epochs from 1 (its first epoch already boosts
  ``ceil(rate * sqrt(1 / E) * n)`` atoms and its last one the full ``rate``): our schedule is
  upstream's one epoch later. ``E`` is the run's ``epochs``; extending a run with ``--resume``
  and more epochs stretches the remaining schedule.
* ``curriculum=False`` boosts ``ceil(rate * n)`` atoms from the first epoch on.
* Ties between equal scores (symmetric atoms: the carbons of benzene have one PageRank) are
  broken at random with a second uniform draw, so no atom index is preferred; PageRank values are
  rounded to 1e-9 before ranking so that floating-point noise does not decide. Random keys are
  drawn first (``n`` values), the tie-break keys second (``n`` values).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from graphmvp.molgraph import MASK_ATOM_TYPE, MolGraph
from graphmvp.registry import Registry

PAGERANK_DAMPING = 0.85
PAGERANK_TOLERANCE = 1e-6
PAGERANK_MAX_ITER = 100
#: graphs up to this many atoms use dense power steps with repeated squaring
DENSE_PAGERANK_MAX_ATOMS = 256


# -- how many atoms ---------------------------------------------------------------------------
def hu_count(num_atoms: int, rate: float) -> int:
    """``min(n, int(rate * n + 1))``: Hu et al.'s AttrMask count (at least one atom)."""
    return min(int(num_atoms), int(rate * num_atoms + 1))


def ceil_count(num_atoms: int, rate: float) -> int:
    """``min(n, max(1, ceil(rate * n)))``: PyG ``topk``'s count, as in StructMAE."""
    if num_atoms <= 0:
        return 0
    return min(int(num_atoms), max(1, math.ceil(rate * num_atoms - 1e-9)))


#: count rule name -> ``f(num_atoms, rate) -> atoms to mask``
MASK_COUNTS = {"hu": hu_count, "ceil": ceil_count}
#: the value of ``count`` that picks each distribution's own rule
AUTO_COUNT = "auto"


def curriculum_fraction(rate: float, epoch: int, total_epochs: int, curriculum: bool = True) -> float:
    """The fraction of atoms whose key is boosted: ``rate * sqrt(epoch / E)`` (0-based epoch,
    capped at ``rate``), or ``rate`` without curriculum."""
    if not curriculum:
        return float(rate)
    if total_epochs < 1:
        raise ValueError(f"total_epochs={total_epochs!r}: must be >= 1")
    if epoch < 0:
        raise ValueError(f"epoch={epoch!r}: must be >= 0")
    return float(rate) * math.sqrt(min(1.0, epoch / total_epochs))


def boost_count(num_atoms: int, fraction: float) -> int:
    """``ceil(fraction * n)`` (0 for fraction 0), at most n."""
    if fraction <= 0:
        return 0
    return min(int(num_atoms), math.ceil(fraction * num_atoms - 1e-9))


# -- PageRank ---------------------------------------------------------------------------------
def pagerank(
    num_atoms: int,
    edge_index: np.ndarray,
    damping: float = PAGERANK_DAMPING,
    tol: float = PAGERANK_TOLERANCE,
    max_iter: int = PAGERANK_MAX_ITER,
) -> np.ndarray:
    """PageRank of every atom by power iteration (networkx' ``pagerank`` model, numpy only).

    ``edge_index`` [2, E] holds both directions of every bond; a walker at atom i moves to each
    neighbour with probability ``1 / deg(i)``; with probability ``1 - damping`` (and always from
    an atom without bonds) it jumps to a uniformly chosen atom. With ``G`` that column-stochastic
    "Google" matrix, PageRank is the limit of ``x_t = G^t x_0``, ``x_0 = 1/n``::

        x_{t+1}[j] = d * sum_{i -> j} x_t[i] / deg(i) + (d * sum_{deg(i)=0} x_t[i] + 1 - d) / n

    Molecules are small, so G is dense and the power steps are taken by repeated squaring:
    round k applies ``G^(2^k)`` (t = 1, 3, 7, 15, ...), stopping when the L1 change of a round is
    below ``n * tol`` (networkx' tolerance rule) or once t >= ``max_iter`` (t = 127 for 100; with
    d = 0.85 the error is then below 1e-8). About 50 us for 40 atoms, 20x faster than one sparse
    step at a time; graphs above :data:`DENSE_PAGERANK_MAX_ATOMS` atoms take sparse steps
    (``max_iter`` of them, same stopping rule). Returns float64 [n] summing to 1 (empty for n = 0).
    """
    n = int(num_atoms)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping={damping!r}: must be in [0, 1)")
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    src, dst = edge_index[0], edge_index[1]
    degree = np.bincount(src, minlength=n).astype(np.float64)
    dangling = degree == 0
    x = np.full(n, 1.0 / n)
    if n <= DENSE_PAGERANK_MAX_ATOMS:
        google = np.zeros((n, n))
        np.add.at(google, (dst, src), damping / degree[src])
        google[:, dangling] = damping / n
        google += (1.0 - damping) / n
        steps = 0
        while True:
            previous = x
            x = google @ previous
            steps = 2 * steps + 1
            if np.abs(x - previous).sum() < n * tol or steps >= max_iter:
                return x
            google = google @ google
    inv_degree = np.divide(1.0, degree, out=np.zeros(n), where=~dangling)
    for _ in range(int(max_iter)):
        previous = x
        x = damping * np.bincount(dst, weights=(previous * inv_degree)[src], minlength=n)
        x += (damping * previous[dangling].sum() + 1.0 - damping) / n
        if np.abs(x - previous).sum() < n * tol:
            break
    return x


# -- the structure-guided rule on concatenated graphs -------------------------------------------
def _segment_ranks(segment: np.ndarray, keys: tuple[np.ndarray, ...], starts: np.ndarray) -> np.ndarray:
    """The rank (0 = first) of every node within its segment when sorted by ``keys`` (last key
    primary, as ``np.lexsort``; the segment id is the most significant key)."""
    order = np.lexsort(keys + (segment,))
    ranks = np.empty(segment.shape[0], dtype=np.int64)
    ranks[order] = np.arange(segment.shape[0], dtype=np.int64) - starts[segment[order]]
    return ranks


def structure_guided_mask(
    scores: np.ndarray,
    noise: np.ndarray,
    tiebreak: np.ndarray,
    num_nodes: np.ndarray,
    num_boost: np.ndarray,
    num_mask: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """StructMAE's masking rule on B graphs at once (their nodes concatenated, N in total).

    Args:
        scores: float [N], structural importance (PageRank or the learned score).
        noise: float [N], the random keys ``u ~ U[0, 1)``.
        tiebreak: float [N], random order among equal scores.
        num_nodes, num_boost, num_mask: int [B]: nodes, boosted nodes and masked nodes per graph.
        alpha: the boost added to the keys of the ``num_boost`` highest-scored nodes of a graph.

    Returns:
        sorted int64 [sum(num_mask)]: the masked nodes (ids into the concatenation).
    """
    num_nodes = np.asarray(num_nodes, dtype=np.int64)
    n_total = int(num_nodes.sum())
    for name, a in (("scores", scores), ("noise", noise), ("tiebreak", tiebreak)):
        if np.shape(a) != (n_total,):
            raise ValueError(f"{name} must have shape [{n_total}] (the sum of num_nodes), got {np.shape(a)}")
    segment = np.repeat(np.arange(num_nodes.shape[0], dtype=np.int64), num_nodes)
    starts = np.zeros(num_nodes.shape[0], dtype=np.int64)
    np.cumsum(num_nodes[:-1], out=starts[1:])
    score_rank = _segment_ranks(segment, (np.asarray(tiebreak), -np.asarray(scores, dtype=np.float64)), starts)
    boosted = score_rank < np.asarray(num_boost, dtype=np.int64)[segment]
    key = np.asarray(noise, dtype=np.float64) + float(alpha) * boosted
    key_rank = _segment_ranks(segment, (-key,), starts)
    return np.flatnonzero(key_rank < np.asarray(num_mask, dtype=np.int64)[segment]).astype(np.int64)


# -- the distributions ------------------------------------------------------------------------
class MaskDistribution:
    """Base of the masking distributions (see the module docstring).

    Args:
        rate: fraction of atoms to mask, in (0, 1].
        count: "auto" (the distribution's own rule), or a name in :data:`MASK_COUNTS`.
    """

    name = ""
    #: the count rule of ``count="auto"``
    default_count = "hu"
    #: True if ``sample`` needs ``scores`` from a learned scorer
    needs_scorer = False

    def __init__(self, rate: float, count: str = AUTO_COUNT):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
            raise ValueError(f"mask rate={rate!r}: must be in (0, 1]")
        rule = self.default_count if count == AUTO_COUNT else count
        if rule not in MASK_COUNTS:
            raise ValueError(f"mask count={count!r}: allowed: {AUTO_COUNT}, {', '.join(MASK_COUNTS)}")
        self.rate = float(rate)
        self.count_rule = rule

    def count(self, num_atoms: int) -> int:
        """How many of ``num_atoms`` atoms are masked."""
        return MASK_COUNTS[self.count_rule](int(num_atoms), self.rate)

    def sample(self, graph: MolGraph, rng: np.random.Generator, epoch: int = 0,
               scores: Optional[np.ndarray] = None) -> np.ndarray:
        """Sorted int64 ids of the atoms of ``graph`` to mask (all draws from ``rng``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, count={self.count_rule!r})"


MASK_DISTRIBUTIONS: Registry = Registry("masking distribution")


@MASK_DISTRIBUTIONS.register("uniform")
class UniformMasking(MaskDistribution):
    """Uniform masking without replacement (Hu et al. 2020): the AttrMask draws."""

    name = "uniform"
    default_count = "hu"

    def __init__(self, rate: float, count: str = AUTO_COUNT):
        super().__init__(rate, count)

    def sample(self, graph, rng, epoch=0, scores=None):
        n = graph.num_atoms
        return np.sort(rng.choice(n, size=self.count(n), replace=False)).astype(np.int64)


class _StructureGuided(MaskDistribution):
    """The StructMAE rule: boost the keys of the top-scored atoms, mask the largest keys."""

    default_count = "ceil"
    default_alpha = 0.0

    def __init__(self, rate: float, count: str = AUTO_COUNT, alpha: Optional[float] = None,
                 curriculum: bool = True, total_epochs: int = 100):
        super().__init__(rate, count)
        alpha = self.default_alpha if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"{self.name} alpha={alpha!r}: must be a number >= 0")
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs={total_epochs!r}: must be an integer >= 1")
        self.alpha = float(alpha)
        self.curriculum = bool(curriculum)
        self.total_epochs = int(total_epochs)

    def boost(self, num_atoms: int, epoch: int) -> int:
        """How many top-scored atoms get ``+alpha`` in ``epoch``."""
        return boost_count(num_atoms, curriculum_fraction(self.rate, epoch, self.total_epochs, self.curriculum))

    def draw(self, num_atoms: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The random keys and tie-break keys of one graph (float64 [n] each, in this order)."""
        return rng.random(num_atoms), rng.random(num_atoms)

    def select(self, scores: np.ndarray, noise: np.ndarray, tiebreak: np.ndarray, epoch: int) -> np.ndarray:
        """The masked atoms of one graph from its scores and drawn keys."""
        n = int(np.shape(scores)[0])
        return structure_guided_mask(scores, noise, tiebreak, np.array([n]), np.array([self.boost(n, epoch)]),
                                     np.array([self.count(n)]), self.alpha)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rate={self.rate}, count={self.count_rule!r}, alpha={self.alpha}, "
                f"curriculum={self.curriculum}, total_epochs={self.total_epochs})")


@MASK_DISTRIBUTIONS.register("pagerank")
class PageRankMasking(_StructureGuided):
    """StructMAE-P: PageRank-guided masking with the easy-to-hard curriculum (alpha 0.25)."""

    name = "pagerank"
    default_alpha = 0.25

    def __init__(self, rate: float, count: str = AUTO_COUNT, alpha: Optional[float] = None,
                 curriculum: bool = True, total_epochs: int = 100, damping: float = PAGERANK_DAMPING):
        super().__init__(rate, count, alpha, curriculum, total_epochs)
        if not 0.0 <= damping < 1.0:
            raise ValueError(f"pagerank damping={damping!r}: must be in [0, 1)")
        self.damping = float(damping)

    def scores(self, graph: MolGraph) -> np.ndarray:
        """PageRank of the atoms of ``graph``, rounded to 1e-9 (float64 [n])."""
        return np.round(pagerank(graph.num_atoms, graph.edge_index, self.damping), 9)

    def sample(self, graph, rng, epoch=0, scores=None):
        noise, tiebreak = self.draw(graph.num_atoms, rng)
        return self.select(self.scores(graph) if scores is None else scores, noise, tiebreak, epoch)


@MASK_DISTRIBUTIONS.register("learnable")
class LearnableMasking(_StructureGuided):
    """StructMAE-L: the structure-guided rule on a learned scorer's scores (alpha 0.5).

    ``sample`` needs ``scores`` (float [n], e.g. from
    :func:`graphmvp.models.mask_scorer.score_mol_graphs`); in training the selection happens in
    the training step from the keys of :meth:`draw` (see the module docstring).
    """

    name = "learnable"
    default_alpha = 0.5
    needs_scorer = True

    def sample(self, graph, rng, epoch=0, scores=None):
        if scores is None:
            raise ValueError("learnable masking needs the scorer's scores: sample(graph, rng, epoch, scores=...)")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (graph.num_atoms,):
            raise ValueError(f"scores must have shape [{graph.num_atoms}], got {scores.shape}")
        noise, tiebreak = self.draw(graph.num_atoms, rng)
        return self.select(scores, noise, tiebreak, epoch)


def build_mask_distribution(name: str, rate: float, **options) -> MaskDistribution:
    """The distribution ``name`` with ``rate`` and the ``options`` its constructor takes (others
    are ignored, so one option dict serves every distribution): ``count``, ``alpha``,
    ``curriculum``, ``total_epochs``, ``damping``."""
    import inspect

    cls = MASK_DISTRIBUTIONS.get(name)
    accepted = inspect.signature(cls).parameters
    return cls(rate, **{k: v for k, v in options.items() if k in accepted})


def mask_atoms(graph: MolGraph, index: np.ndarray) -> np.ndarray:
    """A copy of ``graph.atom_features`` with the atoms ``index`` set to (119 = mask token,
    chirality 0)."""
    atom = graph.atom_features.copy()
    atom[index, 0] = MASK_ATOM_TYPE
    atom[index, 1] = 0
    return atom


__all__ = [
    "AUTO_COUNT",
    "DENSE_PAGERANK_MAX_ATOMS",
    "LearnableMasking",
    "MASK_COUNTS",
    "MASK_DISTRIBUTIONS",
    "MaskDistribution",
    "PAGERANK_DAMPING",
    "PageRankMasking",
    "UniformMasking",
    "boost_count",
    "build_mask_distribution",
    "ceil_count",
    "curriculum_fraction",
    "hu_count",
    "mask_atoms",
    "pagerank",
    "structure_guided_mask",
]
