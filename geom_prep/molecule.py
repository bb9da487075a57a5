"""Per-molecule steps shared by every source: conformer order, graph check, featurisation."""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from graphmvp.data.store import BOLTZMANN_KCAL, Molecule
from graphmvp.features import UnsupportedMolecule, graph_features
from graphmvp.prep.reasons import UNSUPPORTED_MOLECULE, Skip

ROOM_TEMPERATURE = 298.15


def conformer_order(energy: np.ndarray, weight: np.ndarray, rule: str) -> np.ndarray:
    """Indices of conformers in the order they are taken.

    ``energy``: lowest total energy first; ``boltzmann``: highest Boltzmann weight first;
    ``file``: as stored. Sorting is stable, so ties keep file order.
    """
    if rule == "energy":
        return np.argsort(np.asarray(energy, dtype=np.float64), kind="stable")
    if rule == "boltzmann":
        return np.argsort(-np.asarray(weight, dtype=np.float64), kind="stable")
    if rule == "file":
        return np.arange(len(energy))
    raise ValueError(f"unknown conformer rule '{rule}' (known: energy, boltzmann, file)")


def boltzmann_weights(energy_kcal: np.ndarray, temperature: float = ROOM_TEMPERATURE) -> np.ndarray:
    """p_i = exp(-(E_i - E_min) / kT) / sum_j exp(-(E_j - E_min) / kT), energies in kcal/mol."""
    e = np.asarray(energy_kcal, dtype=np.float64)
    w = np.exp(-(e - e.min()) / (BOLTZMANN_KCAL * temperature))
    return w / w.sum()


def graph_key(mol: Chem.Mol) -> str:
    """Canonical SMILES of the heavy-atom graph (elements, bonds, charges; stereo ignored).

    Two conformers of one molecule have the same key; a dissociated, rearranged or
    re-protonated conformer does not.
    """
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def graph_signature(mol: Chem.Mol) -> tuple:
    """Elements, formal charges and bond-order adjacency in atom order.

    Equal signatures mean the same graph with the same atom numbering (so positions can be used
    as they are). About 6x cheaper than :func:`graph_key`, which is only needed when the
    signatures of two conformers differ.
    """
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]
    return tuple((a.GetAtomicNum(), a.GetFormalCharge()) for a in atoms), Chem.GetAdjacencyMatrix(mol, useBO=True).tobytes()


def matched_positions(ref: Chem.Mol, mol: Chem.Mol) -> np.ndarray | None:
    """Positions of ``mol``'s conformer in ``ref``'s atom order (same graph, other numbering),
    or None when no atom mapping exists."""
    if mol.GetNumAtoms() != ref.GetNumAtoms():
        return None
    match = mol.GetSubstructMatch(ref)
    if len(match) != ref.GetNumAtoms():
        return None
    return mol.GetConformer().GetPositions()[list(match)]


def heavy_atom_view(mol: Chem.Mol) -> tuple[Chem.Mol, np.ndarray]:
    """(mol without hydrogens, indices of its atoms in ``mol``); RemoveHs keeps relative order."""
    tagged = Chem.Mol(mol)
    for atom in tagged.GetAtoms():
        atom.SetIntProp("_orig_idx", atom.GetIdx())
    heavy = Chem.RemoveHs(tagged)
    idx = np.array([a.GetIntProp("_orig_idx") for a in heavy.GetAtoms()], dtype=np.int64)
    return heavy, idx


def build_molecule(
    mol_h: Chem.Mol,
    positions: np.ndarray,
    energy: np.ndarray,
    weight: np.ndarray,
    source_index: np.ndarray,
    hydrogens: str,
    smiles: str,
    source_id: str,
    candidate_index: int,
) -> Molecule:
    """Featurise ``mol_h`` (explicit H) and attach the selected conformers.

    ``positions`` [C, N_H, 3] are in ``mol_h``'s atom order; with ``hydrogens="drop"`` the graph
    and positions are reduced to the atoms that ``Chem.RemoveHs`` keeps.
    """
    feat_mol = mol_h
    pos = np.asarray(positions, dtype=np.float32)
    if hydrogens == "drop":
        feat_mol, idx = heavy_atom_view(mol_h)
        pos = pos[:, idx]
    try:
        g = graph_features(feat_mol)
    except UnsupportedMolecule as e:
        raise Skip(UNSUPPORTED_MOLECULE, str(e)) from None
    return Molecule.from_graph(
        g,
        positions=pos,
        energy=np.asarray(energy, dtype=np.float64),
        boltzmann_weight=np.asarray(weight, dtype=np.float64),
        conf_source_index=np.asarray(source_index, dtype=np.int32),
        smiles=smiles,
        source_id=source_id,
        candidate_index=candidate_index,
    )


def exclusion_key(mol: Chem.Mol, ignore_stereo: bool = False) -> str:
    """The key by which ``--exclude`` matches a molecule against the downstream sets: RDKit
    canonical SMILES of ``mol`` as it is (hydrogens not removed), without stereo when
    ``ignore_stereo`` (``--exclude-ignore-stereo``)."""
    return Chem.MolToSmiles(mol, isomericSmiles=not ignore_stereo)


def canonical_smiles(mol: Chem.Mol, isomeric: bool = True) -> str:
    """RDKit canonical SMILES of the heavy-atom molecule."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=isomeric)
