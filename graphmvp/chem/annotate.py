"""Label many molecules: from a store (labels aligned with its atom rows) or from SMILES strings
(key counts only, for a vocabulary), in chunks, on several worker processes.

Per molecule: parse the SMILES (:func:`graphmvp.features.parse_smiles`), remove explicit
hydrogens, compute every requested kind (:mod:`graphmvp.chem.kinds`) on the heavy-atom molecule,
and, for a stored molecule, move atom-level keys onto the store's rows
(:mod:`graphmvp.chem.atom_map`: heavy atoms by graph matching, hydrogens from their heavy atom).

Nothing is dropped silently: a molecule that cannot be parsed, whose stored graph differs from
its SMILES, or on which a kind's computation raises, is recorded in ``failures`` with a reason
(``unparsable_smiles``, ``no_atoms``, ``atom_mapping``, ``<kind>_error``); its atom-level labels
are "none" (``<other>`` once encoded), its molecule-level flags zero and marked invalid.

Results do not depend on the number of workers: chunks are merged in input order and
vocabularies sort their keys by count.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
from rdkit import Chem

from graphmvp.chem.atom_map import AtomMappingError, heavy_graph, hydrogen_parents, map_atoms, mol_graph
from graphmvp.chem.kinds import AtomLabelKind, MoleculeLabelKind, label_kind
from graphmvp.chem.vocab import DEFAULT_MIN_COUNT, KeyCounts, Vocabulary, VocabularyError
from graphmvp.features import SmilesError, parse_smiles

ATOM_MAPPING = "atom_mapping"
#: molecules per unit of work
DEFAULT_CHUNK_SIZE = 256


@dataclass
class Failure:
    """One molecule that one kind could not label."""

    index: int  # molecule index in the store, or position in the SMILES list
    kind: str
    reason: str
    detail: str
    smiles: str


@dataclass
class AtomKeys:
    """One molecule's keys of an atom-level kind: distinct ``keys`` [K] with their
    ``occurrences`` [K] and heavy ``atoms`` [K]; ``heavy_key`` [H] indexes ``keys`` per heavy
    atom (of the parsed molecule)."""

    keys: list[str]
    occurrences: np.ndarray
    atoms: np.ndarray
    heavy_key: np.ndarray


def atom_keys(kind: AtomLabelKind, mol: Chem.Mol) -> AtomKeys:
    """Keys of ``kind`` on a hydrogen-free molecule, grouped for counting."""
    atom_group, group_keys = kind.groups(mol)
    index: dict[str, int] = {}
    group_key = np.array([index.setdefault(k, len(index)) for k in group_keys], dtype=np.int64)
    heavy_key = group_key[atom_group] if len(group_keys) else np.zeros(0, dtype=np.int64)
    return AtomKeys(
        keys=list(index),
        occurrences=np.bincount(group_key, minlength=len(index)),
        atoms=np.bincount(heavy_key, minlength=len(index)),
        heavy_key=heavy_key,
    )


def heavy_molecule(smiles: str) -> Chem.Mol:
    """RDKit's molecule of ``smiles`` without hydrogen atoms; SmilesError when it has none."""
    mol = parse_smiles(smiles)
    if mol.GetNumHeavyAtoms() != mol.GetNumAtoms():
        mol = Chem.RemoveAllHs(mol)
    if mol.GetNumAtoms() == 0:
        raise SmilesError("no_atoms", "the molecule has no heavy atoms")
    return mol


# ------------------------------------------------------------------------------- chunk results
@dataclass
class AtomChunk:
    """Accumulated keys of one atom-level kind over a chunk of molecules.

    ``keys`` are chunk-local; ``row_key`` [A_chunk] int32 indexes them per store row (-1: no
    label), only for stored molecules; ``valid`` [M_chunk] uint8.
    """

    keys: list[str] = field(default_factory=list)
    occurrences: list[int] = field(default_factory=list)
    atoms: list[int] = field(default_factory=list)
    row_key: np.ndarray | None = None
    valid: np.ndarray | None = None
    _index: dict = field(default_factory=dict, repr=False)

    def add(self, keys: AtomKeys) -> np.ndarray:
        """Add one molecule's keys; return their chunk-local indices [K]."""
        local = np.empty(len(keys.keys), dtype=np.int64)
        for i, key in enumerate(keys.keys):
            j = self._index.get(key)
            if j is None:
                j = self._index[key] = len(self.keys)
                self.keys.append(key)
                self.occurrences.append(0)
                self.atoms.append(0)
            self.occurrences[j] += int(keys.occurrences[i])
            self.atoms[j] += int(keys.atoms[i])
            local[i] = j
        return local


