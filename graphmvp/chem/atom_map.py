"""Put labels computed on a SMILES molecule onto the atoms of a stored graph.

A store's atoms are in the order of the molecule preparation worked on (a GEOM ``rd_mol``, the
input SMILES plus hydrogens), not in the order of a molecule parsed from the store's canonical
SMILES. Labels are computed on the parsed molecule's heavy atoms and moved onto the store's heavy
atoms by matching the two heavy-atom graphs (elements and bond types, aromatic included):

1. the same order (both graphs equal as they are): identity;
2. otherwise the canonical atom ranks (RDKit ``CanonicalRankAtoms`` with ties broken) of both
   graphs, built the same way from (element, bond type) only, pair the atoms;
3. if that pairing does not carry every bond onto a bond of the same type, a substructure match
   of one graph onto the other;
4. when the two graphs differ only in aromaticity (GEOM ``rd_mol`` objects and stores prepared
   from them can carry another aromaticity model than RDKit's molecule from the canonical
   SMILES: 13% of ``geom_bench1k``, all pyridones, coumarins and the like), canonical ranks of
   the bare connectivity (elements, bonds without types) pair the atoms, and the pairing must
   carry elements and bonds onto each other with equal types wherever neither bond is aromatic
   ("aromatic-tolerant").

Every mapping is verified as stated before it is used; a molecule whose graphs differ otherwise
raises :class:`AtomMappingError`, which the builders count and report (the molecule's atoms are
then ``<other>``). :func:`map_atoms` also says which step succeeded (``identity``,
``canonical``, ``substructure``, ``aromatic_tolerant``); the builders report the counts. Labels of the refined-BRICS and GROVER
kinds are invariant under the graph's automorphisms, so any verified mapping gives the same
labels.

Hydrogens (``Z == 1`` rows of a store that keeps them) carry the label of the heavy atom they are
bonded to (:func:`hydrogen_parents`); a hydrogen without a heavy neighbour (H2) has none.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from graphmvp.features import BOND_TYPES

_BOND_TYPE_INDEX = {bt: i for i, bt in enumerate(BOND_TYPES)}


class AtomMappingError(ValueError):
    """The stored graph and the SMILES molecule's graph differ."""


def mol_graph(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers [N] int64, bonds [B, 3] int64 rows (i, j, type) with i < j) of a
    hydrogen-free molecule; type = Hu et al.'s bond-type index (0 single .. 3 aromatic, other
    RDKit types 4 + their enum value)."""
    # index loops: iterating RDKit's atom/bond sequence wrappers costs more than the work here
    n = mol.GetNumAtoms()
    z = np.fromiter((mol.GetAtomWithIdx(i).GetAtomicNum() for i in range(n)), dtype=np.int64, count=n)
    rows = []
    for b in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(b)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bt = bond.GetBondType()
        rows.append((min(i, j), max(i, j), _BOND_TYPE_INDEX.get(bt, 4 + int(bt))))
    return z, np.array(rows, dtype=np.int64).reshape(-1, 3)


def heavy_graph(atomic_num: np.ndarray, edge_index: np.ndarray, bond_type: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heavy-atom graph of a stored molecule.

    ``atomic_num`` [N], ``edge_index`` [2, E] (both directions), ``bond_type`` [E] (Hu et al.
    bond-type index). Returns (store rows of the heavy atoms [H] int64, their atomic numbers [H]
    int64, bonds [B, 3] int64 (i, j, type), i < j, in heavy-local indices).
    """
    atomic_num = np.asarray(atomic_num)
    heavy = np.flatnonzero(atomic_num != 1)
    local = np.full(atomic_num.shape[0], -1, dtype=np.int64)
    local[heavy] = np.arange(heavy.shape[0])
    src, dst = np.asarray(edge_index, dtype=np.int64)
    keep = (src < dst) & (local[src] >= 0) & (local[dst] >= 0)
    bonds = np.stack([local[src[keep]], local[dst[keep]], np.asarray(bond_type, dtype=np.int64)[keep]], axis=1)
    return heavy, atomic_num[heavy].astype(np.int64), bonds.reshape(-1, 3)


def hydrogen_parents(atomic_num: np.ndarray, edge_index: np.ndarray) -> np.ndarray:
    """For each row of a stored molecule, the row whose label it carries [N] int64: itself for a
    heavy atom, its heavy neighbour for a hydrogen, -1 for a hydrogen bonded to no heavy atom."""
    atomic_num = np.asarray(atomic_num)
    n = atomic_num.shape[0]
    parent = np.arange(n, dtype=np.int64)
    is_h = atomic_num == 1
    if not is_h.any():
        return parent
    parent[is_h] = -1
    src, dst = np.asarray(edge_index, dtype=np.int64)
    to_heavy = is_h[src] & ~is_h[dst]
    parent[src[to_heavy]] = dst[to_heavy]  # a hydrogen has one neighbour; with several, any heavy one
    return parent


def _bond_table(bonds: np.ndarray) -> np.ndarray:
    """Bonds as sorted rows (i, j, type) with i < j."""
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 3).copy()
    lo, hi = np.minimum(b[:, 0], b[:, 1]), np.maximum(b[:, 0], b[:, 1])
    b[:, 0], b[:, 1] = lo, hi
    return b[np.lexsort((b[:, 2], b[:, 1], b[:, 0]))]


