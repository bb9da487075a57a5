"""The label kinds, by name: what each computes on a molecule and at which level.

``motif`` and ``contextual`` are atom-level (a string key per heavy atom, turned into class
indices by a :class:`~graphmvp.chem.vocab.Vocabulary`); ``functional_groups`` is molecule-level
(a fixed binary vector). A new kind is a new registration here, not a branch in the builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from rdkit import Chem

from graphmvp.chem.contextual import CONTEXTUAL_RULES_VERSION, contextual_groups
from graphmvp.chem.functional_groups import (
    FUNCTIONAL_GROUP_NAMES,
    FUNCTIONAL_GROUP_RULES_VERSION,
    functional_group_flags,
)
from graphmvp.chem.motifs import MOTIF_RULES_VERSION, motif_labels
from graphmvp.registry import Registry


@dataclass(frozen=True)
class AtomLabelKind:
    """An atom-level kind. ``groups(mol)`` returns (group of each heavy atom [N] int64, key of
    each group): a group is one *occurrence* of a key (a motif fragment; a single atom for
    contextual labels), which is what a vocabulary's ``min_count`` counts."""

    name: str
    rules_version: str
    groups: Callable[[Chem.Mol], tuple[np.ndarray, list[str]]]
    occurrence: str  # what one occurrence is, for reports


@dataclass(frozen=True)
class MoleculeLabelKind:
    """A molecule-level kind: ``flags(mol)`` -> uint8 [len(names)]."""

    name: str
    rules_version: str
    names: tuple[str, ...]
    flags: Callable[[Chem.Mol], np.ndarray]


LABEL_KINDS: Registry = Registry("label kind")
LABEL_KINDS.register("motif")(AtomLabelKind("motif", MOTIF_RULES_VERSION, motif_labels, "fragment"))
LABEL_KINDS.register("contextual")(AtomLabelKind("contextual", CONTEXTUAL_RULES_VERSION, contextual_groups, "atom"))
LABEL_KINDS.register("functional_groups")(
    MoleculeLabelKind("functional_groups", FUNCTIONAL_GROUP_RULES_VERSION, FUNCTIONAL_GROUP_NAMES, functional_group_flags)
)


def all_kinds() -> tuple[str, ...]:
    """Every registered kind, sorted by name (the order the builders handle them)."""
    return tuple(LABEL_KINDS.names())


def label_kind(name: str) -> AtomLabelKind | MoleculeLabelKind:
    """The kind called ``name``; ValueError naming the known kinds otherwise."""
    if name not in LABEL_KINDS:
        raise ValueError(f"unknown label kind '{name}' (known: {', '.join(all_kinds())})")
    return LABEL_KINDS.get(name)


def parse_kinds(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"motif,contextual"`` (or a list) -> validated kinds, sorted by name, no repeats."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise ValueError(f"no label kind given (known: {', '.join(all_kinds())})")
    for name in names:
        label_kind(name)
    return tuple(k for k in all_kinds() if k in names)


def is_atom_kind(name: str) -> bool:
    return isinstance(label_kind(name), AtomLabelKind)
