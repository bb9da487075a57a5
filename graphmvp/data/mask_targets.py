"""What to predict at masked atoms: the prediction targets of masked-node prediction (one axis of
the masking-design study, Yang, Thost, Ma, arXiv 2512.07064).

A target gives every atom of a sample's 2D graph a class index; the objective predicts it at the
masked atoms. Targets are plain numpy objects usable without a model (the MI analysis reads them
too)::

    target = build_mask_target("motif", store="zinc.h5")
    target.num_classes                       # C, from the vocabulary
    target.labels(graph, info)               # int64 [n], class per atom of the sample's graph

Registered in :data:`MASK_TARGETS`:

``atom`` (Hu et al. 2020, AttrMask)
    the atom type index (atomic number - 1, 119 classes), read from the graph itself.
``motif``
    the vocabulary index of the atom's refined-BRICS motif (:mod:`graphmvp.chem.motifs`),
    precomputed into the store's label sidecar (``STORE.labels.h5``, built by
    ``graphmvp-prep motifs STORE`` / ``graphmvp-prep labels STORE``); class 0 is ``<other>``
    (rare or unseen motifs); a hydrogen row carries its heavy atom's label
    (:mod:`graphmvp.data.annotations`).
``contextual``
    GROVER's contextual label of the atom (symbol + neighbour counts), from the same sidecar.

Further targets register a class with ``name``, ``num_classes`` and ``labels(graph, info)``; a
target that needs files takes ``store`` in its constructor (see :func:`build_mask_target`).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from graphmvp.molgraph import MolGraph
from graphmvp.registry import Registry

#: atom type classes (atomic number - 1 in 0..118; 119 is the mask token, never a target)
NUM_ATOM_TYPES = 119

MASK_TARGETS: Registry = Registry("masked-node target")


class MaskTarget:
    """Base of the targets: ``num_classes`` and ``labels(graph, info)`` (int64 [n], values in
    0..num_classes-1). ``needs_store``: the target reads files beside the store."""

    name = ""
    needs_store = False

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def labels(self, graph: MolGraph, info: Any) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"


@MASK_TARGETS.register("atom")
class AtomTypeTarget(MaskTarget):
    """The atom type index (Z - 1) of every atom, 119 classes (AttrMask's target)."""

    name = "atom"

    @property
    def num_classes(self) -> int:
        return NUM_ATOM_TYPES

    def labels(self, graph: MolGraph, info: Any = None) -> np.ndarray:
        labels = np.asarray(graph.atom_features[:, 0], dtype=np.int64)
        if labels.size and int(labels.max()) >= NUM_ATOM_TYPES:
            raise ValueError("the graph has masked atoms (type 119): atom-type labels must come from the unmasked graph")
        return labels


class SidecarTarget(MaskTarget):
    """Per-atom labels of one atom-level kind of the store's label sidecar
    (:class:`graphmvp.data.annotations.AtomLabels`), aligned with the sample's graph through
    ``info.mol_index`` and ``info.kept_atoms`` (the subgraph mask's kept atoms).

    Raises ``ValueError`` (:class:`~graphmvp.data.annotations.LabelsError`) naming the command
    that builds the sidecar when it is missing or stale.
    """

    #: the sidecar kind read
    kind = ""
    needs_store = True

    def __init__(self, store: Optional[str | os.PathLike] = None, preload: bool = True):
        from graphmvp.data.annotations import AtomLabels, rebuild_command

        if store is None:
            raise ValueError(f"the {self.name!r} target reads the store's label sidecar: give the store path "
                             f"(the sidecar is built with: {rebuild_command('STORE', [self.kind])})")

        self.store = str(store)
        self.table = AtomLabels.open(self.store, self.kind, preload=preload)

    @property
    def num_classes(self) -> int:
        return int(self.table.num_classes)

    @property
    def vocab(self):
        return self.table.vocab

    def labels(self, graph: MolGraph, info: Any) -> np.ndarray:
        rows = self.table.labels(int(info.mol_index))
        kept = getattr(info, "kept_atoms", None)
        labels = rows if kept is None else rows[np.asarray(kept, dtype=np.int64)]
        if labels.shape[0] != graph.num_atoms:
            raise ValueError(f"molecule {info.mol_index}: {labels.shape[0]} {self.kind} labels for a graph of "
                             f"{graph.num_atoms} atoms (is the sidecar built for this store?)")
        return labels


@MASK_TARGETS.register("motif")
class MotifTarget(SidecarTarget):
    """The atom's refined-BRICS motif class (vocabulary with ``<other>`` = 0)."""

    name = "motif"
    kind = "motif"


@MASK_TARGETS.register("contextual")
class ContextualTarget(SidecarTarget):
    """The atom's GROVER contextual-property class (vocabulary with ``<other>`` = 0)."""

    name = "contextual"
    kind = "contextual"


def build_mask_target(name: str, store: Optional[str | os.PathLike] = None, preload: bool = True) -> MaskTarget:
    """The target ``name``; ``store`` (and ``preload``: read all labels into memory at once, see
    :class:`~graphmvp.data.annotations.AtomLabels`) go to targets that read the store's sidecar."""
    cls = MASK_TARGETS.get(name)
    return cls(store, preload=preload) if cls.needs_store else cls()


__all__ = [
    "AtomTypeTarget",
    "ContextualTarget",
    "MASK_TARGETS",
    "MaskTarget",
    "MotifTarget",
    "NUM_ATOM_TYPES",
    "SidecarTarget",
    "build_mask_target",
]
