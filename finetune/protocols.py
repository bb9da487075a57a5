"""Fine-tuning protocols (named sets of defaults) and learning-rate schedules.

A protocol fills every option the user left unset (``None`` in
:class:`~graphmvp.finetune.config.FinetuneConfig`); options given explicitly always win. The resolved values
are what ``config.json`` records.

``paper``
    Upstream GraphMVP / Hu et al. fine-tuning, bit for bit what this package did before protocols
    existed (pinned by ``tests/test_finetune_paper_pin.py``): the task type's dropout, epochs, lr
    and batch size (:data:`graphmvp.finetune.tasks.TASK_TYPES`), raw regression targets, a linear head,
    a constant lr, no weight decay, no clipping, no early stopping. Use it to reproduce tables.
``default``
    For users (measurements in ``docs/benchmarks.md``, "Fine-tuning protocol"): batch 32 (enough
    steps per epoch on small sets: FreeSolv has 16 instead of 2), standardised regression
    targets, an MLP head, lr 1e-3 with a 2-epoch linear warm-up from lr/10 then exponential
    decay to lr/10 at the last epoch (chemprop's "noam"), at most 100 epochs with early stopping
    after 30 epochs without a better validation value (reported numbers are those of the best
    epoch, whose weights ``--save-model`` keeps); for regression, RDKit's 2D descriptors
    (``--extra-features rdkit2d``, standardised on the training split) beside the mean-pooled graph
    embedding: ahead of chemprop's defaults on FreeSolv, ESOL and the MoleculeACE sets measured,
    where the GIN alone trailed it (``docs/benchmarks.md``, "Side by side"). Without descriptors a
    mean hides the molecule's size, which solubility-like targets grow with (sum pooling is the
    better choice then: ``--extra-features none --pooling sum``); with them, sum pooling was
    worse and unstable. The downstream graphs are built
    as the encoder's pretraining graphs were (``hydrogens="pretrained"``: explicit hydrogens for
    the released checkpoints, none without pretraining): fed hydrogen-free graphs, a checkpoint
    pretrained with hydrogens lost all its benefit on FreeSolv (``docs/benchmarks.md``, "Side by
    side"). DTA tasks keep the paper protocol.

Schedules (:data:`SCHEDULES`): ``constant`` (no scheduler at all), ``noam`` (linear warm-up from
``lr/10`` to ``lr`` over ``warmup_epochs``, then exponential decay to ``lr/10`` at the end),
``cosine`` (the same warm-up, then half a cosine to 0). They are stepped once per optimiser
step and scale every parameter group's lr alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from graphmvp.finetune.extra_features import NO_EXTRA_FEATURES
from graphmvp.registry import Registry


@dataclass(frozen=True)
class Protocol:
    """``values``: option -> default for classification and regression; ``regression``: values
    that replace those for regression only; ``dta``: the defaults of DTA tasks (options absent
    from a mapping take the task type's values)."""

    name: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)
    dta: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)

    def defaults(self, task_type: str) -> dict[str, Any]:
        if task_type == "dta":
            return dict(self.dta)
        return {**self.values, **(self.regression if task_type == "regression" else {})}


#: the options a protocol decides (a user's explicit value wins); with their paper values
PAPER_VALUES: dict[str, Any] = {"head": "linear", "weight_decay": 0.0, "standardize": False, "lr_schedule": "constant",
                                "warmup_epochs": 0.0, "patience": 0, "grad_clip": 0.0, "encoder_lr_scale": 1.0,
                                "graph_features": "hu", "hydrogens": "drop",
                                "extra_features": NO_EXTRA_FEATURES}

#: protocol name -> :class:`Protocol`
PROTOCOLS: Registry = Registry("protocol")
PROTOCOLS.register("paper")(Protocol("paper", "upstream GraphMVP fine-tuning (reproduction tables)", PAPER_VALUES,
                                     PAPER_VALUES))
PROTOCOLS.register("default")(Protocol(
    "default", "batch 32, standardised targets, MLP head, noam schedule, early stopping, the encoder's hydrogens; "
    "regression: RDKit 2D descriptors beside the mean-pooled graph embedding",
    {**PAPER_VALUES, "batch_size": 32, "standardize": True, "head": "mlp", "lr_schedule": "noam", "warmup_epochs": 2.0,
     "patience": 30, "hydrogens": "pretrained"},
    PAPER_VALUES,
    regression={"pooling": "mean", "extra_features": "rdkit2d"},
))


# ------------------------------------------------------------------------------- schedules

#: schedule name -> ``f(step, steps_per_epoch, epochs, warmup_epochs) -> lr factor`` (None: constant)
SCHEDULES: Registry = Registry("lr schedule")
SCHEDULES.register("constant")(None)


def _warmup(step: int, warmup_steps: int) -> Optional[float]:
    if step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    return None


@SCHEDULES.register("noam")
def noam(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> float:
    warm = int(round(warmup_epochs * steps_per_epoch))
    factor = _warmup(step, warm)
    if factor is not None:
        return factor
    decay_steps = max(1, epochs * steps_per_epoch - warm)
    return 0.1 ** (min(step - warm, decay_steps) / decay_steps)


@SCHEDULES.register("cosine")
def cosine(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float) -> float:
    warm = int(round(warmup_epochs * steps_per_epoch))
    factor = _warmup(step, warm)
    if factor is not None:
        return factor
    decay_steps = max(1, epochs * steps_per_epoch - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, decay_steps) / decay_steps))


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                   warmup_epochs: float) -> Optional[torch.optim.lr_scheduler.LambdaLR]:
    """A per-step scheduler for ``optimizer`` (None for ``constant``: the optimiser is untouched)."""
    fn: Optional[Callable] = SCHEDULES.get(name)
    if fn is None:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: fn(step, steps_per_epoch, epochs, warmup_epochs))


__all__ = ["PAPER_VALUES", "PROTOCOLS", "Protocol", "SCHEDULES", "cosine", "make_scheduler", "noam"]
