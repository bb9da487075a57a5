"""ContextPred (Hu et al. 2020) as a 2D task: the main encoder encodes the substructure graphs
(``batch.cp_substruct``), the objective's own context GIN the context graphs. A batch without any
context pair (only tiny molecules) has no ContextPred term."""

from __future__ import annotations

from typing import Any

from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D


def _options(cfg) -> dict[str, Any]:
    k, r1, r2 = cfg.contextpred_radii
    return {"contextpred": True, "contextpred_k": k, "contextpred_r1": r1, "contextpred_r2": r2}


def _run(model, objective, batch):
    if batch.cp_center is None:
        raise ValueError("the batch has no ContextPred inputs: build the dataset with contextpred=True")
    if batch.cp_center.numel() == 0:
        return None, {}
    substruct_reps = model.encoder_2d(batch.cp_substruct)
    return objective(substruct_reps, batch.cp_center, batch.cp_context, batch.cp_overlap_index, batch.cp_overlap_segment)


def _context_pairs(batch) -> int:
    """The loss is a mean over the samples that have a context pair."""
    return int(batch.cp_center.numel())


# negatives are cyclic shifts among the batch's context pairs: in_batch
TASKS_2D.register("contextpred")(
    Task2D(_options, _run, describe="context prediction (Hu et al. 2020)", item_count=_context_pairs, in_batch=True)
)
