"""Conformers for molecules that come without them: RDKit ETKDGv3 embedding + MMFF94 optimisation."""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom
from rdkit.Chem import rdForceFieldHelpers as ff

from geom_prep.reasons import EMBEDDING_FAILED, NO_MMFF_PARAMETERS, Skip

MMFF_MAX_ITERS = 2000


def generate_conformers(mol: Chem.Mol, n: int, seed: int) -> tuple[Chem.Mol, np.ndarray]:
    """Embed ``n`` conformers of ``mol`` (hydrogens are added) and MMFF94-optimise them.

    Returns the explicit-H molecule holding the conformers (ids 0..k-1, k <= n) and their MMFF94
    energies in kcal/mol. Deterministic for a given ``seed`` (single-threaded embedding).
    Raises ``Skip`` when RDKit cannot embed the molecule or MMFF94 has no parameters for it.
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
    if not ff.MMFFHasAllMoleculeParams(mol_h):
        raise Skip(NO_MMFF_PARAMETERS, "MMFF94 has no parameters for an atom type of this molecule")
    results = AllChem.MMFFOptimizeMoleculeConfs(mol_h, numThreads=1, maxIters=MMFF_MAX_ITERS)
    energies = np.array([e for _, e in results], dtype=np.float64)
    return mol_h, energies
