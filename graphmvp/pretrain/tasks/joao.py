"""JOAO (You et al., "Graph Contrastive Learning Automated", ICML 2021) as a 2D task: GraphCL with a
learnt distribution over augmentation pairs.

Per sample the transform (:class:`JOAOViews`) draws one of the K x K pairs of its K
augmentations (default the five of :data:`JOAO_AUGMENTATIONS` at strength 0.2: 25 pairs) from the
current distribution ``p`` and makes the two views; training is GraphCL's (projection head,
NT-Xent, :class:`graphmvp.objectives.graphcl.JOAO`). ``p`` lives in the objective as the buffer
``pair_probs`` (so ``last.pt`` holds it and ``--resume`` restores it).

Hooks
    ``begin_epoch``: hands the objective's ``p`` to the dataset's transform (after a resume this
    is the restored ``p``). Must run before the epoch's DataLoader iterator is created, so that
    worker processes get it.
    ``end_epoch``: estimates every pair's loss on a fixed evaluation subset and updates ``p`` by
    one projected gradient-ascent step (:func:`graphmvp.objectives.graphcl.joao_update`):

        p <- Proj_simplex(p + beta * (L - gamma * (p - 1/K^2)))

    ``L_k`` = the NT-Xent loss under pair k (mean over the subset's samples), gamma = ``gamma``
    (0.1), beta = ``step_size`` (1.0). Its result must reach ``last.pt``, i.e. the trainer must
    call it before saving the epoch's state.

Evaluation subset
    ``ceil(eval_fraction * S)`` (at least 2, at most S) of the S samples, drawn once without
    replacement from ``default_rng([seed, 0x4A0A0])`` (the dataset's seed): the same in every
    epoch, after a resume and on every rank. Each subset sample is the dataset's sample of the
    epoch (its subgraph mask), augmented under pair k with its own generator
    ``default_rng([seed, epoch, index, 0x4A0A0, k])``; batches of the run's batch size (a trailing
    single sample joins the previous batch). The model runs in training mode (batch statistics, as
    the loss being optimised) under ``no_grad``; every buffer (batch-norm running statistics) and
    the global torch RNG are restored afterwards, so the evaluation leaves no trace but ``p``.

Deviations (stated): JOAO estimates the losses on the first ~10% of batches of a shuffled
loader, we on a fixed random ~10% subset (reproducible across resumes and ranks); the simplex
projection is exact (sort-based) instead of a bisection to a tolerance. JOAOv2 (one projection
head per augmentation) is not implemented.

Preset ``joao``: the Hu et al. 2D-only protocol (batch 256, lr 1e-3, 100 epochs, 5 x 300 GIN),
gamma 0.1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from graphmvp.data.augment import AugmentedViews, ViewPair
from graphmvp.objectives.graphcl import JOAO, JOAO_AUGMENTATIONS
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import Task2D
from graphmvp.pretrain.tasks.graphcl import GraphCLOptions, check_positive_options, encode_views, run_views

NAME = "joao"

LOG = logging.getLogger("graphmvp.pretrain")

#: tag mixed into the seeds of JOAO's evaluation draws (subset and per-pair views)
EVAL_TAG = 0x4A0A0

@dataclass(frozen=True)
class JOAOOptions(GraphCLOptions):
    """JOAO's options and their defaults (You et al. 2021): GraphCL's, with JOAO's five
    augmentations, plus the update of the pair distribution and its evaluation subset."""

    augmentations: tuple[str, ...] = JOAO_AUGMENTATIONS
    gamma: float = 0.1
    step_size: float = 1.0
    eval_fraction: float = 0.1


class JOAOViews(AugmentedViews):
    """:class:`AugmentedViews` named ``"joao"`` plus what JOAO's epoch-end evaluation needs:
    ``eval_fraction`` (share of samples whose losses update ``p``, in (0, 1]) and
    ``eval_batch_size`` (the run's batch size: NT-Xent depends on the number of negatives)."""

    def __init__(self, augmentations: Sequence[str], ratio: float, eval_fraction: float = 0.1,
                 eval_batch_size: int = 256, probabilities: Optional[Sequence[float]] = None):
        super().__init__(NAME, augmentations, ratio, probabilities)
        if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 < eval_fraction <= 1:
            raise ValueError(f"JOAO eval_fraction={eval_fraction!r}: must be in (0, 1]")
        if int(eval_batch_size) < 2:
            raise ValueError(f"JOAO eval_batch_size={eval_batch_size!r}: must be >= 2")
        self.eval_fraction = float(eval_fraction)
        self.eval_batch_size = int(eval_batch_size)


def eval_subset(num_samples: int, seed: int, fraction: float) -> np.ndarray:
    """The sorted sample indices JOAO evaluates the pairs on (see the module docstring)."""
    if num_samples < 2:
        raise ValueError(f"JOAO's evaluation needs at least 2 samples, the dataset has {num_samples}")
    count = min(num_samples, max(2, math.ceil(fraction * num_samples)))
    rng = np.random.default_rng([int(seed), EVAL_TAG])
    return np.sort(rng.choice(num_samples, size=count, replace=False)).astype(np.int64)


def eval_batches(count: int, batch_size: int) -> list[range]:
    """Positions 0..count-1 cut into batches of ``batch_size``; a trailing single one joins the
    previous batch (batch norm and in-batch negatives need two)."""
    starts = list(range(0, count, batch_size))
    bounds = [(s, min(s + batch_size, count)) for s in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return [range(a, b) for a, b in bounds]


def joao_transform(dataset) -> JOAOViews:
    """The dataset's JOAO transform; ``ValueError`` if it has none."""
    for transform in getattr(dataset, "transforms", ()):
        if isinstance(transform, JOAOViews):
            return transform
    raise ValueError("the dataset has no JOAO transform: build it with the joao task's dataset options")


def pair_losses(model, objective, dataset, epoch: int) -> np.ndarray:
    """Each augmentation pair's mean NT-Xent loss [K * K] on the evaluation subset of ``epoch``,
    leaving no trace in the model or the global torch RNG (see the module docstring)."""
    transform = joao_transform(dataset)
    subset = eval_subset(len(dataset), dataset.seed, transform.eval_fraction)
    graphs = [dataset[int(i)].graph for i in subset]
    batches = eval_batches(len(graphs), transform.eval_batch_size)
    saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    was_training = model.training
    losses = np.zeros(transform.num_pairs)
    device = next(model.parameters()).device
    model.train()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for pair in range(transform.num_pairs):
                total = 0.0
                for positions in batches:
                    payloads = [
                        transform.views(graphs[p], np.random.default_rng([dataset.seed, epoch, int(subset[p]), EVAL_TAG, pair]), pair)
                        for p in positions
                    ]
                    views = ViewPair.collate(payloads)
                    views.first, views.second = views.first.to(device), views.second.to(device)
                    loss, _ = objective(*encode_views(model, views))
                    total += float(loss) * len(positions)
                losses[pair] = total / len(graphs)
    finally:
        buffers = dict(model.named_buffers())
        for name, value in saved.items():
            buffers[name].copy_(value)
        model.train(was_training)
    return losses


def _dataset_options(cfg, options: JOAOOptions) -> dict[str, Any]:
    check_positive_options(options, ("cl_temperature", "gamma", "step_size"))
    transform = JOAOViews(options.augmentations, options.aug_ratio, options.eval_fraction, cfg.batch_size)
    return {"transforms": [transform]}


def _objective_args(cfg, options: JOAOOptions) -> dict[str, Any]:
    """GraphCL's arguments plus the augmentations (their count sizes ``pair_probs``) and the
    update's gamma and step size; ``aug_ratio`` and ``eval_fraction`` are the transform's."""
    return {"emb_dim": cfg.emb_dim, "cl_temperature": options.cl_temperature, "symmetric": options.symmetric,
            "positive_in_denominator": options.positive_in_denominator, "augmentations": options.augmentations,
            "gamma": options.gamma, "step_size": options.step_size}


def _begin_epoch(model, objective, dataset, epoch: int) -> None:
    joao_transform(dataset).set_probabilities(objective.pair_probs.detach().cpu().numpy())


def _end_epoch(model, objective, dataset, epoch: int) -> None:
    transform = joao_transform(dataset)
    losses = pair_losses(model, objective, dataset, epoch)
    probs = objective.update_pair_probs(losses)
    transform.set_probabilities(probs)
    top = np.argsort(-probs)[:3]
    LOG.info("JOAO after epoch %d: pair losses %.4g..%.4g; p max %.3f min %.3f; top pairs %s", epoch + 1,
             losses.min(), losses.max(), probs.max(), probs.min(),
             ", ".join(f"{'/'.join(transform.pair_names(k))}={probs[k]:.3f}" for k in top))


METHOD = Task2D(
    name=NAME,
    objective=JOAO,
    objective_args=_objective_args,
    options=JOAOOptions,
    dataset_options=_dataset_options,
    run=run_views(NAME),
    begin_epoch=_begin_epoch,
    end_epoch=_end_epoch,
    # JOAO (You et al. 2021), transfer learning on molecules: Hu et al.'s setting (batch 256, lr 1e-3,
    # 5 x 300 GIN), 5 augmentations at 0.2, gamma 0.1
    presets={NAME: {**HU_BASELINE, "loss": (NAME,)}},
    describe="GraphCL with augmentation pairs sampled by a min-max learnt distribution (You et al. 2021)",
    in_batch=True,
    global_loss=True,
)
METHODS = (METHOD,)

__all__ = ["JOAOOptions", "JOAOViews", "METHOD", "METHODS", "eval_batches", "eval_subset", "joao_transform",
           "pair_losses"]
