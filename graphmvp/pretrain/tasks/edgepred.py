"""EdgePred (Hu et al. 2020) as a 2D task: per molecule, its bonds as positives and as many
non-bonded atom pairs as negatives (:class:`EdgePredSampler`), scored by the dot product of the
2D encoder's node representations of the batch's 2D graph (:mod:`graphmvp.objectives.edgepred`).

Preset ``edgepred``: Hu et al.'s 2D-only protocol (:data:`HU_BASELINE`: whole molecules, batch
256, 100 epochs, Adam lr 1e-3, dropout 0, 5 x 300 GIN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from graphmvp.data.augment import bonded_pairs, non_bonded_pairs
from graphmvp.data.collate import BatchLayout
from graphmvp.molgraph import MolGraph
from graphmvp.objectives.edgepred import EdgePrediction
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import NoOptions, Task2D

NAME = "edgepred"


@dataclass
class EdgePredBatch:
    """Atom pairs of a batch, as node ids of the batched 2D graph: ``positive`` int64 [2, P]
    (every bond once), ``negative`` int64 [2, Q] (non-bonded pairs)."""

    positive: torch.Tensor
    negative: torch.Tensor


@dataclass
class EdgePredPairs:
    """Atom pairs of one molecule (molecule-local ids): ``positive`` int64 [2, b] (its bonds,
    ``i < j``, sorted), ``negative`` int64 [2, min(b, c)] (non-bonded pairs, ``i < j``, sorted)."""

    positive: np.ndarray
    negative: np.ndarray

    @staticmethod
    def collate(payloads: Sequence["EdgePredPairs"], layout: Optional[BatchLayout]) -> EdgePredBatch:
        """Concatenate the pairs, shifting each molecule's ids by its first node in the batch."""
        def cat(parts: list[np.ndarray]) -> torch.Tensor:
            shifted = [p + int(offset) for p, offset in zip(parts, layout.node_offset)]
            return torch.from_numpy(np.concatenate(shifted, axis=1).astype(np.int64, copy=False))

        return EdgePredBatch(cat([p.positive for p in payloads]), cat([p.negative for p in payloads]))


class EdgePredSampler:
    """Sample transform: a molecule's bonds and an equal number of non-bonded atom pairs.

    Negatives: ``min(b, c)`` of the ``c`` non-bonded pairs (``i < j``), drawn uniformly without
    replacement with one ``rng.choice(c, min(b, c), replace=False)`` (nothing is drawn for a
    molecule without bonds or without non-bonded pairs), then sorted.
    """

    name = NAME

    def __call__(self, graph: MolGraph, rng: np.random.Generator, info: Any = None) -> EdgePredPairs:
        positive = bonded_pairs(graph)
        candidates = non_bonded_pairs(graph)
        count = min(positive.shape[1], candidates.shape[1])
        if count == 0:
            return EdgePredPairs(positive, np.zeros((2, 0), dtype=np.int64))
        chosen = np.sort(rng.choice(candidates.shape[1], size=count, replace=False))
        return EdgePredPairs(positive, candidates[:, chosen])


def _dataset_options(cfg, options: NoOptions) -> dict[str, Any]:
    return {"transforms": [EdgePredSampler()]}


def _objective_args(cfg, options: NoOptions) -> dict[str, Any]:
    return {}  # no parameters: dot products of the encoder's node representations


def _run(model, objective, batch):
    pairs: EdgePredBatch = batch.extras[NAME]
    if pairs.positive.shape[1] == 0:  # only single atoms in this batch
        return None, {}
    node_reps = model.encoder_2d(batch.graph_2d)
    return objective(node_reps, pairs.positive, pairs.negative)


METHOD = Task2D(
    name=NAME,
    objective=EdgePrediction,
    objective_args=_objective_args,
    dataset_options=_dataset_options,
    run=_run,
    # Hu et al. 2020 (pretrain-gnns): batch 256, 100 epochs, lr 1e-3, whole molecules
    presets={NAME: {**HU_BASELINE, "loss": (NAME,)}},
    describe="bonded vs. non-bonded atom pairs by dot product (Hu et al. 2020)",
)
METHODS = (METHOD,)

__all__ = ["EdgePredBatch", "EdgePredPairs", "EdgePredSampler", "METHOD", "METHODS"]
