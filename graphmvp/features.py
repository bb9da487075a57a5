"""Hu et al. "simple" integer graph features of an RDKit molecule.

This is the featurisation of Hu et al. (2020, "Strategies for Pre-training Graph Neural Networks")
that GraphMVP uses for its 2D view, and that the GIN embedding tables are sized for:

========================  =====================================================================
atom feature 0 (type)     atomic number - 1, in 0..118 (the GIN table has 120 rows; 119 = mask)
atom feature 1 (chiral)   RDKit chiral tag: 0 unspecified, 1 CW, 2 CCW, 3 other
bond feature 0 (type)     0 single, 1 double, 2 triple, 3 aromatic (GIN: 4 self loop, 5 mask)
bond feature 1 (dir)      0 none, 1 end-up-right, 2 end-down-right
========================  =====================================================================

Edges are directed and listed in both directions, bond ``b`` giving edges ``2b`` (begin -> end)
and ``2b + 1`` (end -> begin), with no self loops.

Deviations from the upstream featuriser, which raises ``ValueError`` on anything outside its
lists: bond directions other than the three above (the wedge/dash directions that mol files can
carry) are mapped to 0 ("none"), because they describe a drawing, not the molecule; molecules
with dummy atoms (Z = 0) or bond types other than single/double/triple/aromatic (dative, ...)
raise :class:`UnsupportedMolecule`, which the preprocessing turns into a counted, reported skip.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from graphmvp.molgraph import MolGraph

NUM_ATOM_TYPES = 119  # atomic numbers 1..119 -> indices 0..118
CHIRALITY_TAGS = (
    Chem.ChiralType.CHI_UNSPECIFIED,
    Chem.ChiralType.CHI_TETRAHEDRAL_CW,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
    Chem.ChiralType.CHI_OTHER,
)
BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
BOND_DIRS = (
    Chem.BondDir.NONE,
    Chem.BondDir.ENDUPRIGHT,
    Chem.BondDir.ENDDOWNRIGHT,
)

_CHIRALITY_INDEX = {tag: i for i, tag in enumerate(CHIRALITY_TAGS)}
_BOND_TYPE_INDEX = {bt: i for i, bt in enumerate(BOND_TYPES)}
_BOND_DIR_INDEX = {bd: i for i, bd in enumerate(BOND_DIRS)}


class UnsupportedMolecule(ValueError):
    """The molecule has an atom or bond that the Hu et al. features cannot express."""


def atom_features(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Return (atomic numbers [N] uint8, Hu et al. atom features [N, 2] uint8)."""
    n = mol.GetNumAtoms()
    z = np.empty(n, dtype=np.uint8)
    feats = np.empty((n, 2), dtype=np.uint8)
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        num = atom.GetAtomicNum()
        if num < 1 or num > NUM_ATOM_TYPES:
            raise UnsupportedMolecule(f"atom {i} has atomic number {num} (dummy or unknown atom)")
        z[i] = num
        feats[i, 0] = num - 1
        feats[i, 1] = _CHIRALITY_INDEX.get(atom.GetChiralTag(), 3)
    return z, feats


def bond_features(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Return (directed edge index [2, 2B] int64, bond features [2B, 2] uint8)."""
    nb = mol.GetNumBonds()
    index = np.empty((2, 2 * nb), dtype=np.int64)
    feats = np.empty((2 * nb, 2), dtype=np.uint8)
    for bond in mol.GetBonds():
        b = bond.GetIdx()
        btype = _BOND_TYPE_INDEX.get(bond.GetBondType())
        if btype is None:
            raise UnsupportedMolecule(
                f"bond {b} ({bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()}) has type "
                f"{bond.GetBondType()}, not single/double/triple/aromatic"
            )
        bdir = _BOND_DIR_INDEX.get(bond.GetBondDir(), 0)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        index[:, 2 * b] = (i, j)
        index[:, 2 * b + 1] = (j, i)
        feats[2 * b] = feats[2 * b + 1] = (btype, bdir)
    return index, feats


def graph_features(mol: Chem.Mol) -> MolGraph:
    """The graph of ``mol`` (with whatever hydrogens it holds as atoms), features uint8."""
    z, af = atom_features(mol)
    ei, ef = bond_features(mol)
    return MolGraph(atomic_num=z, atom_features=af, edge_index=ei, edge_features=ef)


class SmilesError(ValueError):
    """A SMILES that gives no graph; ``reason`` is one of the keys below, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


UNPARSABLE = "unparsable_smiles"
NO_ATOMS = "no_atoms"
UNSUPPORTED = "unsupported_molecule"


def parse_smiles(smiles: str) -> Chem.Mol:
    """RDKit's molecule of ``smiles`` (RDKit's own log kept quiet; the error says why)."""
    from rdkit import rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise SmilesError(UNPARSABLE, "RDKit cannot parse it")
    return mol


def downstream_graph(mol: Chem.Mol, hydrogens: str = "drop") -> MolGraph:
    """The graph of a molecule read from SMILES/SDF, as fine-tuning and ``embed`` see it.

    ``hydrogens="drop"`` keeps the atoms of the SMILES (upstream's downstream graphs);
    ``"keep"`` adds explicit hydrogens as atoms (as in GEOM-style pretraining graphs). Raises
    :class:`SmilesError` for a molecule without atoms or one the features cannot express.
    """
    if hydrogens not in ("keep", "drop"):
        raise ValueError(f"hydrogens={hydrogens!r}; allowed: keep, drop")
    if mol.GetNumAtoms() == 0:
        raise SmilesError(NO_ATOMS, "the molecule has no atoms")
    if hydrogens == "keep":
        mol = Chem.AddHs(mol)
    try:
        return graph_features(mol)
    except UnsupportedMolecule as e:
        raise SmilesError(UNSUPPORTED, str(e)) from None
