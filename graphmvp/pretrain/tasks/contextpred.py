"""ContextPred (Hu et al. 2020) as a 2D task: the main encoder encodes the substructure graphs
(``batch.cp_substruct``), the objective's own context GIN the context graphs. A batch without any
context pair (only tiny molecules) has no ContextPred term.

The radii come from the GIN depth (:attr:`graphmvp.pretrain.config.PretrainConfig.contextpred_radii`:
k = num_layers, r1 = k - 1, r2 = r1 + 3); the negatives are ``neg_samples`` cyclic shifts. No
task options.

Preset ``contextpred``: Hu et al.'s 2D-only protocol (:data:`HU_BASELINE`).
"""

from __future__ import annotations

from typing import Any

from graphmvp.objectives.contextpred import ContextPrediction
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import NoOptions, Task2D

NAME = "contextpred"


def _dataset_options(cfg, options: NoOptions) -> dict[str, Any]:
    k, r1, r2 = cfg.contextpred_radii
    return {"contextpred": True, "contextpred_k": k, "contextpred_r1": r1, "contextpred_r2": r2}


def _objective_args(cfg, options: NoOptions) -> dict[str, Any]:
    """The context GIN spans the ring r1..r2 (r2 - r1 layers), as wide as the main encoder."""
    k, r1, r2 = cfg.contextpred_radii
    return {"emb_dim": cfg.emb_dim, "context_layers": r2 - r1, "dropout": cfg.dropout, "num_negatives": cfg.neg_samples}


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


METHOD = Task2D(
    name=NAME,
    objective=ContextPrediction,
    objective_args=_objective_args,
    dataset_options=_dataset_options,
    run=_run,
    # Hu et al. 2020 (pretrain-gnns): batch 256, 100 epochs, lr 1e-3, whole molecules
    presets={NAME: {**HU_BASELINE, "loss": (NAME,)}},
    describe="context prediction (Hu et al. 2020)",
    item_count=_context_pairs,
    in_batch=True,  # negatives are cyclic shifts among the batch's context pairs
)
METHODS = (METHOD,)

__all__ = ["METHOD", "METHODS"]
