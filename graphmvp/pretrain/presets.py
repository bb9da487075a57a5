"""Named pretraining settings (``--preset``): the released upstream settings of each method.

:data:`PRESETS` maps a preset name to config field values; explicit options override them (see
:func:`graphmvp.pretrain.config.resolve_config`). GraphMVP's own presets (its 2D + 3D runs) are
defined here; every 2D method declares its presets in its module (``Task2D.presets`` in
:mod:`graphmvp.pretrain.tasks`, citing the paper the values come from). :data:`PRESETS` is built
on first access from GraphMVP's presets and those of
:data:`graphmvp.pretrain.tasks.METHODS` (the explicit list of method modules), so it holds every
preset whatever was imported before.
"""

from __future__ import annotations

from typing import Any, Iterator, MutableMapping, Optional

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

#: GraphMVP's released runs (Liu et al. 2022): EBM-NCE + VRR, alone or with a 2D method's term
GRAPHMVP_PRESETS: dict[str, dict[str, Any]] = {
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
}


def _collect() -> dict[str, dict[str, Any]]:
    """GraphMVP's presets, then each 2D method's (in ``METHOD_MODULES`` order); a name defined
    twice is a ``ValueError``."""
    from graphmvp.pretrain.tasks import METHODS

    table = {name: dict(values) for name, values in GRAPHMVP_PRESETS.items()}
    for method in METHODS:
        for name, values in method.presets.items():
            if name in table:
                raise ValueError(f"preset {name!r} of 2D method {method.name!r} is already defined")
            table[name] = dict(values)
    return table


class PresetTable(MutableMapping):
    """preset name -> field values, built on first access (:func:`_collect`). Adding a name
    that exists is a ``ValueError``; presets may be added (:func:`register_preset`) and removed."""

    def __init__(self) -> None:
        self._table: Optional[dict[str, dict[str, Any]]] = None

    def _items(self) -> dict[str, dict[str, Any]]:
        if self._table is None:
            self._table = _collect()
        return self._table

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._items()[name]

    def __setitem__(self, name: str, values: dict[str, Any]) -> None:
        items = self._items()
        if name in items:
            raise ValueError(f"preset {name!r} is already defined")
        items[name] = dict(values)

    def __delitem__(self, name: str) -> None:
        del self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return f"PresetTable({list(self)})"


#: preset name -> field values (the released settings; explicit options override them)
PRESETS: PresetTable = PresetTable()


def register_preset(name: str, values: dict[str, Any]) -> None:
    """Add preset ``name`` at run time (field values; ``options`` for the 2D method's
    hyperparameters), e.g. for a method outside this package. Raises ``ValueError`` if the name
    is taken. The package's own presets are declared by their methods (``Task2D.presets``)."""
    PRESETS[name] = values


__all__ = ["GRAPHMVP_PRESETS", "HU_BASELINE", "PRESETS", "PresetTable", "UPSTREAM_OPTIMISATION", "register_preset"]