@dataclass
class MoleculeChunk:
    """Flags of one molecule-level kind over a chunk: ``flags`` [M_chunk, F] uint8, ``valid``."""

    flags: np.ndarray
    valid: np.ndarray


@dataclass
class ChunkResult:
    start: int
    stop: int
    atom: dict[str, AtomChunk]
    molecule: dict[str, MoleculeChunk]
    failures: list[Failure]
    n_heavy: int  # heavy atoms of the chunk (of parsed molecules when there is no store)
    mapping: Counter  # molecules per atom-mapping step (stored molecules)


def _label_chunk(smiles: Sequence[str], start: int, kinds: Sequence[str], graphs=None) -> ChunkResult:
    """Label ``smiles[k]`` (molecule ``start + k``); ``graphs`` (store input) yields per molecule
    (atomic_num [N], edge_index [2, E], bond_type [E]) and the row offset of its atoms."""
    m = len(smiles)
    atom_kinds = {k: label_kind(k) for k in kinds if isinstance(label_kind(k), AtomLabelKind)}
    mol_kinds = {k: label_kind(k) for k in kinds if isinstance(label_kind(k), MoleculeLabelKind)}
    n_rows = int(graphs["offset"][-1]) if graphs is not None else 0
    atom = {}
    for name in atom_kinds:
        atom[name] = AtomChunk(valid=np.zeros(m, dtype=np.uint8))
        if graphs is not None:
            atom[name].row_key = np.full(n_rows, -1, dtype=np.int32)
    molecule = {name: MoleculeChunk(np.zeros((m, len(kind.names)), dtype=np.uint8), np.zeros(m, dtype=np.uint8))
                for name, kind in mol_kinds.items()}
    failures: list[Failure] = []
    n_heavy = 0
    mapping: Counter = Counter()

    def fail(k: int, names, reason: str, detail: str) -> None:
        failures.extend(Failure(start + k, name, reason, detail, smiles[k]) for name in names)

    for k, smi in enumerate(smiles):
        graph = None
        if graphs is not None:
            a0, a1 = int(graphs["offset"][k]), int(graphs["offset"][k + 1])
            graph = graphs["molecule"](k)
            n_heavy += int(np.count_nonzero(graph[0] != 1))
        try:
            mol = heavy_molecule(smi)
        except SmilesError as e:
            fail(k, kinds, e.reason, str(e))
            continue
        if graph is None:
            n_heavy += mol.GetNumAtoms()
        for name, kind in mol_kinds.items():
            try:
                molecule[name].flags[k] = kind.flags(mol)
                molecule[name].valid[k] = 1
            except Exception as e:  # noqa: BLE001 - any RDKit failure on one molecule is recorded, not fatal
                fail(k, [name], f"{name}_error", f"{type(e).__name__}: {e}")
        if not atom_kinds:
            continue
        perm = parents = heavy_rows = None
        if graph is not None:
            try:
                heavy_rows, store_z, store_bonds = heavy_graph(*graph)
                mol_z, mol_bonds = mol_graph(mol)
                perm, step = map_atoms(store_z, store_bonds, mol_z, mol_bonds)
            except AtomMappingError as e:
                mapping["failed"] += 1
                fail(k, atom_kinds, ATOM_MAPPING, str(e))
                continue
            mapping[step] += 1
            parents = hydrogen_parents(graph[0], graph[1])
        for name, kind in atom_kinds.items():
            try:
                keys = atom_keys(kind, mol)
            except Exception as e:  # noqa: BLE001 - see above
                fail(k, [name], f"{name}_error", f"{type(e).__name__}: {e}")
                continue
            local = atom[name].add(keys)
            atom[name].valid[k] = 1
            if graph is not None:
                rows = np.full(a1 - a0, -1, dtype=np.int64)
                rows[heavy_rows] = local[keys.heavy_key[perm]]
                has_parent = parents >= 0
                rows[has_parent] = rows[parents[has_parent]]
                atom[name].row_key[a0:a1] = rows
    for chunk in atom.values():
        chunk._index = {}
    return ChunkResult(start, start + m, atom, molecule, failures, n_heavy, mapping)


# ------------------------------------------------------------------------------- store chunks
_OPEN: dict = {}


def _store_file(path: str) -> h5py.File:
    """The store opened read-only in this process (h5py handles must not cross a fork)."""
    key = (os.getpid(), path)
    f = _OPEN.get(key)
    if f is None:
        f = _OPEN[key] = h5py.File(path, "r")
    return f


def _close_store_files() -> None:
    for key in [k for k in _OPEN if k[0] == os.getpid()]:
        _OPEN.pop(key).close()


