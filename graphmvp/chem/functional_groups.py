"""GROVER's G-Motif target: presence flags of RDKit's 85 ``fr_*`` functional-group descriptors.

Rong et al. (GROVER, NeurIPS 2020) predict, from the graph embedding, which of RDKit's
functional groups a molecule contains (multi-label, binary cross-entropy). The groups are the
SMARTS patterns of ``rdkit.Chem.Fragments`` (RDKit's ``FragmentDescriptors.csv``), in that
module's order; a flag is 1 when the group's count is at least one. Computed on the molecule as
RDKit reads it from SMILES (hydrogens implicit, explicit hydrogen atoms removed first), which is
how GROVER computes them.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import Fragments

#: the descriptor functions, in rdkit.Chem.Fragments' order (the order of the flag vector)
_FUNCTIONS = tuple(Fragments.fns)
#: names of the flags, e.g. ``fr_Al_OH`` (85 in RDKit's pattern file)
FUNCTIONAL_GROUP_NAMES: tuple[str, ...] = tuple(name for name, _ in _FUNCTIONS)
NUM_FUNCTIONAL_GROUPS = len(FUNCTIONAL_GROUP_NAMES)
#: version of the flag rule; stored in every label sidecar with the names
FUNCTIONAL_GROUP_RULES_VERSION = "rdkit-fragments-1"


def functional_group_flags(mol: Chem.Mol) -> np.ndarray:
    """Presence of each functional group in ``mol``: uint8 [NUM_FUNCTIONAL_GROUPS] (85), in the
    order of :data:`FUNCTIONAL_GROUP_NAMES`. Explicit hydrogen atoms are removed first."""
    if mol.GetNumHeavyAtoms() != mol.GetNumAtoms():
        mol = Chem.RemoveAllHs(mol)
    return np.fromiter((fn(mol) > 0 for _, fn in _FUNCTIONS), dtype=np.uint8, count=len(_FUNCTIONS))
