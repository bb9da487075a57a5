"""Infomax (Deep Graph Infomax as in Hu et al. 2020; "InfoGraph" in GraphMVP's table) as a 2D
task: the 2D encoder's node representations of the batch's 2D graph are discriminated against
their own molecule's summary and the next molecule's (:mod:`graphmvp.objectives.infomax`). It
needs no per-sample inputs.

Preset ``infomax``: Hu et al.'s 2D-only protocol (:data:`HU_BASELINE`: whole molecules, batch
256, 100 epochs, Adam lr 1e-3, dropout 0, 5 x 300 GIN).
"""

from __future__ import annotations

from typing import Any

import torch

from graphmvp.objectives.infomax import Infomax
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import NoOptions, Task2D

NAME = "infomax"


def _dataset_options(cfg, options: NoOptions) -> dict[str, Any]:
    return {}  # the batch's 2D graph is all it needs


def _objective_args(cfg, options: NoOptions) -> dict[str, Any]:
    return {"emb_dim": cfg.emb_dim}


def node_graph_ids(graph) -> torch.Tensor:
    """int64 [N]: the molecule 0..B-1 of every node of a batched DGL graph."""
    counts = graph.batch_num_nodes()
    return torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)


def _run(model, objective, batch):
    graph = batch.graph_2d
    if graph.batch_size < 2:
        return None, {}
    node_reps = model.encoder_2d(graph)
    return objective(node_reps, node_graph_ids(graph).to(node_reps.device), graph.batch_size)


METHOD = Task2D(
    name=NAME,
    objective=Infomax,
    objective_args=_objective_args,
    dataset_options=_dataset_options,
    run=_run,
    # Hu et al. 2020 (pretrain-gnns): batch 256, 100 epochs, lr 1e-3, whole molecules
    presets={NAME: {**HU_BASELINE, "loss": (NAME,)}},
    describe="node vs. molecule-summary discrimination, DGI (Hu et al. 2020)",
    # two means over the batch's atoms (positive and negative pairs); negatives: the next molecule's summary
    item_count=lambda batch: int(batch.graph_2d.num_nodes()),
    in_batch=True,
)
METHODS = (METHOD,)

__all__ = ["METHOD", "METHODS", "node_graph_ids"]