def label_store_chunk(path: str, start: int, stop: int, kinds: Sequence[str]) -> ChunkResult:
    """Label molecules ``start:stop`` of the store at ``path``; ``row_key`` is aligned with
    the chunk's atom rows (``atom_offset[start]:atom_offset[stop]``)."""
    f = _store_file(path)
    a_off = f["molecules/atom_offset"][start : stop + 1].astype(np.int64)
    e_off = f["molecules/edge_offset"][start : stop + 1].astype(np.int64)
    z = f["atoms/atomic_num"][a_off[0] : a_off[-1]]
    edges = f["edges/index"][e_off[0] : e_off[-1]]
    bond_type = f["edges/features"][e_off[0] : e_off[-1], 0]
    smiles = f["molecules/smiles"].asstr()[start:stop]
    a_rel, e_rel = a_off - a_off[0], e_off - e_off[0]

    def molecule(k: int):
        e0, e1 = e_rel[k], e_rel[k + 1]
        return z[a_rel[k] : a_rel[k + 1]], edges[e0:e1].T.astype(np.int64), bond_type[e0:e1]

    return _label_chunk(list(smiles), start, kinds, {"offset": a_rel, "molecule": molecule})


def label_smiles_chunk(smiles: Sequence[str], start: int, kinds: Sequence[str]) -> ChunkResult:
    """Label a list of SMILES (no store): keys and counts only."""
    return _label_chunk(list(smiles), start, kinds)


# ------------------------------------------------------------------------------- whole inputs
@dataclass
class ScanResult:
    """Everything a scan gathered, merged in input order.

    Per atom-level kind: ``counts`` (a :class:`KeyCounts` ready for a vocabulary), ``keys``
    (global key list) and, for a store, ``row_key`` [A] int32 (index into ``keys``, -1: none)
    and ``valid`` [M]. Per molecule-level kind: ``flags`` [M, F] uint8 and ``valid`` [M].
    """

    n_molecules: int
    counts: dict[str, KeyCounts]
    keys: dict[str, list[str]]
    row_key: dict[str, np.ndarray]
    atom_valid: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    flag_valid: dict[str, np.ndarray]
    failures: list[Failure]
    seconds: float
    mapping: Counter  # stored molecules per atom-mapping step (identity, canonical, ..., failed)

    @property
    def molecules_per_second(self) -> float:
        return self.n_molecules / self.seconds if self.seconds > 0 else float("inf")


class _Merger:
    def __init__(self, n_molecules: int, n_rows: int | None, kinds: Sequence[str]):
        self.atom_kinds = [k for k in kinds if isinstance(label_kind(k), AtomLabelKind)]
        self.mol_kinds = [k for k in kinds if isinstance(label_kind(k), MoleculeLabelKind)]
        self.counts = {k: KeyCounts(n_molecules=n_molecules) for k in self.atom_kinds}
        self.keys: dict[str, list[str]] = {k: [] for k in self.atom_kinds}
        self.index: dict[str, dict[str, int]] = {k: {} for k in self.atom_kinds}
        self.row_key = {k: np.full(n_rows, -1, dtype=np.int32) for k in self.atom_kinds} if n_rows is not None else {}
        self.atom_valid = {k: np.zeros(n_molecules, dtype=np.uint8) for k in self.atom_kinds}
        self.flags = {k: np.zeros((n_molecules, len(label_kind(k).names)), dtype=np.uint8) for k in self.mol_kinds}
        self.flag_valid = {k: np.zeros(n_molecules, dtype=np.uint8) for k in self.mol_kinds}
        self.failures: list[Failure] = []
        self.mapping: Counter = Counter()
        self.done = 0

    def add(self, r: ChunkResult, row_start: int | None) -> None:
        for name in self.atom_kinds:
            chunk, counts, index, keys = r.atom[name], self.counts[name], self.index[name], self.keys[name]
            glob = np.empty(len(chunk.keys) + 1, dtype=np.int32)
            glob[-1] = -1  # local -1 stays -1
            for j, key in enumerate(chunk.keys):
                g = index.get(key)
                if g is None:
                    g = index[key] = len(keys)
                    keys.append(key)
                glob[j] = g
                counts.counts[key] += chunk.occurrences[j]
                counts.atoms[key] += chunk.atoms[j]
            counts.n_atoms += r.n_heavy
            self.atom_valid[name][r.start : r.stop] = chunk.valid
            if chunk.row_key is not None and row_start is not None:
                self.row_key[name][row_start : row_start + chunk.row_key.shape[0]] = glob[chunk.row_key]
        for name in self.mol_kinds:
            self.flags[name][r.start : r.stop] = r.molecule[name].flags
            self.flag_valid[name][r.start : r.stop] = r.molecule[name].valid
        for fl in r.failures:
            if fl.kind in self.counts:
                self.counts[fl.kind].add_failure(fl.reason, fl.index, fl.smiles, fl.detail)
        self.failures.extend(r.failures)
        self.mapping.update(r.mapping)
        self.done += r.stop - r.start

    def result(self, n_molecules: int, seconds: float) -> ScanResult:
        return ScanResult(n_molecules, self.counts, self.keys, self.row_key, self.atom_valid, self.flags,
                          self.flag_valid, self.failures, seconds, self.mapping)


