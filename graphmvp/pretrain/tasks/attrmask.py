"""AttrMask (Hu et al. 2020) as a 2D task: a second encoder pass over the batch's 2D graph with
masked atom features (``batch.attrmask_atom``: the same subgraph-masked graph as the main pass),
then the AttrMask head on the masked atoms."""

from __future__ import annotations

from typing import Any

from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D


def _options(cfg) -> dict[str, Any]:
    return {"attrmask": True, "attrmask_rate": cfg.attrmask_rate}


def _run(model, objective, batch):
    if batch.attrmask_atom is None:
        raise ValueError("the batch has no AttrMask inputs: build the dataset with attrmask=True")
    node_reps = model.encoder_2d(batch.graph_2d, atom=batch.attrmask_atom, bond=batch.attrmask_bond)
    return objective(node_reps, batch.attrmask_index, batch.attrmask_label)


TASKS_2D.register("attrmask")(Task2D(_options, _run, describe="masked atom-type prediction (Hu et al. 2020)"))
