"""chemprop's command line with Hu et al.'s inputs instead of its own (issue 14's architecture study).

    python benchmarks/chemprop_hu_features.py train|predict ...   # any ``chemprop`` arguments

Our GIN sees what Hu et al.'s featuriser gives it (:mod:`graphmvp.features`): the atom type and
its chirality tag, the bond type and its direction. chemprop's D-MPNN sees far more: degree,
formal charge, hydrogen count, hybridisation, aromaticity and mass per atom; conjugation, ring
membership and stereo per bond. Running chemprop unchanged except for these two featurisers
separates what its inputs buy from what its architecture and protocol buy, on the same splits.

Featurisers used here (the layout of chemprop's own vector featurisers: one slot per known value
plus, for the atom, one for "unknown"; a missing bond is chemprop's null-bond bit):

* atom: one-hot atom type (atomic number 1..119, plus unknown) + one-hot chiral tag (unspecified,
  CW, CCW, other), what :func:`graphmvp.features.atom_features` encodes as two integers;
* bond: null-bond bit + one-hot bond type (single, double, triple, aromatic) + one-hot direction
  (none, end-up-right, end-down-right; any other direction is "none", as in
  :func:`graphmvp.features.bond_features`).

Both ``train`` and ``predict`` must run through this launcher (chemprop does not store its
featuriser in the model file). Used by ``finetune_vs_peers.py``'s ``chemprop-hu-features``.
"""

from __future__ import annotations

import sys

import numpy as np

from graphmvp.features import BOND_DIRS, BOND_TYPES, CHIRALITY_TAGS, NUM_ATOM_TYPES


class HuAtomFeaturizer:
    """[119 + 1 atom types | 4 chiral tags] one-hot; an absent atom is all zeros."""

    def __len__(self) -> int:
        return NUM_ATOM_TYPES + 1 + len(CHIRALITY_TAGS)

    def __call__(self, atom) -> np.ndarray:
        x = np.zeros(len(self))
        if atom is None:
            return x
        z = atom.GetAtomicNum()
        x[z - 1 if 1 <= z <= NUM_ATOM_TYPES else NUM_ATOM_TYPES] = 1
        tag = atom.GetChiralTag()
        x[NUM_ATOM_TYPES + 1 + (CHIRALITY_TAGS.index(tag) if tag in CHIRALITY_TAGS else 3)] = 1
        return x

    def num_only(self, atom) -> np.ndarray:  # chemprop's API for atoms beyond the first of a reaction
        x = np.zeros(len(self))
        if atom is not None:
            z = atom.GetAtomicNum()
            x[z - 1 if 1 <= z <= NUM_ATOM_TYPES else NUM_ATOM_TYPES] = 1
        return x


class HuBondFeaturizer:
    """[null bond | 4 bond types | 3 directions]."""

    def __len__(self) -> int:
        return 1 + len(BOND_TYPES) + len(BOND_DIRS)

    def __call__(self, bond) -> np.ndarray:
        x = np.zeros(len(self), int)
        if bond is None:
            x[0] = 1
            return x
        btype = bond.GetBondType()
        if btype in BOND_TYPES:
            x[1 + BOND_TYPES.index(btype)] = 1
        bdir = bond.GetBondDir()
        x[1 + len(BOND_TYPES) + (BOND_DIRS.index(bdir) if bdir in BOND_DIRS else 0)] = 1
        return x


def use_hu_features() -> None:
    """Make chemprop's command line build its molecule graphs with the two featurisers above."""
    from chemprop.cli.utils import parsing

    parsing.get_multi_hot_atom_featurizer = lambda mode: HuAtomFeaturizer()
    parsing.MultiHotBondFeaturizer = HuBondFeaturizer


def main() -> int:
    use_hu_features()
    from chemprop.cli.main import main as chemprop_main

    sys.argv = ["chemprop", *sys.argv[1:]]
    return chemprop_main() or 0


if __name__ == "__main__":
    sys.exit(main())
