"""Chemprop-style categorical atom and bond descriptors, beside Hu et al.'s features.

Hu et al.'s features (:mod:`graphmvp.features`) give a GIN the element and chirality of each atom
and the type and direction of each bond, nothing more: the degree, charge, hydrogens or
aromaticity of an atom must be inferred from its neighbourhood. chemprop's D-MPNN is given those
directly, and on FreeSolv and ESOL that input alone was worth most of chemprop's lead over our
GIN (``docs/benchmarks.md``, "Side by side": chemprop fed only Hu's features loses 33% on
FreeSolv). These are chemprop's (v2, ``MultiHotAtomFeaturizer.v2``/``MultiHotBondFeaturizer``)
categorical features that Hu's lack, each as a small integer index ("other" = the last index):

=============================  =======  ===========================================================
atom descriptor                indices  values
=============================  =======  ===========================================================
``degree``                     0..6     heavy and explicit-H neighbours 0..5; 6 = more
``formal_charge``              0..5     charge -2..+2 -> 0..4; 5 = other
``num_hs``                     0..5     total hydrogens (implicit + explicit) 0..4; 5 = more
``hybridization``              0..7     S, SP, SP2, SP2D, SP3, SP3D, SP3D2; 7 = other/unspecified
``aromatic``                   0..1
=============================  =======  ===========================================================

=============================  =======  ===========================================================
bond descriptor                indices  values
=============================  =======  ===========================================================
``conjugated``                 0..1
``in_ring``                    0..1
``stereo``                     0..6     STEREONONE, ANY, Z, E, CIS, TRANS; 6 = other
=============================  =======  ===========================================================

Rows follow the molecule graph of :func:`graphmvp.features.graph_features` exactly: atom ``i`` is
row ``i``; bond ``b`` gives directed edges ``2b`` and ``2b + 1``, both with the bond's row. They
are computed from the same RDKit molecule as the graph (hydrogens added or not), which is why the
fine-tuning featuriser computes both in one pass (:func:`graphmvp.finetune.data.featurise_rows`).
``VERSION`` changes whenever a value would; stores and saved models record it.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

VERSION = 1

_HYBRIDIZATIONS = (
    Chem.HybridizationType.S,
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP2D,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
    Chem.HybridizationType.SP3D2,
)
_HYBRIDIZATION_INDEX = {h: i for i, h in enumerate(_HYBRIDIZATIONS)}
_STEREOS = (
    Chem.BondStereo.STEREONONE,
    Chem.BondStereo.STEREOANY,
    Chem.BondStereo.STEREOZ,
    Chem.BondStereo.STEREOE,
    Chem.BondStereo.STEREOCIS,
    Chem.BondStereo.STEREOTRANS,
)
_STEREO_INDEX = {s: i for i, s in enumerate(_STEREOS)}

#: atom descriptor name -> number of indices (the size of its embedding table)
ATOM_DESCRIPTORS: dict[str, int] = {"degree": 7, "formal_charge": 6, "num_hs": 6, "hybridization": 8, "aromatic": 2}
#: bond descriptor name -> number of indices
BOND_DESCRIPTORS: dict[str, int] = {"conjugated": 2, "in_ring": 2, "stereo": 7}


def _capped(value: int, top: int) -> int:
    """``value`` in 0..top-1, anything above -> ``top`` (the "more" index)."""
    return value if 0 <= value < top else top


def atom_descriptors(mol: Chem.Mol) -> np.ndarray:
    """uint8 [N, len(ATOM_DESCRIPTORS)], columns in the order of :data:`ATOM_DESCRIPTORS`."""
    out = np.empty((mol.GetNumAtoms(), len(ATOM_DESCRIPTORS)), dtype=np.uint8)
    for atom in mol.GetAtoms():
        charge = atom.GetFormalCharge()
        out[atom.GetIdx()] = (
            _capped(atom.GetTotalDegree(), 6),
            charge + 2 if -2 <= charge <= 2 else 5,
            _capped(atom.GetTotalNumHs(), 5),
            _HYBRIDIZATION_INDEX.get(atom.GetHybridization(), 7),
            int(atom.GetIsAromatic()),
        )
    return out


def bond_descriptors(mol: Chem.Mol) -> np.ndarray:
    """uint8 [2B, len(BOND_DESCRIPTORS)]: bond ``b`` on rows ``2b`` and ``2b + 1``."""
    out = np.empty((2 * mol.GetNumBonds(), len(BOND_DESCRIPTORS)), dtype=np.uint8)
    for bond in mol.GetBonds():
        b = bond.GetIdx()
        out[2 * b] = out[2 * b + 1] = (
            int(bond.GetIsConjugated()),
            int(bond.IsInRing()),
            _STEREO_INDEX.get(bond.GetStereo(), 6),
        )
    return out


def describe() -> dict:
    """What stores and saved models record: the version and the tables' names and sizes."""
    return {"version": VERSION, "atom": dict(ATOM_DESCRIPTORS), "bond": dict(BOND_DESCRIPTORS)}


__all__ = ["ATOM_DESCRIPTORS", "BOND_DESCRIPTORS", "VERSION", "atom_descriptors", "bond_descriptors", "describe"]
