"""In-memory test molecules: a :class:`~graphmvp.data.store.Molecule` from SMILES (heavy atoms,
Hu et al. features) with ``conformers`` random conformers (positions in a 3 A box, seeded)."""

from __future__ import annotations

import numpy as np

from graphmvp.data.store import Molecule
from graphmvp.features import graph_features, parse_smiles


def molecule(smiles: str, conformers: int = 0, seed: int = 0) -> Molecule:
    f = graph_features(parse_smiles(smiles))
    n = f.atomic_num.shape[0]
    rng = np.random.default_rng(seed)
    return Molecule(
        atomic_num=f.atomic_num, atom_features=f.atom_features, edge_index=f.edge_index,
        edge_features=f.edge_features, positions=(3 * rng.random((conformers, n, 3))).astype(np.float32),
        energy=np.zeros(conformers), boltzmann_weight=np.full(conformers, 1.0),
        conf_source_index=np.arange(conformers, dtype=np.int32), smiles=smiles, source_id=smiles, candidate_index=0,
    )
