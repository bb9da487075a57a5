"""GROVER's G-Contextual and G-Motif (Rong et al., NeurIPS 2020) as 2D tasks; the losses are in
:mod:`graphmvp.objectives.grover`.

Both read labels precomputed into the store's label sidecar (``STORE.labels.h5``, built by
``graphmvp-prep labels STORE``; :mod:`graphmvp.data.annotations`); a missing or stale sidecar
stops the run before training with the command that builds it.

G-Contextual (``g-contextual``), per sample: the contextual class of every atom of the sample's
2D graph (the sidecar's row of each kept atom, ``info.kept_atoms``, so the labels follow the
subgraph mask); ``ceil(label_rate * h)`` of its h heavy atoms drawn uniformly without
replacement (GROVER's ``ceil(0.15 n)``; hydrogen rows, which a store with explicit hydrogens
has and GROVER's molecules do not, are never chosen); their node representations from one
encoder pass predict their classes. ``mask_atoms=true`` sets the chosen atoms' features to the
mask token (type 119, chirality 0) in that pass (GROVER's paper); the default leaves the input
unchanged (GROVER's release). A molecule the sidecar could not label has no chosen atoms.

G-Motif (``g-motif``), per sample: the molecule's 85 functional-group flags; the pooled
representation (``model.pooling``) of the sample's graph predicts them. Flags describe the whole
molecule: combined with the 3D terms the graph is GraphMVP's subgraph-masked view (85% of the
atoms), so a flag may name a group that the view has lost. Molecules the sidecar could not label
are left out of the loss.

Presets ``g-contextual`` and ``g-motif``: Hu et al.'s 2D-baseline protocol (``HU_BASELINE``: 100
epochs, batch 256, lr 1e-3, whole molecules). GROVER's own schedule trains its graph
transformer; GraphMVP's table reports these tasks on the GIN with the 2D baselines' settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch

from graphmvp.models import graph_readout
from graphmvp.molgraph import MASK_ATOM_TYPE
from graphmvp.objectives.grover import GroverContextual, GroverMotif
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import NoOptions, Task2D

CONTEXTUAL = "g-contextual"
MOTIF = "g-motif"


@dataclass(frozen=True)
class ContextualOptions:
    """G-Contextual's options and their defaults (GROVER's ``ceil(0.15 n)``; its release's
    unmasked inputs)."""

    label_rate: float = 0.15
    mask_atoms: bool = False
#: the type index of hydrogen (atomic number 1)
HYDROGEN_TYPE = 0


def _store_of(cfg, task: str) -> str:
    from graphmvp.data.annotations import rebuild_command

    if cfg.store is None:
        raise ValueError(f"{task} reads labels precomputed beside the store: give --store (and build its labels with: "
                         f"{rebuild_command('STORE')})")
    return str(cfg.store)


# -- G-Contextual -------------------------------------------------------------------------------
@dataclass
class ChosenAtoms:
    """G-Contextual inputs of one sample: ``index`` [m] int64 (chosen atoms of the graph,
    sorted), ``label`` [m] int64 (their contextual classes), ``atom`` [n, 2] (the graph's atom
    features with the chosen atoms masked; None when inputs are not masked)."""

    index: np.ndarray
    label: np.ndarray
    atom: Optional[np.ndarray]

    @staticmethod
    def collate(payloads: list["ChosenAtoms"], layout) -> "ChosenAtomsBatch":
        counts = np.array([p.index.shape[0] for p in payloads], dtype=np.int64)
        index = np.concatenate([p.index for p in payloads]).astype(np.int64) + np.repeat(layout.node_offset, counts)
        label = np.concatenate([p.label for p in payloads]).astype(np.int64)
        atom = None
        if payloads[0].atom is not None:
            atom = torch.from_numpy(np.concatenate([p.atom for p in payloads]).astype(np.int64))
        return ChosenAtomsBatch(torch.from_numpy(index), torch.from_numpy(label), atom)


@dataclass
class ChosenAtomsBatch:
    """Batch form: ``index`` [M] int64 node ids in ``batch.graph_2d``, ``label`` [M] int64,
    ``atom`` [N, 2] int64 input features with the chosen atoms masked (or None)."""

    index: torch.Tensor
    label: torch.Tensor
    atom: Optional[torch.Tensor]


class ContextualAtoms:
    """Sample transform of G-Contextual (module docstring).

    Args:
        store: the store path; its sidecar's ``contextual`` labels are read (preloaded).
        label_rate: fraction of heavy atoms chosen, in (0, 1]; 0.15.
        mask_atoms: mask the chosen atoms' input features; False.
    """

    name = CONTEXTUAL

    def __init__(self, store: str, label_rate: float = 0.15, mask_atoms: bool = False):
        from graphmvp.data.mask_targets import build_mask_target

        if not 0.0 < float(label_rate) <= 1.0:
            raise ValueError(f"g-contextual option label_rate={label_rate!r}: must be in (0, 1]")
        self.label_rate = float(label_rate)
        self.mask_atoms = bool(mask_atoms)
        self.target = build_mask_target("contextual", store)

    @property
    def num_classes(self) -> int:
        return self.target.num_classes

    def __repr__(self) -> str:
        return f"ContextualAtoms(label_rate={self.label_rate}, mask_atoms={self.mask_atoms}, classes={self.num_classes})"

    def __call__(self, graph, rng: np.random.Generator, info) -> ChosenAtoms:
        labels = self.target.labels(graph, info)
        heavy = np.flatnonzero(np.asarray(graph.atom_features[:, 0]) != HYDROGEN_TYPE).astype(np.int64)
        if heavy.size == 0 or not self.target.table.valid(int(info.mol_index)):
            chosen = np.zeros(0, dtype=np.int64)
        else:
            m = min(heavy.size, max(1, math.ceil(self.label_rate * heavy.size)))
            chosen = np.sort(rng.choice(heavy, size=m, replace=False)).astype(np.int64)
        atom = None
        if self.mask_atoms:
            atom = np.array(graph.atom_features, dtype=np.int64)
            atom[chosen, 0] = MASK_ATOM_TYPE
            atom[chosen, 1] = 0
        return ChosenAtoms(index=chosen, label=labels[chosen], atom=atom)


def _contextual_options(cfg, options: ContextualOptions) -> dict[str, Any]:
    return {"transforms": [ContextualAtoms(_store_of(cfg, CONTEXTUAL), options.label_rate, options.mask_atoms)]}


def _contextual_args(cfg, options: ContextualOptions) -> dict[str, Any]:
    """The classifier's width; its class count is read from the store's sidecar vocabulary."""
    return {"emb_dim": cfg.emb_dim, "store": cfg.store}


def _contextual_run(model, objective, batch):
    chosen: ChosenAtomsBatch = batch.extras.get(CONTEXTUAL)
    if chosen is None:
        raise ValueError("the batch has no G-Contextual inputs: build the dataset with the g-contextual task's transforms")
    if chosen.index.numel() == 0:
        return None, {}
    node_reps = model.encoder_2d(batch.graph_2d, atom=chosen.atom)
    return objective(node_reps[chosen.index], chosen.label)


# -- G-Motif ------------------------------------------------------------------------------------
@dataclass
class GroupFlags:
    """G-Motif input of one sample: ``flags`` [F] uint8, ``valid`` (the sidecar labelled it)."""

    flags: np.ndarray
    valid: bool

    @staticmethod
    def collate(payloads: list["GroupFlags"], layout) -> "GroupFlagsBatch":
        flags = torch.from_numpy(np.stack([p.flags for p in payloads]).astype(np.float32))
        valid = torch.tensor([p.valid for p in payloads], dtype=torch.bool)
        return GroupFlagsBatch(flags, valid)


@dataclass
class GroupFlagsBatch:
    """Batch form: ``flags`` float32 [B, F] (0/1), ``valid`` bool [B]."""

    flags: torch.Tensor
    valid: torch.Tensor


class FunctionalGroups:
    """Sample transform of G-Motif: the molecule's functional-group flags from the sidecar."""

    name = MOTIF

    def __init__(self, store: str):
        from graphmvp.data.annotations import MoleculeLabels

        self.table = MoleculeLabels.open(store, "functional_groups")

    def __repr__(self) -> str:
        return f"FunctionalGroups(groups={self.table.num_flags})"

    def __call__(self, graph, rng: np.random.Generator, info) -> GroupFlags:
        i = int(info.mol_index)
        return GroupFlags(flags=np.array(self.table.flags(i), dtype=np.uint8), valid=self.table.valid(i))


