"""Conformers for molecules that come without them: RDKit ETKDGv3 embedding + MMFF94 optimisation."""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom
from rdkit.Chem import rdForceFieldHelpers as ff

from geom_prep.reasons import EMBEDDING_FAILED, NO_MMFF_PARAMETERS, Skip

MMFF_MAX_ITERS = 2000


def generate_conformers(mol: Chem.Mol, n: int, seed: int) -> tuple[Chem.Mol, np.ndarray, np.ndarray]:
    """Embed ``n`` conformers of ``mol`` (hydrogens are added) and MMFF94-optimise them.

    Returns ``(mol_h, positions [k, N_H, 3], energies [k])`` with k <= n: the explicit-H molecule
    as RDKit perceives it (MMFF typing re-perceives aromaticity in place, so it works on a copy
    and ``mol_h`` keeps RDKit's own aromatic bonds, matching the SMILES), the optimised
    coordinates in ``mol_h``'s atom order, and the MMFF94 energies in kcal/mol. Deterministic for a
    given ``seed`` (single-threaded). Raises ``Skip`` when RDKit cannot embed the molecule or
    MMFF94 has no parameters for it.
    """
    mol_h = Chem.AddHs(mol)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n, params))
    if not cids:  # the documented fallback for hard cases: start from random coordinates
        params.useRandomCoords = True
        cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n, params))
    if not cids:
        raise Skip(EMBEDDING_FAILED, f"ETKDGv3 found no conformer in {n} attempts")
    work = Chem.Mol(mol_h)
    if not ff.MMFFHasAllMoleculeParams(work):
        raise Skip(NO_MMFF_PARAMETERS, "MMFF94 has no parameters for an atom type of this molecule")
    results = AllChem.MMFFOptimizeMoleculeConfs(work, numThreads=1, maxIters=MMFF_MAX_ITERS)
    energies = np.array([e for _, e in results], dtype=np.float64)
    positions = np.stack([c.GetPositions() for c in work.GetConformers()])
    mol_h.RemoveAllConformers()
    return mol_h, positions, energies
