"""The molecule graph: the integer 2D graph of one molecule as numpy arrays (:class:`MolGraph`).

It is the one graph type of the package: the featuriser returns it
(:func:`graphmvp.features.graph_features`), a conformer store's
:class:`~graphmvp.data.store.Molecule` is one (a MolGraph plus its conformers), the masking,
augmentation and 2D-task code cuts and masks it (:mod:`graphmvp.data.masking`,
:mod:`graphmvp.data.augment`, :mod:`graphmvp.data.transforms_2d`, ...), and
:func:`graphmvp.data.collate.batch_mol_graphs` batches a list of them into one DGL graph.

Fields (N atoms, E directed edges; the feature values are Hu et al.'s, see :mod:`graphmvp.features`):

=================  ==========  ================================================================
``atomic_num``     [N]         true atomic number Z (1..119)
``atom_features``  [N, 2]      (type index Z - 1, or :data:`MASK_ATOM_TYPE`; chirality tag 0..3)
``edge_index``     [2, E]      int64 (src, dst): both directions of every bond, no self loops
``edge_features``  [E, 2]      (bond type 0..3, or :data:`MASK_BOND_TYPE`; bond direction 0..2)
=================  ==========  ================================================================

``atomic_num``, ``atom_features`` and ``edge_features`` keep the integer dtype they were given:
uint8 from the featuriser and the store (some callers pass int64); the collate functions turn
them into int64 tensors. Masking changes only the features: a masked atom keeps its true
``atomic_num``, and a subgraph carries the ``atomic_num`` of its atoms along, so that
``atomic_num[i]`` always belongs to ``atom_features[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: atom type index of the mask token (the GIN's atom-type table has 120 rows: 119 elements + mask)
MASK_ATOM_TYPE = 119
#: bond type index of the mask token (bond-type table rows: 0-3 bonds, 4 self loop, 5 mask)
MASK_BOND_TYPE = 5


@dataclass
class MolGraph:
    """Integer 2D graph of one molecule: ``atomic_num`` [N], ``atom_features`` [N, 2],
    ``edge_index`` [2, E] int64, ``edge_features`` [E, 2] (see the module docstring)."""

    atomic_num: np.ndarray
    atom_features: np.ndarray
    edge_index: np.ndarray
    edge_features: np.ndarray

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_num.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def with_atom_features(self, atom_features: np.ndarray) -> "MolGraph":
        """This graph with other atom features (e.g. some atoms masked): the atoms keep their
        ``atomic_num``, the edges are shared (no copy)."""
        return MolGraph(self.atomic_num, atom_features, self.edge_index, self.edge_features)
