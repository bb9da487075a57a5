"""Refined BRICS motifs: every heavy atom gets the key of the one fragment it lies in.

The motif prediction target of the masking-design study (Yang, Thost, Ma, arXiv 2512.07064),
read as MGSSL's ``brics_decomp`` (Zhang et al., "Motif-based Graph Self-Supervised Learning for
Molecular Property Prediction", NeurIPS 2021). A bond of the heavy-atom graph is *cut* when

1. RDKit's BRICS rules cut it (``BRICS.FindBRICSBonds``; BRICS bonds are acyclic by definition,
   a ring bond is never cut);
2. it joins a ring atom and a non-ring atom;
3. one of its atoms is a non-ring atom with more than two (heavy) neighbours: such a branching
   atom becomes a singleton motif.

The motifs are the connected components of the graph without the cut bonds. This *is* the merge
rule ("merge overlapping pieces until every atom lies in exactly one motif"): ring bonds are never
cut, so a fused or spiro ring system stays whole; a non-ring bond joining two ring atoms (a
biaryl link) is cut only by BRICS, so two rings joined by a bond BRICS keeps (e.g. two
cyclohexyls) form one motif; a chain between cuts stays one motif. A molecule with no cut bond
(benzene, cyclohexane, ethanol) is one motif, an isolated atom is its own motif.
Deviation from MGSSL's code: there a branching atom is removed from an already merged piece
without re-splitting it, which can leave a disconnected "motif" (isobutane's three methyls);
here the branching atom's bonds are cut before the components are taken, so every motif is
connected. Decomposition is on the heavy-atom graph (RDKit's molecule from SMILES, hydrogens
implicit); "neighbours" in rule 3 are heavy neighbours.

Motif key: canonical Kekule SMILES of the fragment, without stereo or isotopes and without dummy
atoms for the cut bonds. The fragment is written from the kekulised molecule with
``MolFragmentToSmiles``, which writes an atom of default valence without brackets (its
hydrogens are then re-derived from the fragment's own bonds when the string is read back: the
key does not record where substituents were attached, so toluene's ring and benzene share the
key ``C1=CC=CC=C1``), and keeps charged or otherwise bracketed atoms with their charge and
hydrogen count (``[N+]``, ``[O-]``). The string is read back by RDKit and written again
canonically (Kekule form), so the key does not depend on atom order or on which Kekule structure
the parent molecule had. A fragment RDKit cannot read back (not seen on ZINC or ChEMBL) keeps its
first, parent-derived canonical string as its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import BRICS

#: version of the decomposition and key rules; stored in every vocabulary and label sidecar
MOTIF_RULES_VERSION = "refined-brics-1"


@dataclass
class MotifDecomposition:
    """Motifs of one molecule (heavy-atom graph, N atoms, F fragments).

    ``atom_fragment`` [N] int64: the fragment of each atom (fragments numbered by their smallest
    atom index); ``fragments``: the atom indices of each fragment (sorted); ``keys`` [F]: each
    fragment's canonical Kekule SMILES.
    """

    atom_fragment: np.ndarray
    fragments: list[tuple[int, ...]]
    keys: list[str]

    def atom_keys(self) -> list[str]:
        """The key of every atom's fragment [N]."""
        return [self.keys[f] for f in self.atom_fragment]


def cut_bonds(mol: Chem.Mol) -> set[int]:
    """Indices of the bonds the refined BRICS rules cut (rules 1-3 of the module docstring)."""
    cut: set[int] = set()
    for (i, j), _ in BRICS.FindBRICSBonds(mol):
        bond = mol.GetBondBetweenAtoms(i, j)
        if not bond.IsInRing():
            cut.add(bond.GetIdx())
    ring_info = mol.GetRingInfo()
    in_ring = [ring_info.NumAtomRings(a) > 0 for a in range(mol.GetNumAtoms())]
    degree = [0] * len(in_ring)
    ends = []
    for b in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(b)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        degree[i] += 1
        degree[j] += 1
        ends.append((b, i, j))
    for b, i, j in ends:
        if in_ring[i] != in_ring[j]:
            cut.add(b)
        elif not in_ring[i] and (degree[i] > 2 or degree[j] > 2):
            cut.add(b)
    return cut