AROMATIC = 3


def mapping_is_valid(perm: np.ndarray, store_z: np.ndarray, store_bonds: np.ndarray, mol_z: np.ndarray,
                     mol_bonds: np.ndarray, aromatic_tolerant: bool = False) -> bool:
    """Whether store heavy atom ``k`` -> molecule atom ``perm[k]`` carries elements and typed
    bonds onto each other (with ``aromatic_tolerant``, an aromatic bond on either side may face
    any type)."""
    perm = np.asarray(perm, dtype=np.int64)
    if perm.shape[0] != mol_z.shape[0] or len(set(perm.tolist())) != perm.shape[0]:
        return False
    if not np.array_equal(mol_z[perm], store_z):
        return False
    mapped = np.asarray(store_bonds, dtype=np.int64).reshape(-1, 3).copy()
    mapped[:, :2] = perm[mapped[:, :2]]
    a, b = _bond_table(mapped), _bond_table(mol_bonds)
    if not aromatic_tolerant:
        return np.array_equal(a, b)
    if not np.array_equal(a[:, :2], b[:, :2]):
        return False
    either_aromatic = (a[:, 2] == AROMATIC) | (b[:, 2] == AROMATIC)
    return bool(np.all(either_aromatic | (a[:, 2] == b[:, 2])))


def _skeleton(z: np.ndarray, bonds: np.ndarray, typed: bool = True) -> Chem.Mol:
    """An RDKit molecule of the bare graph: elements and bond types only (no charges, hydrogens);
    with ``typed=False`` every bond is single (connectivity only)."""
    rw = Chem.RWMol()
    for num in z.tolist():
        atom = Chem.Atom(int(num))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for i, j, t in bonds.tolist():
        if not typed:
            t = 0
        rw.AddBond(int(i), int(j), BOND_TYPES[t] if t < len(BOND_TYPES) else Chem.BondType.OTHER)
        if t == AROMATIC:
            rw.GetAtomWithIdx(int(i)).SetIsAromatic(True)
            rw.GetAtomWithIdx(int(j)).SetIsAromatic(True)
            rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def _rank_pairing(store_mol: Chem.Mol, smiles_mol: Chem.Mol) -> np.ndarray:
    store_rank = np.asarray(Chem.CanonicalRankAtoms(store_mol, breakTies=True), dtype=np.int64)
    mol_rank = np.asarray(Chem.CanonicalRankAtoms(smiles_mol, breakTies=True), dtype=np.int64)
    by_rank = np.empty_like(mol_rank)
    by_rank[mol_rank] = np.arange(mol_rank.shape[0])
    return by_rank[store_rank]


def map_atoms(store_z: np.ndarray, store_bonds: np.ndarray, mol_z: np.ndarray, mol_bonds: np.ndarray) -> tuple[np.ndarray, str]:
    """(molecule atom of each store heavy atom: int64 [H], the step that found it) (see the
    module docstring).

    ``store_z`` [H], ``store_bonds`` [B, 3] from :func:`heavy_graph`; ``mol_z``, ``mol_bonds``
    from :func:`mol_graph`. Raises :class:`AtomMappingError` when the graphs differ.
    """
    store_z = np.asarray(store_z, dtype=np.int64)
    mol_z = np.asarray(mol_z, dtype=np.int64)
    if store_z.shape[0] != mol_z.shape[0] or len(store_bonds) != len(mol_bonds):
        raise AtomMappingError(
            f"stored graph has {store_z.shape[0]} heavy atoms and {len(store_bonds)} bonds, the SMILES "
            f"{mol_z.shape[0]} and {len(mol_bonds)}"
        )
    if not np.array_equal(np.sort(store_z), np.sort(mol_z)):
        raise AtomMappingError("stored graph and SMILES have different elements")
    identity = np.arange(store_z.shape[0], dtype=np.int64)
    if mapping_is_valid(identity, store_z, store_bonds, mol_z, mol_bonds):
        return identity, "identity"
    store_mol, smiles_mol = _skeleton(store_z, store_bonds), _skeleton(mol_z, mol_bonds)
    perm = _rank_pairing(store_mol, smiles_mol)
    if mapping_is_valid(perm, store_z, store_bonds, mol_z, mol_bonds):
        return perm, "canonical"
    match = smiles_mol.GetSubstructMatch(store_mol)
    if len(match) == store_z.shape[0]:
        perm = np.asarray(match, dtype=np.int64)
        if mapping_is_valid(perm, store_z, store_bonds, mol_z, mol_bonds):
            return perm, "substructure"
    perm = _rank_pairing(_skeleton(store_z, store_bonds, typed=False), _skeleton(mol_z, mol_bonds, typed=False))
    if mapping_is_valid(perm, store_z, store_bonds, mol_z, mol_bonds, aromatic_tolerant=True):
        return perm, "aromatic_tolerant"
    raise AtomMappingError("stored graph and SMILES graph are not the same (elements, bonds, or non-aromatic bond types differ)")
