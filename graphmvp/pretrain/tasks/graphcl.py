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

from typing import Any

import torch

from graphmvp.data.augment import AugmentedViews, ViewPairBatch
from graphmvp.distributed import gather_pieces
from graphmvp.models import graph_readout
from graphmvp.objectives.graphcl import GRAPHCL_AUGMENTATIONS
from graphmvp.pretrain.presets import HU_BASELINE, register_preset
from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D, task_options

#: GraphCL's options and their defaults (You et al. 2020)
GRAPHCL_OPTIONS: dict[str, Any] = {
    "aug_ratio": 0.2,
    "augmentations": GRAPHCL_AUGMENTATIONS,
    "cl_temperature": 0.1,
    "symmetric": False,
    "positive_in_denominator": False,
}


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


def check_positive_options(opts: dict[str, Any], names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value in ``opts`` is not > 0
    (called when the dataset is built, i.e. before any model or step)."""
    for name in names:
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"--opt {name}={value!r}: must be a number > 0")


def _options(cfg) -> dict[str, Any]:
    opts = task_options(cfg)
    check_positive_options(opts, ("cl_temperature",))
    return {"transforms": [AugmentedViews("graphcl", opts["augmentations"], opts["aug_ratio"])]}


TASKS_2D.register("graphcl")(
    Task2D(_options, run_views("graphcl"), options=GRAPHCL_OPTIONS,
           describe="two augmented views, projection head, NT-Xent (You et al. 2020)", in_batch=True,
           global_loss=True)
)

# GraphCL (You et al. 2020), transfer learning on molecules: Hu et al.'s setting (batch 256,
# lr 1e-3, 5 x 300 GIN); node drop / subgraph at 0.2, T = 0.1
register_preset("graphcl", {**HU_BASELINE, "loss": ("graphcl",)})