def fragment_components(mol: Chem.Mol, cut: set[int]) -> np.ndarray:
    """Connected components of ``mol`` without the ``cut`` bonds: component per atom [N] int64,
    numbered in order of their smallest atom index."""
    n = mol.GetNumAtoms()
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for b in range(mol.GetNumBonds()):
        if b in cut:
            continue
        bond = mol.GetBondWithIdx(b)
        ra, rb = find(bond.GetBeginAtomIdx()), find(bond.GetEndAtomIdx())
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest atom index
    roots = [find(a) for a in range(n)]
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=np.int64)


@lru_cache(maxsize=1 << 16)
def canonical_fragment_key(fragment_smiles: str) -> str:
    """Canonical Kekule SMILES (no stereo) of a fragment SMILES written from a parent molecule;
    the input itself when RDKit cannot read it back."""
    with rdBase.BlockLogs():
        frag = Chem.MolFromSmiles(fragment_smiles)
    if frag is None:
        return fragment_smiles
    return Chem.MolToSmiles(frag, kekuleSmiles=True, isomericSmiles=False)


def _kekulized(mol: Chem.Mol) -> Chem.Mol:
    kek = Chem.Mol(mol)
    Chem.Kekulize(kek, clearAromaticFlags=True)
    return kek


def fragment_key(kekulized_mol: Chem.Mol, atoms: tuple[int, ...]) -> str:
    """Key of the fragment ``atoms`` of a kekulised molecule (see the module docstring)."""
    if len(atoms) == 1:
        # a single atom is written from its own properties only: cache on them (2/3 of the
        # fragments of ZINC molecules are single atoms)
        atom = kekulized_mol.GetAtomWithIdx(atoms[0])
        return _single_atom_key(
            kekulized_mol, atoms[0], atom.GetAtomicNum(), atom.GetFormalCharge(), atom.GetNumRadicalElectrons(),
            atom.GetTotalNumHs(), atom.GetTotalValence(), atom.GetNoImplicit(),
        )
    written = Chem.MolFragmentToSmiles(
        kekulized_mol, atomsToUse=list(atoms), kekuleSmiles=True, isomericSmiles=False, canonical=True
    )
    return canonical_fragment_key(written)


_SINGLE_ATOM_KEYS: dict[tuple, str] = {}


def _single_atom_key(kekulized_mol: Chem.Mol, index: int, *properties) -> str:
    key = _SINGLE_ATOM_KEYS.get(properties)
    if key is None:
        written = Chem.MolFragmentToSmiles(kekulized_mol, atomsToUse=[index], kekuleSmiles=True, isomericSmiles=False)
        key = _SINGLE_ATOM_KEYS[properties] = canonical_fragment_key(written)
    return key


def motif_decomposition(mol: Chem.Mol) -> MotifDecomposition:
    """Refined BRICS decomposition of ``mol``'s heavy-atom graph.

    ``mol``: a sanitised RDKit molecule (e.g. from SMILES). Explicit hydrogen atoms, if any, are
    removed first, so atom indices refer to ``Chem.RemoveAllHs(mol)``; pass a hydrogen-free
    molecule to keep its numbering.
    """
    if mol.GetNumHeavyAtoms() != mol.GetNumAtoms():
        mol = Chem.RemoveAllHs(mol)
    n = mol.GetNumAtoms()
    if n == 0:
        return MotifDecomposition(np.zeros(0, dtype=np.int64), [], [])
    atom_fragment = fragment_components(mol, cut_bonds(mol))
    fragments: list[list[int]] = [[] for _ in range(int(atom_fragment.max()) + 1)]
    for atom, frag in enumerate(atom_fragment.tolist()):
        fragments[frag].append(atom)
    kek = _kekulized(mol)
    frozen = [tuple(f) for f in fragments]
    return MotifDecomposition(atom_fragment, frozen, [fragment_key(kek, f) for f in frozen])


def motif_labels(mol: Chem.Mol) -> tuple[np.ndarray, list[str]]:
    """(fragment of each heavy atom [N] int64, key of each fragment [F]): see
    :func:`motif_decomposition`."""
    d = motif_decomposition(mol)
    return d.atom_fragment, d.keys
