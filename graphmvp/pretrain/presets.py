"""Named pretraining settings (``--preset``): the released upstream settings of each method.

:data:`PRESETS` maps a preset name to config field values; explicit options override them (see
:func:`graphmvp.pretrain.config.resolve_config`). GraphMVP's presets and Hu et al.'s baselines are
defined here; the 2D task modules of :mod:`graphmvp.pretrain.tasks` register the presets of their
methods with :func:`register_preset` next to their code, citing the paper the values come from.
"""

from __future__ import annotations

from typing import Any

# optimisation settings shared by GraphMVP's released runs and the Hu et al. baselines it ran
UPSTREAM_OPTIMISATION: dict[str, Any] = {
    "dropout": 0.0,
    "epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "neg_samples": 1,
}

_RELEASED_COMMON: dict[str, Any] = {
    **UPSTREAM_OPTIMISATION,
    "views": "2d3d",
    "normalize": True,
    "rr_loss": "l2",
    "detach_target": True,
    "beta": 2.0,
    "alpha1": 1.0,
    "alpha2": 1.0,
    "mask_ratio": 0.15,
    "schnet_lr_scale": 0.1,
    "to2d_lr_scale": 0.1,
}

#: the 2D-only protocol of Hu et al.'s baselines: the whole molecule is the sample, once per epoch
HU_BASELINE: dict[str, Any] = {
    **UPSTREAM_OPTIMISATION,
    "views": "2d",
    "alpha3": 1.0,
    "mask_ratio": 0.0,
    "conformer_sampling": "random",  # one sample per molecule per epoch (2D views ignore conformers)
}

#: preset name -> field values (the released settings; explicit options override them)
PRESETS: dict[str, dict[str, Any]] = {
    "graphmvp": {**_RELEASED_COMMON, "loss": ("ebm-nce", "vrr"), "temperature": 0.2},
    "graphmvp-g": {
        **_RELEASED_COMMON,
        "loss": ("ebm-nce", "vrr", "attrmask"),
        "temperature": 0.05,
        "alpha3": 1.0,
    },
    "graphmvp-c": {
        **_RELEASED_COMMON,
        "loss": ("ebm-nce", "vrr", "contextpred"),
        "temperature": 0.2,
        "alpha3": 0.1,
    },
    "attrmask": {**HU_BASELINE, "loss": ("attrmask",)},
    "contextpred": {**HU_BASELINE, "loss": ("contextpred",)},
}


def register_preset(name: str, values: dict[str, Any]) -> None:
    """Add preset ``name`` (field values; ``options`` for the task's own hyperparameters).
    Raises ``ValueError`` if the name is taken."""
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already defined")
    PRESETS[name] = dict(values)


__all__ = ["HU_BASELINE", "PRESETS", "UPSTREAM_OPTIMISATION", "register_preset"]
