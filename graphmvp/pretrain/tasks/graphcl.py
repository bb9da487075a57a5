"""GraphCL (You et al., NeurIPS 2020) as a 2D task: two augmented views of every sample's 2D graph
(:class:`graphmvp.data.augment.AugmentedViews`: each view's augmentation drawn uniformly from
node drop and subgraph, strength 0.2), both encoded by the 2D encoder (two passes, so batch norm
sees each view's batch separately, as GraphCL's code), pooled with the run's readout, then
projection head + NT-Xent (:class:`graphmvp.objectives.graphcl.GraphCL`).

Options (``--opt NAME=VALUE``): ``aug_ratio`` (0.2), ``augmentations`` (node_drop, subgraph),
``cl_temperature`` (0.1), ``symmetric`` (false), ``positive_in_denominator`` (false).

Preset ``graphcl``: the 2D-only protocol of the Hu et al. baselines GraphCL's transfer-learning
experiments follow (:data:`HU_BASELINE`: whole molecules, batch 256, Adam lr 1e-3, dropout 0,
5 x 300 GIN, mean pooling), 100 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from graphmvp.data.augment import AugmentedViews, ViewPairBatch
from graphmvp.distributed import gather_pieces
from graphmvp.models import graph_readout
from graphmvp.objectives.graphcl import GRAPHCL_AUGMENTATIONS, GraphCL
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import Task2D

NAME = "graphcl"


@dataclass(frozen=True)
class GraphCLOptions:
    """GraphCL's options and their defaults (You et al. 2020)."""

    aug_ratio: float = 0.2
    augmentations: tuple[str, ...] = GRAPHCL_AUGMENTATIONS
    cl_temperature: float = 0.1
    symmetric: bool = False
    positive_in_denominator: bool = False


def encode_views(model, views: ViewPairBatch):
    """Pooled 2D representations ``(z1, z2)`` [B, D] of the two views (one encoder pass each)."""
    h1 = model.encoder_2d(views.first)
    h2 = model.encoder_2d(views.second)
    return graph_readout(views.first, h1, model.pooling), graph_readout(views.second, h2, model.pooling)


def run_views(name: str):
    """The ``run`` of a two-view task whose payload is ``batch.extras[name]``: NT-Xent over the
    global batch's views (under DDP the ranks' pooled views are gathered, ``global_loss``)."""

    def run(model, objective, batch):
        views: ViewPairBatch = batch.extras[name]
        z1, z2 = encode_views(model, views)
        both = gather_pieces(torch.cat([z1, z2], dim=1))  # one collective for both views
        if both.shape[0] < 2:  # no in-batch negative
            return None, {}
        return objective(both[:, : z1.shape[1]], both[:, z1.shape[1] :])

    return run


def check_positive_options(options: Any, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value in ``options`` (an options
    instance) is not > 0 (called when the dataset is built, i.e. before any model or step)."""
    for name in names:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"--opt {name}={value!r}: must be a number > 0")


def _dataset_options(cfg, options: GraphCLOptions) -> dict[str, Any]:
    check_positive_options(options, ("cl_temperature",))
    return {"transforms": [AugmentedViews(NAME, options.augmentations, options.aug_ratio)]}


def _objective_args(cfg, options: GraphCLOptions) -> dict[str, Any]:
    """The projection head's width and NT-Xent's settings (the augmentations are the dataset's)."""
    return {"emb_dim": cfg.emb_dim, "cl_temperature": options.cl_temperature, "symmetric": options.symmetric,
            "positive_in_denominator": options.positive_in_denominator}


METHOD = Task2D(
    name=NAME,
    objective=GraphCL,
    objective_args=_objective_args,
    options=GraphCLOptions,
    dataset_options=_dataset_options,
    run=run_views(NAME),
    # GraphCL (You et al. 2020), transfer learning on molecules: Hu et al.'s setting (batch 256,
    # lr 1e-3, 5 x 300 GIN); node drop / subgraph at 0.2, T = 0.1
    presets={NAME: {**HU_BASELINE, "loss": (NAME,)}},
    describe="two augmented views, projection head, NT-Xent (You et al. 2020)",
    in_batch=True,
    global_loss=True,
)
METHODS = (METHOD,)

__all__ = ["GraphCLOptions", "METHOD", "METHODS", "check_positive_options", "encode_views", "run_views"]
