"""GROVER's contextual atom labels (the G-Contextual target).

Rong et al., "Self-Supervised Graph Transformer on Large-Scale Molecular Data" (GROVER, NeurIPS
2020): each atom's label is its element symbol followed by the sorted counts of its
(neighbour symbol, bond type) pairs, e.g. the carboxyl carbon of acetic acid is
``C_C-SINGLE1_O-DOUBLE1_O-SINGLE1``: symbol, then for each distinct ``<neighbour
symbol>-<bond type>`` (sorted as strings) an underscore, the pair and its count. Bond types are
RDKit's names (``SINGLE``, ``DOUBLE``, ``TRIPLE``, ``AROMATIC``, ...) on the aromatic (not
kekulised) molecule, as GROVER reads molecules from SMILES. An atom without neighbours is its
bare symbol. Charges, hydrogens and chirality are not part of the label.

Hydrogens: GROVER's molecules come from SMILES with implicit hydrogens, so hydrogen neighbours
never count; labels are computed on the heavy-atom graph (explicit hydrogen atoms are removed
first). In a store that keeps hydrogens as atoms, each hydrogen atom carries the label of the
heavy atom it is bonded to (:mod:`graphmvp.chem.annotate`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from rdkit import Chem

#: version of the label rule; stored in every vocabulary and label sidecar
CONTEXTUAL_RULES_VERSION = "grover-contextual-1"


def contextual_label(atom: Chem.Atom) -> str:
    """GROVER's label of one atom, e.g. ``C_C-SINGLE2_O-DOUBLE1``."""
    pairs = Counter(f"{bond.GetOtherAtom(atom).GetSymbol()}-{bond.GetBondType()}" for bond in atom.GetBonds())
    return "_".join([atom.GetSymbol(), *(f"{pair}{pairs[pair]}" for pair in sorted(pairs))])


def contextual_labels(mol: Chem.Mol) -> list[str]:
    """Label of every heavy atom [N] (indices of ``Chem.RemoveAllHs(mol)``; a hydrogen-free
    molecule keeps its numbering)."""
    if mol.GetNumHeavyAtoms() != mol.GetNumAtoms():
        mol = Chem.RemoveAllHs(mol)
    return [contextual_label(mol.GetAtomWithIdx(i)) for i in range(mol.GetNumAtoms())]


def contextual_groups(mol: Chem.Mol) -> tuple[np.ndarray, list[str]]:
    """(group of each heavy atom [N] int64, key of each group): one group per atom, in the shape
    that :func:`graphmvp.chem.motifs.motif_labels` returns, so both kinds are counted alike."""
    labels = contextual_labels(mol)
    return np.arange(len(labels), dtype=np.int64), labels
