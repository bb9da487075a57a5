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

from graphmvp.pretrain.presets import HU_BASELINE, register_preset
from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D


def _options(cfg) -> dict[str, Any]:
    return {}


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


TASKS_2D.register("infomax")(
    # two means over the batch's atoms (positive and negative pairs); negatives: the next molecule's summary
    Task2D(_options, _run, describe="node vs. molecule-summary discrimination, DGI (Hu et al. 2020)",
           item_count=lambda batch: int(batch.graph_2d.num_nodes()), in_batch=True)
)

# Hu et al. 2020 (pretrain-gnns): batch 256, 100 epochs, lr 1e-3, whole molecules
register_preset("infomax", {**HU_BASELINE, "loss": ("infomax",)})
