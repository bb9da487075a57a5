"""One rank's training step on its piece of a global batch (what DDP wraps), and what a step reports.

With one process the trainer calls the model's own forward; under ``torchrun`` every rank runs
:class:`ShardedStep`, whose averaged gradient equals the single-process gradient of the global
batch (see its docstring for how each kind of term is shared out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from graphmvp.data.collate import PretrainBatch
from graphmvp.distributed import DistContext, all_gather_rows, global_batch, rank_local_rng
from graphmvp.pretrain.model import KIND_CALLERS, GraphMVPModel
from graphmvp.pretrain.tasks import TASKS_2D

#: objective kinds computed from the pooled representations of both views: under DDP they are
#: gathered over ranks and these terms are computed on the global batch, on every rank
PAIR_KINDS = ("contrastive", "generative")


def local_term_count(name: str) -> Callable[[PretrainBatch], int]:
    """How many items the 2D task ``name``'s loss is a mean over in a batch
    (:attr:`graphmvp.pretrain.tasks.Task2D.item_count`; the sample count when it has none).
    Under DDP rank ``r`` back-propagates ``W * n_r / N * loss_r`` (``N`` the global count)."""
    task = TASKS_2D.get(name)
    return task.item_count if task.item_count is not None else _samples


def _samples(batch: PretrainBatch) -> int:
    return batch.batch_size


@dataclass
class StepValues:
    """One optimiser step's losses as a single process computes them on the global batch.

    ``loss``: the tensor this process back-propagates (the global loss for one process; under
    DDP the rank's share, see :class:`ShardedStep`). ``total`` / ``terms`` / ``metrics``: python
    numbers of the global batch (``terms`` unweighted, ``total`` their weighted sum).
    ``samples``: samples in the global batch.
    """

    loss: Tensor
    total: float
    terms: dict[str, float]
    metrics: dict[str, float]
    samples: int


def global_task(name: str) -> bool:
    """True for a 2D task whose loss is that of the gathered global batch (``Task2D.global_loss``)."""
    return name in TASKS_2D and TASKS_2D.get(name).global_loss


class ShardedStep(nn.Module):
    """The GraphMVP step of one rank on its piece of the global batch (what DDP wraps).

    ``forward(batch, sizes, counts, step) -> (loss, report)``, with ``batch`` this rank's piece,
    ``sizes`` the piece sizes of every rank, ``counts`` 2D-task name -> (this rank's items, global
    items) and ``step`` the global step (seeds the rank-local random stream):

    1. both encoders on the local piece (rank-local random stream: dropout);
    2. pooled 2D and 3D representations gathered in rank order (:func:`all_gather_rows`, one
       collective): the global batch's [B, D], identical on every rank;
    3. contrastive and generative terms on the gathered batch on every rank: in-batch negatives
       are the global batch's cyclic shifts and VRR's noise comes from the global torch stream,
       which every rank holds in the same state - the single-process values; each rank
       back-propagates them whole (the gather's backward sums the ranks' gradients);
    4. the 2D task on the local piece, back-propagated as ``W * n_r / N * loss_r``; its reported
       value and metrics are the item-weighted means over ranks (one all-reduce). A task with
       ``global_loss`` (GraphCL, JOAO) instead gathers its per-sample rows
       (:func:`~graphmvp.distributed.gather_pieces` inside
       :func:`~graphmvp.distributed.global_batch`) and is treated as in 3.

    With DDP's gradient averaging the update equals the single-process update (batch norm of
    the encoders synchronised, :class:`~graphmvp.distributed.SyncBatchNorm`). Deviation:
    the other tasks that compare samples (ContextPred, Infomax, GraphLoG) compare within each
    rank's piece; their losses are still weighted by the global item counts.
    ``report``: ``{"total": float, "terms": {name: float}, "metrics": {name: float}}``.
    """

    def __init__(self, model: GraphMVPModel, ctx: DistContext, seed: int):
        super().__init__()
        self.model = model
        self.ctx = ctx
        self.seed = int(seed)

    def _gather(self, z2d: Optional[Tensor], z3d: Optional[Tensor], sizes: Sequence[int]):
        if z2d is not None and z3d is not None:
            both = all_gather_rows(torch.cat([z2d, z3d], dim=1), sizes)
            return both[:, : z2d.shape[1]], both[:, z2d.shape[1] :]
        return (None if z2d is None else all_gather_rows(z2d, sizes)), (None if z3d is None else all_gather_rows(z3d, sizes))

    def forward(self, batch: PretrainBatch, sizes: Sequence[int], counts: dict[str, tuple[int, int]], step: int):
        model, ctx = self.model, self.ctx
        with rank_local_rng(ctx, self.seed, step, 0):
            z2d = model.encode_2d(batch)
            z3d = model.encode_3d(batch)
        z2d, z3d = self._gather(z2d, z3d, sizes)
        loss: Optional[Tensor] = None
        terms: dict[str, float] = {}
        metrics: dict[str, float] = {}
        local: list[tuple[str, Tensor, int, int, dict[str, float]]] = []
        for kind, objective in model.objectives.items():
            name = model.names[kind]
            if kind in PAIR_KINDS or global_task(name):
                if kind in PAIR_KINDS:  # VRR's noise: the shared stream, the same on every rank
                    value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                else:  # encodes this rank's piece (dropout: rank-local), compares the gathered rows
                    with global_batch(sizes), rank_local_rng(ctx, self.seed, step, 1):
                        value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                metrics.update(parts)
                if value is None:
                    continue
                terms[name] = float(value.detach())
                share = value
            else:
                mine, total = counts[name]
                if total == 0:  # no rank has an item for this term
                    continue
                with rank_local_rng(ctx, self.seed, step, 1):
                    value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                local.append((name, value.detach(), mine, total, parts))
                share = value * (ctx.world_size * mine / total)
            weighted = model.weights[kind] * share
            loss = weighted if loss is None else loss + weighted
        if local:  # item-weighted sums over ranks: [n_r * loss_r, n_r * metric_r ...] per term
            keys = [(name, sorted(parts)) for name, _, _, _, parts in local]
            vector = []
            for name, value, mine, total, parts in local:
                vector.append(mine * float(value))
                vector.extend(mine * float(parts[k]) for k in sorted(parts))
            sums = iter(ctx.sum(vector))
            for (name, metric_keys), (_, _, _, total, _) in zip(keys, local):
                terms[name] = float(next(sums)) / total
                for k in metric_keys:
                    metrics[k] = float(next(sums)) / total
        kind_of = {n: k for k, n in model.names.items()}
        report = {"total": sum(model.weights[kind_of[n]] * v for n, v in terms.items()), "terms": terms, "metrics": metrics}
        return loss, report


__all__ = ["PAIR_KINDS", "ShardedStep", "StepValues", "global_task", "local_term_count"]