def _motif_options(cfg, options: NoOptions) -> dict[str, Any]:
    return {"transforms": [FunctionalGroups(_store_of(cfg, MOTIF))]}


def _motif_args(cfg, options: NoOptions) -> dict[str, Any]:
    """The classifier's width (its 85 outputs are the functional-group vocabulary's)."""
    return {"emb_dim": cfg.emb_dim}


def _motif_run(model, objective, batch):
    groups: GroupFlagsBatch = batch.extras.get(MOTIF)
    if groups is None:
        raise ValueError("the batch has no G-Motif inputs: build the dataset with the g-motif task's transforms")
    if not bool(groups.valid.any()):
        return None, {}
    graph = batch.graph_2d
    graph_reps = graph_readout(graph, model.encoder_2d(graph), model.pooling)
    return objective(graph_reps[groups.valid], groups.flags[groups.valid])


# GraphMVP's table (Liu et al. 2022) runs GROVER's tasks on the GIN with the 2D baselines'
# settings (Hu et al. 2020: 100 epochs, batch 256, lr 1e-3); GROVER's own schedule is its transformer's.
CONTEXTUAL_METHOD = Task2D(
    name=CONTEXTUAL,
    objective=GroverContextual,
    objective_args=_contextual_args,
    options=ContextualOptions,
    dataset_options=_contextual_options,
    run=_contextual_run,
    presets={CONTEXTUAL: {**HU_BASELINE, "loss": (CONTEXTUAL,), "options": asdict(ContextualOptions())}},
    describe="contextual atom-label prediction (GROVER G-Contextual, Rong et al. 2020)",
    item_count=lambda batch: int(batch.extras[CONTEXTUAL].index.numel()),  # a mean over the labelled atoms
)
MOTIF_METHOD = Task2D(
    name=MOTIF,
    objective=GroverMotif,
    objective_args=_motif_args,
    dataset_options=_motif_options,
    run=_motif_run,
    presets={MOTIF: {**HU_BASELINE, "loss": (MOTIF,)}},
    describe="functional-group multi-label prediction (GROVER G-Motif, Rong et al. 2020)",
    item_count=lambda batch: int(batch.extras[MOTIF].valid.sum()),  # a mean over the labelled molecules
)
METHODS = (CONTEXTUAL_METHOD, MOTIF_METHOD)

__all__ = [
    "CONTEXTUAL_METHOD",
    "ChosenAtoms",
    "ChosenAtomsBatch",
    "ContextualAtoms",
    "ContextualOptions",
    "FunctionalGroups",
    "GroupFlags",
    "GroupFlagsBatch",
    "METHODS",
    "MOTIF_METHOD",
]
