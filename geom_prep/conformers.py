"""Conformers for molecules that come without them: RDKit ETKDGv3 embedding + MMFF94 optimisation."""

from __future__ import annotations

import math
import time

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom
from rdkit.Chem import rdForceFieldHelpers as ff

from graphmvp.prep.reasons import EMBEDDING_FAILED, NO_MMFF_PARAMETERS, TIMEOUT, Skip

MMFF_MAX_ITERS = 2000
#: RDKit stops an embedding after ``EmbedParameters.timeout`` seconds (RDKit >= 2024.09); older
#: versions are only checked between the steps
RDKIT_HAS_EMBED_TIMEOUT = hasattr(rdDistGeom.EmbedParameters(), "timeout")


class Deadline:
    """A per-molecule time limit of ``seconds`` (0: none); :meth:`check` skips the molecule with
    reason ``timeout`` once it has passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds if seconds else math.inf

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, step: str) -> None:
        if self.remaining() <= 0:
            raise Skip(TIMEOUT, f"{step} went over the limit of {self.seconds:g} s per molecule (--conf-timeout)")

    def limit(self, params) -> None:
        """Give RDKit's embedding the time that is left (whole seconds, at least 1)."""
        if self.seconds and RDKIT_HAS_EMBED_TIMEOUT:
            params.timeout = max(1, math.ceil(self.remaining()))


def generate_conformers(mol: Chem.Mol, n: int, seed: int, timeout: float = 0,
                        threads: int = 1) -> tuple[Chem.Mol, np.ndarray, np.ndarray]:
    """Embed ``n`` conformers of ``mol`` (hydrogens are added) and MMFF94-optimise them.

    Returns ``(mol_h, positions [k, N_H, 3], energies [k])`` with k <= n: the explicit-H molecule
    as RDKit perceives it (MMFF typing re-perceives aromaticity in place, so it works on a copy
    and ``mol_h`` keeps RDKit's own aromatic bonds, matching the SMILES), the optimised
    coordinates in ``mol_h``'s atom order, and the MMFF94 energies in kcal/mol. Deterministic for a
    given ``seed``, whatever ``threads`` (RDKit seeds every conformer's embedding from ``seed`` and
    its index, and optimises each conformer on its own, so threads only share out the work). Raises ``Skip`` when RDKit cannot embed the molecule or
    MMFF94 has no parameters for it, and ``Skip(TIMEOUT)`` when the whole took longer than
    ``timeout`` seconds (0: no limit; RDKit's embedding is stopped at the limit, and what it
    returns then is not used).
    """
    deadline = Deadline(timeout)
    mol_h = Chem.AddHs(mol)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = int(threads)
    deadline.limit(params)
    cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n, params))
    deadline.check("ETKDGv3 embedding")
    if not cids:  # the documented fallback for hard cases: start from random coordinates
        params.useRandomCoords = True
        deadline.limit(params)
        cids = list(rdDistGeom.EmbedMultipleConfs(mol_h, n, params))
        deadline.check("embedding from random coordinates")
    if not cids:
        raise Skip(EMBEDDING_FAILED, f"ETKDGv3 found no conformer in {n} attempts")
    work = Chem.Mol(mol_h)
    if not ff.MMFFHasAllMoleculeParams(work):
        raise Skip(NO_MMFF_PARAMETERS, "MMFF94 has no parameters for an atom type of this molecule")
    results = AllChem.MMFFOptimizeMoleculeConfs(work, numThreads=int(threads), maxIters=MMFF_MAX_ITERS)
    deadline.check("MMFF94 optimisation")
    energies = np.array([e for _, e in results], dtype=np.float64)
    positions = np.stack([c.GetPositions() for c in work.GetConformers()])
    mol_h.RemoveAllConformers()
    return mol_h, positions, energies