def _run(tasks: list, worker: Callable, workers: int, on_result: Callable, progress: Callable | None) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            on_result(worker(*t))
            if progress:
                progress()
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(min(workers, len(tasks))) as pool:
        for r in pool.imap(_star, [(worker, t) for t in tasks]):
            on_result(r)
            if progress:
                progress()


def _star(job):
    worker, args = job
    return worker(*args)


def scan_store(path: str | os.PathLike, kinds: Sequence[str], workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
               progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Label every molecule of the store at ``path`` with ``kinds``.

    ``progress(done, total)`` is called after each chunk. Memory: 4 bytes per store row per
    atom-level kind, plus 1 byte per molecule and flag per molecule-level kind.
    """
    path = str(path)
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        atom_offset = f["molecules/atom_offset"][:].astype(np.int64)
    n = atom_offset.shape[0] - 1
    merger = _Merger(n, int(atom_offset[-1]), kinds)
    tasks = [(path, s, min(s + chunk_size, n), tuple(kinds)) for s in range(0, n, chunk_size)]
    try:
        _run(tasks, label_store_chunk, workers, lambda r: merger.add(r, int(atom_offset[r.start])),
             (lambda: progress(merger.done, n)) if progress else None)
    finally:
        _close_store_files()  # a store rewritten at the same path must be read afresh next time
    return merger.result(n, time.perf_counter() - t0)


def scan_smiles(smiles: Sequence[str], kinds: Sequence[str], workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
                progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Label a list of SMILES with ``kinds`` (counts and flags; no store rows)."""
    t0 = time.perf_counter()
    smiles = list(smiles)
    n = len(smiles)
    merger = _Merger(n, None, kinds)
    tasks = [(smiles[s : s + chunk_size], s, tuple(kinds)) for s in range(0, n, chunk_size)]
    _run(tasks, label_smiles_chunk, workers, lambda r: merger.add(r, None),
         (lambda: progress(merger.done, n)) if progress else None)
    return merger.result(n, time.perf_counter() - t0)


def vocabulary_from_smiles_file(
    path: str | os.PathLike,
    kind: str = "motif",
    min_count: int = DEFAULT_MIN_COUNT,
    workers: int = 1,
    smiles_col: str | None = None,
    n_mol: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Vocabulary, ScanResult]:
    """Vocabulary of an atom-level ``kind`` over a SMILES file (CSV with a SMILES column, .smi,
    gzipped or not; read by ``geom_prep``'s reader), optionally its first ``n_mol`` molecules.

    Unparsable SMILES are counted as failures (listed by ``file:line`` in the vocabulary), not
    fatal. Raises :class:`VocabularyError` for a file without molecules and ``geom_prep``'s
    ``PrepError`` for one that cannot be read.
    """
    from graphmvp.prep.sources.smiles import read_smiles_file  # geom_prep builds on graphmvp: import late

    spec = label_kind(kind)
    if not isinstance(spec, AtomLabelKind):
        raise VocabularyError(f"'{kind}' is a molecule-level kind: it has a fixed list of names, not a vocabulary")
    if n_mol is not None and n_mol < 1:
        raise VocabularyError(f"n_mol must be >= 1, not {n_mol}")
    path = Path(path)
    rows = read_smiles_file(path, smiles_col)
    if n_mol is not None:
        rows = rows[:n_mol]
    if not rows:
        raise VocabularyError(f"{path}: no molecules")
    scan = scan_smiles([smi for _, smi in rows], (kind,), workers=workers, chunk_size=chunk_size, progress=progress)
    counts = scan.counts[kind]
    for example in counts.failure_examples:
        example["index"] = f"{path.name}:{rows[example['index']][0]}"
    source = {"smiles_file": str(path.resolve()), "file_bytes": path.stat().st_size, "n_mol": n_mol,
              "smiles_col": smiles_col}
    return Vocabulary.build(kind, spec.rules_version, counts, min_count, source), scan
