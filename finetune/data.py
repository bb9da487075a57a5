"""Downstream molecule data: finding the file, reading its labels, featurising, caching.

Where the data file comes from (:func:`locate_data_file`), first match wins:

1. ``data_file``: a local file given by the user (``--data-file``);
2. ``chem_dataset``: Hu et al.'s unpacked ``chem_dataset`` bundle; the task's raw file is looked up
   as ``<root>[/dataset]/<dir>/raw/<file>[.gz]`` (only the raw CSV is read; the bundle's ``.pt``
   files are old PyG pickles). Its ``processed/smiles.csv``, when present, gives the number of
   molecules Hu et al. kept, reported next to ours;
3. the download cache ``$GRAPHMVP_HOME/datasets/<file>`` (default ``~/.cache/graphmvp``),
   fetched with :func:`graphmvp.download.download` (progress bar, resume, atomic, clear offline
   error). A task's SHA-256, when not in the registry, is recorded in
   ``datasets/sha256.json`` on the first successful download and verified on every later one.
   ``$GRAPHMVP_DATASETS_MIRROR`` (a base URL or folder) is tried before the registry's URLs.

Reading (:func:`read_table`): CSV, gzipped CSV (``.gz``) or SDF (``.sdf``, ``.sdf.gz``; labels are
SDF properties). Every cell is read as text; empty cells (and ``nan``/``NA``) are missing labels
(NaN); anything else must parse as a number, and classification labels must be 0 or 1.

Featurising (:func:`featurise_rows`): ``Chem.MolFromSmiles`` (by default no hydrogens added:
downstream graphs hold only the atoms of the SMILES, as upstream; ``hydrogens="keep"`` adds them
with ``Chem.AddHs`` to match an encoder pretrained on graphs with hydrogens), then
:func:`graphmvp.features.graph_features`. The stored SMILES is RDKit's canonical SMILES of the
parsed molecule (without added hydrogens). The same molecule gives each graph its chemprop-style
atom and bond descriptors (:mod:`graphmvp.descriptors`, :class:`GraphDescriptors`), kept beside
the graphs and used with ``--graph-features chemprop``.
Unparsable or unsupported molecules are skipped, counted by reason and listed; each kept
molecule keeps its data-file row number (``row_index``), so splits and predictions can be traced
back to the file.

Cache (:func:`load_dataset`): the featurised molecules are written as a conformer store (the
schema of :mod:`graphmvp.data.store`, molecules with zero conformers) plus a ``/finetune`` group
(``labels`` float32 [M, T] with NaN = missing, ``label_names``, ``row_index`` int64 [M],
``split_values``, ``atom_descriptors`` / ``bond_descriptors`` uint8 in graph order) to
``$GRAPHMVP_HOME/featurised/<name>-<key>.h5``; the key hashes the file's SHA-256, the reading
options and the featuriser version, so a changed file or option builds a new entry and an
unchanged one is read back in well under a second.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.tasks import TaskSpec, get_task_type
from graphmvp.prep import reasons
from graphmvp.prep.store_writer import write_store
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.data.store import ConformerStore, Molecule, SkipRecord, write_checksums
from graphmvp.download import (
    ChecksumError,
    DownloadError,
    cache_dir,
    download,
    known_checksum,
    record_checksum,
    sha256_file,
)
from graphmvp.features import NO_ATOMS, SmilesError, downstream_graph, parse_smiles
from graphmvp import descriptors
from graphmvp.io import atomic_path
from graphmvp.molgraph import MolGraph

log = logging.getLogger(__name__)

#: bump when featurisation or the cache layout changes (part of the cache key)
CACHE_VERSION = 2  # 2: the /finetune group holds the descriptors (graphmvp.descriptors)
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "none", "null"})
MIRROR_ENV = "GRAPHMVP_DATASETS_MIRROR"
EMPTY_MOLECULE = "empty_molecule"
#: "drop": the atoms of the SMILES only (upstream fine-tuning); "keep": explicit hydrogens added
#: (Chem.AddHs), to match encoders pretrained on graphs with hydrogens
HYDROGEN_MODES = ("drop", "keep")


# --------------------------------------------------------------------------------- cache paths


def datasets_dir() -> Path:
    """``$GRAPHMVP_HOME/datasets``: downloaded data files."""
    return cache_dir() / "datasets"


def featurised_dir() -> Path:
    """``$GRAPHMVP_HOME/featurised``: featurised data sets."""
    return cache_dir() / "featurised"


def checksum_manifest() -> Path:
    """The JSON manifest of SHA-256 hashes learnt on first download."""
    return datasets_dir() / "sha256.json"


# ------------------------------------------------------------------------------------ fetching


def _mirror_urls(rel: str) -> list[str]:
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return []
    return [mirror.rstrip("/") + "/" + rel]


def fetch_file(rel: str, urls: Sequence[str], sha256: Optional[str] = None, progress: bool = True,
               timeout: float = 30, retries: int = 3) -> Path:
    """Download ``urls`` (mirrors, in order) to ``datasets/<rel>`` and return the path.

    The expected SHA-256 is ``sha256`` or the one recorded for ``rel`` in the manifest; without
    either, the hash of the first successful download is recorded. Raises :class:`FinetuneError`
    (offline: every URL with its error and how to place the file by hand; checksum mismatch:
    nothing is left behind).
    """
    manifest = checksum_manifest()
    expected = sha256 or known_checksum(manifest, rel)
    dest = datasets_dir() / rel
    sources = _mirror_urls(rel) + list(urls)
    try:
        path = download(sources, dest, sha256=expected, progress=progress, timeout=timeout, retries=retries)
    except (DownloadError, ChecksumError) as e:
        raise FinetuneError(str(e)) from None
    if expected is None:
        record_checksum(manifest, rel, sha256_file(path))
    return path


def fetch_task_file(spec: TaskSpec, urls: Optional[Sequence[str]] = None, progress: bool = True,
                    timeout: float = 30, retries: int = 3) -> Path:
    """The cached data file of a molecule task, downloaded if needed."""
    return fetch_file(spec.file_name, list(urls) if urls else list(spec.urls), spec.sha256, progress, timeout, retries)


def find_in_chem_dataset(root: str | os.PathLike, spec: TaskSpec) -> Path:
    """The raw file of ``spec`` in Hu et al.'s unpacked ``chem_dataset`` folder ``root``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FinetuneError(f"--chem-dataset {root}: no such folder")
    if spec.chem_dataset_dir is None:
        raise FinetuneError(f"task {spec.name!r} is not part of Hu et al.'s chem_dataset bundle")
    tried = []
    for base in (root, root / "dataset"):
        raw = base / spec.chem_dataset_dir / "raw"
        for name in (spec.file_name, spec.file_name.removesuffix(".gz"), spec.file_name + ".gz"):
            tried.append(raw / name)
            if (raw / name).is_file():
                return raw / name
        if raw.is_dir():
            csvs = sorted(p for p in raw.iterdir() if p.name.endswith((".csv", ".csv.gz")))
            if len(csvs) == 1:
                return csvs[0]
    raise FinetuneError(
        f"--chem-dataset {root}: no raw file of task {spec.name!r} (looked for {', '.join(str(t) for t in tried[:3])}, ...)"
    )


def chem_dataset_processed_count(raw_file: Path) -> Optional[int]:
    """Rows of ``processed/smiles.csv`` next to a chem_dataset raw file (molecules Hu et al. kept)."""
    processed = raw_file.parent.parent / "processed" / "smiles.csv"
    if not processed.is_file():
        return None
    with open(processed, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def locate_data_file(spec: Optional[TaskSpec], data_file: Optional[str] = None, chem_dataset: Optional[str] = None,
                     urls: Optional[Sequence[str]] = None, progress: bool = True) -> Path:
    """Where the task's data comes from (see the module docstring)."""
    if data_file is not None:
        path = Path(data_file).expanduser()
        if not path.is_file():
            raise FinetuneError(f"--data-file {path}: no such file")
        return path
    if spec is None:
        raise FinetuneError("give --task NAME or --data-file FILE")
    if chem_dataset is not None:
        return find_in_chem_dataset(chem_dataset, spec)
    return fetch_task_file(spec, urls=urls, progress=progress)


# ------------------------------------------------------------------------------------- reading


@dataclass
class TableOptions:
    """How to read a data file: columns, task type, and the split column if any.

    ``label_cols`` None: every column but the SMILES column, ``drop_cols`` and ``split_col``.
    ``num_labels``: the expected count in that case (a mismatch is a warning).
    """

    smiles_col: Optional[str]
    label_cols: Optional[tuple[str, ...]]
    task_type: str
    drop_cols: tuple[str, ...] = ()
    split_col: Optional[str] = None
    num_labels: Optional[int] = None
    hydrogens: str = "drop"

    def __post_init__(self) -> None:
        get_task_type(self.task_type)
        if self.hydrogens not in HYDROGEN_MODES:
            raise FinetuneError(f"--hydrogens {self.hydrogens!r}: allowed: {', '.join(HYDROGEN_MODES)}")
        if self.label_cols is not None:
            self.label_cols = tuple(self.label_cols)
            if not self.label_cols:
                raise FinetuneError("--label-cols is empty: name at least one label column")
            dup = [c for c, n in Counter(self.label_cols).items() if n > 1]
            if dup:
                raise FinetuneError(f"--label-cols names {dup[0]!r} twice")
        self.drop_cols = tuple(self.drop_cols)

    def key(self) -> dict:
        return {
            "smiles_col": self.smiles_col,
            "label_cols": None if self.label_cols is None else list(self.label_cols),
            "task_type": self.task_type,
            "drop_cols": list(self.drop_cols),
            "split_col": self.split_col,
            "hydrogens": self.hydrogens,
        }


@dataclass
class RawTable:
    """The rows of a data file. ``smiles`` [R] (SMILES text; for SDF the record's SMILES or ""),
    ``labels`` float32 [R, T] (NaN = missing), ``mols``: SDF only, the parsed molecules
    (None = unreadable record)."""

    smiles: list[str]
    labels: np.ndarray
    label_names: list[str]
    split_values: Optional[list[str]]
    source_name: str
    mols: Optional[list] = None

    @property
    def num_rows(self) -> int:
        return len(self.smiles)


def _is_sdf(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".sdf") or name.endswith(".sdf.gz")


def _parse_labels(columns: dict[str, Sequence[str]], names: Sequence[str], task_type: str, source: str) -> np.ndarray:
    """Text cells -> float32 [R, T] (NaN = missing); raises on non-numbers and bad classes."""
    n_rows = len(next(iter(columns.values()))) if columns else 0
    out = np.full((n_rows, len(names)), np.nan, dtype=np.float32)
    for t, name in enumerate(names):
        text = pd.Series(list(columns[name]), dtype=object).fillna("").astype(str).str.strip()
        missing = text.str.lower().isin(MISSING_TOKENS).to_numpy()
        values = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~missing & ~np.isfinite(values)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise FinetuneError(f"{source}: label column {name!r}, row {r}: {text[r][:40]!r} is not a number")
        if task_type == "classification":
            wrong = ~missing & (values != 0) & (values != 1)
            if wrong.any():
                r = int(np.flatnonzero(wrong)[0])
                raise FinetuneError(
                    f"{source}: label column {name!r}, row {r}: {text[r]!r} is not a class; "
                    "classification labels must be 0 or 1 (empty = missing)"
                )
        out[:, t] = np.where(missing, np.nan, values)
    return out


def _choose_labels(available: Sequence[str], opts: TableOptions, source: str) -> list[str]:
    if opts.label_cols is not None:
        missing = [c for c in opts.label_cols if c not in available]
        if missing:
            raise FinetuneError(
                f"{source}: label column(s) {', '.join(repr(c) for c in missing)} not found; "
                f"columns: {_column_list(available)}"
            )
        return list(opts.label_cols)
    skip = {opts.smiles_col, opts.split_col, *opts.drop_cols}
    names = [c for c in available if c not in skip]
    if not names:
        raise FinetuneError(f"{source}: no label columns left (columns: {_column_list(available)})")
    if opts.num_labels is not None and len(names) != opts.num_labels:
        log.warning("%s: %d label columns, the published file has %d", source, len(names), opts.num_labels)
    return names


def _column_list(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(c) for c in list(names)[:limit])
    return shown + (f", ... ({len(names)} in total)" if len(names) > limit else "")


def _read_csv_frame(path: Path, **kw) -> pd.DataFrame:
    sep = "\t" if path.name.lower().removesuffix(".gz").endswith((".tsv", ".tab")) else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                           compression="infer", encoding="utf-8", **kw)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, ValueError) as e:
        raise FinetuneError(f"{path.name}: cannot read it as CSV ({str(e).splitlines()[0]})") from None


def read_csv_header(path: Path) -> list[str]:
    """The column names of a CSV/TSV file (gzipped too); SDF files have none (``[]``)."""
    if _is_sdf(path):
        return []
    return [str(c) for c in _read_csv_frame(path, nrows=0).columns]


def read_csv_table(path: Path, opts: TableOptions) -> RawTable:
    source = path.name
    if opts.smiles_col is None:
        raise FinetuneError(f"{source}: give --smiles-col (the column holding the SMILES)")
    frame = _read_csv_frame(path)
    columns = list(frame.columns)
    if opts.smiles_col not in columns:
        raise FinetuneError(f"{source}: SMILES column {opts.smiles_col!r} not found; columns: {_column_list(columns)}")
    if opts.split_col is not None and opts.split_col not in columns:
        raise FinetuneError(f"{source}: split column {opts.split_col!r} not found; columns: {_column_list(columns)}")
    names = _choose_labels(columns, opts, source)
    if opts.smiles_col in names:
        raise FinetuneError(f"{source}: the SMILES column {opts.smiles_col!r} cannot also be a label column")
    labels = _parse_labels({n: frame[n].tolist() for n in names}, names, opts.task_type, source)
    return RawTable(
        smiles=[str(s).strip() for s in frame[opts.smiles_col].tolist()],
        labels=labels,
        label_names=names,
        split_values=None if opts.split_col is None else [str(v) for v in frame[opts.split_col].tolist()],
        source_name=source,
    )


def read_sdf_table(path: Path, opts: TableOptions) -> RawTable:
    source = path.name
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    mols: list = []
    props: list[dict[str, str]] = []
    lg = RDLogger.logger()
    lg.setLevel(RDLogger.CRITICAL)
    try:
        with opener(path, "rb") as fh:
            for mol in Chem.ForwardSDMolSupplier(fh, sanitize=True, removeHs=True):
                mols.append(mol)
                props.append({} if mol is None else {k: mol.GetProp(k) for k in mol.GetPropNames()})
    except (OSError, EOFError) as e:
        raise FinetuneError(f"{source}: cannot read it as SDF ({e})") from None
    finally:
        lg.setLevel(RDLogger.WARNING)
    if not mols:
        raise FinetuneError(f"{source}: no SDF records")
    available = list(dict.fromkeys(k for p in props for k in p))
    if opts.label_cols is None:
        raise FinetuneError(f"{source}: give --label-cols for an SDF file (properties: {_column_list(available)})")
    names = _choose_labels(available, opts, source)
    if opts.split_col is not None and opts.split_col not in available:
        raise FinetuneError(f"{source}: split property {opts.split_col!r} not found; properties: {_column_list(available)}")
    labels = _parse_labels({n: [p.get(n, "") for p in props] for n in names}, names, opts.task_type, source)
    smiles = [Chem.MolToSmiles(m) if m is not None else "" for m in mols]
    split_values = None if opts.split_col is None else [p.get(opts.split_col, "") for p in props]
    return RawTable(smiles=smiles, labels=labels, label_names=names, split_values=split_values,
                    source_name=source, mols=mols)


def read_table(path: str | os.PathLike, opts: TableOptions) -> RawTable:
    """Read a CSV / gzipped CSV / SDF data file (see the module docstring)."""
    path = Path(path)
    table = read_sdf_table(path, opts) if _is_sdf(path) else read_csv_table(path, opts)
    if table.num_rows == 0:
        raise FinetuneError(f"{path.name}: no data rows")
    return table


# ---------------------------------------------------------------------------------- featurising


def _molecule(graph: MolGraph, smiles: str, source_id: str, row: int) -> Molecule:
    n = graph.num_atoms
    return Molecule.from_graph(
        graph,
        positions=np.zeros((0, n, 3), dtype=np.float32),
        energy=np.zeros(0, dtype=np.float64),
        boltzmann_weight=np.zeros(0, dtype=np.float64),
        conf_source_index=np.zeros(0, dtype=np.int32),
        smiles=smiles,
        source_id=source_id,
        candidate_index=row,
    )


@dataclass
class FeaturisedRows:
    """What :func:`featurise_rows` made of a table: the kept molecules (``candidate_index`` = row
    number), the skipped rows with their reasons, and the kept molecules' descriptors
    (:mod:`graphmvp.descriptors`): atoms uint8 [N_i, Ca], directed edges uint8 [E_i, Cb]."""

    kept: list[Molecule]
    skipped: list[SkipRecord]
    atom_descriptors: list[np.ndarray]
    bond_descriptors: list[np.ndarray]

    def descriptors(self) -> "GraphDescriptors":
        return GraphDescriptors.concatenate(self.atom_descriptors, self.bond_descriptors)


def featurise_rows(table: RawTable, hydrogens: str = "drop") -> FeaturisedRows:
    """Featurise every row: its graph (Hu et al.'s features) and its descriptors, both from the
    same RDKit molecule. ``hydrogens="keep"`` adds explicit hydrogens as atoms."""
    kept: list[Molecule] = []
    skipped: list[SkipRecord] = []
    atom_desc: list[np.ndarray] = []
    bond_desc: list[np.ndarray] = []
    lg = RDLogger.logger()
    lg.setLevel(RDLogger.CRITICAL)
    try:
        for row, smi in enumerate(table.smiles):
            source_id = f"{table.source_name}#{row}"
            if table.mols is not None:
                mol = table.mols[row]
                if mol is None:
                    skipped.append(SkipRecord(row, source_id, "", reasons.UNPARSABLE_RECORD, "RDKit could not read the SDF record"))
                    continue
            elif not smi:
                skipped.append(SkipRecord(row, source_id, smi, EMPTY_MOLECULE, "empty SMILES cell"))
                continue
            else:
                try:
                    mol = parse_smiles(smi)
                except SmilesError:
                    skipped.append(SkipRecord(row, source_id, smi, reasons.UNPARSABLE_SMILES, "RDKit could not parse the SMILES"))
                    continue
            try:
                graph = downstream_graph(mol, hydrogens)
            except SmilesError as e:
                no_atoms = e.reason == NO_ATOMS
                skipped.append(SkipRecord(row, source_id, smi, EMPTY_MOLECULE if no_atoms else reasons.UNSUPPORTED_MOLECULE,
                                          "no atoms" if no_atoms else str(e)))
                continue
            canonical = Chem.MolToSmiles(mol)
            kept.append(_molecule(graph, canonical, source_id, row))
            graph_mol = Chem.AddHs(mol) if hydrogens == "keep" else mol  # as downstream_graph saw it
            atom_desc.append(descriptors.atom_descriptors(graph_mol))
            bond_desc.append(descriptors.bond_descriptors(graph_mol))
    finally:
        lg.setLevel(RDLogger.WARNING)
    return FeaturisedRows(kept, skipped, atom_desc, bond_desc)


def featurise_table(table: RawTable, hydrogens: str = "drop") -> tuple[list[Molecule], list[SkipRecord]]:
    """The kept molecules and the skipped rows of :func:`featurise_rows`."""
    rows = featurise_rows(table, hydrogens)
    return rows.kept, rows.skipped


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    """int64 [M + 1]: where each of M consecutive runs of ``lengths`` starts, then the total."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def _descriptor_stamp() -> str:
    """What a store records of the descriptors it holds (:func:`graphmvp.descriptors.describe`):
    a cache written with other descriptors is not read back."""
    return json.dumps(descriptors.describe(), sort_keys=True)


@dataclass
class GraphDescriptors:
    """The descriptors of M molecules, concatenated: ``atom`` uint8 [sum N_i, Ca], ``bond`` uint8
    [sum E_i, Cb]; molecule ``i``'s rows start at ``atom_offsets[i]`` / ``edge_offsets[i]`` (int64
    [M + 1]), in the order of its graph's atoms and directed edges."""

    atom: np.ndarray
    bond: np.ndarray
    atom_offsets: np.ndarray
    edge_offsets: np.ndarray

    @classmethod
    def concatenate(cls, atom: Sequence[np.ndarray], bond: Sequence[np.ndarray]) -> "GraphDescriptors":
        ca, cb = len(descriptors.ATOM_DESCRIPTORS), len(descriptors.BOND_DESCRIPTORS)
        return cls(np.concatenate(atom) if len(atom) else np.zeros((0, ca), np.uint8),
                   np.concatenate(bond) if len(bond) else np.zeros((0, cb), np.uint8),
                   _offsets([len(x) for x in atom]), _offsets([len(x) for x in bond]))

    def check(self, graphs: Sequence[MolGraph], source: str) -> None:
        """Raise ``ValueError`` unless molecule ``i`` has a row per atom and per edge of ``graphs[i]``."""
        atoms = np.diff(self.atom_offsets)
        edges = np.diff(self.edge_offsets)
        if len(atoms) != len(graphs) or any(a != g.num_atoms or e != g.num_edges for a, e, g in zip(atoms, edges, graphs)):
            raise ValueError(f"{source}: the descriptors do not match the graphs")

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """int64 (atom [N, Ca], bond [E, Cb]) of the molecules ``indices``, concatenated in that
        order (the order of :func:`graphmvp.data.collate.batch_mol_graphs`)."""
        idx = np.asarray(indices, dtype=np.int64)
        parts = []
        for rows, offsets in ((self.atom, self.atom_offsets), (self.bond, self.edge_offsets)):
            take = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
            parts.append(torch.from_numpy(rows[take].astype(np.int64)))
        return parts[0], parts[1]


# --------------------------------------------------------------------------------------- dataset


@dataclass
class MolDataset:
    """A featurised downstream data set (M kept molecules, T label columns).

    ``graphs`` [M] (:class:`MolGraph`, Hu et al. features, no hydrogens), ``labels`` float32
    [M, T] (NaN = missing), ``smiles`` [M] (RDKit canonical), ``row_index`` int64 [M] (row in the
    data file), ``split_values`` [M] or None, ``num_rows`` (rows in the file), ``skipped``
    (rows left out, with reasons), ``descriptors`` (:class:`GraphDescriptors` of the graphs, or
    None when they were not computed).
    """

    graphs: list[MolGraph]
    labels: np.ndarray
    label_names: list[str]
    smiles: list[str]
    row_index: np.ndarray
    split_values: Optional[list[str]]
    num_rows: int
    skipped: list[SkipRecord]
    task_type: str
    source: str
    store_path: Optional[Path] = None
    info: dict = field(default_factory=dict)
    descriptors: Optional[GraphDescriptors] = None

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def num_tasks(self) -> int:
        return int(self.labels.shape[1])

    def batch(self, indices: Sequence[int], descriptors: bool = False):
        """(batched DGL graph of the molecules ``indices``, float32 labels [B, T]). With
        ``descriptors`` the graph also holds ``ndata['atom_desc']`` int64 [N, Ca] and
        ``edata['bond_desc']`` int64 [E, Cb] (:mod:`graphmvp.descriptors`)."""
        graphs = [self.graphs[i] for i in indices]
        g = batch_mol_graphs(graphs)
        if descriptors:
            attach_descriptors(g, self.descriptors, indices, self.source)
        return g, torch.from_numpy(self.labels[np.asarray(indices, dtype=np.int64)])

    def label_summary(self, indices: Optional[np.ndarray] = None) -> dict:
        """Per label column: valid count and, for classification, positives; for regression,
        mean and standard deviation (over ``indices``, default all)."""
        y = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        out = {}
        for t, name in enumerate(self.label_names):
            col = y[:, t]
            valid = col[~np.isnan(col)]
            entry = {"labelled": int(valid.shape[0])}
            if self.task_type == "classification":
                entry["positives"] = int((valid == 1).sum())
            elif valid.size:
                entry["mean"] = float(valid.mean())
                entry["std"] = float(valid.std())
            out[name] = entry
        return out

    def summary(self) -> dict:
        """Plain-python description for the run's summary.json."""
        by_reason = Counter(s.reason for s in self.skipped)
        return {
            "source": self.source,
            "store": None if self.store_path is None else str(self.store_path),
            "rows": self.num_rows,
            "molecules": len(self),
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(sorted(by_reason.items())),
            "skipped_rows": [
                {"row": s.candidate_index, "smiles": s.smiles, "reason": s.reason, "detail": s.detail}
                for s in self.skipped[:100]
            ],
            "label_names": self.label_names if len(self.label_names) <= 50 else self.label_names[:50] + ["..."],
            "num_tasks": self.num_tasks,
            **self.info,
        }


def attach_descriptors(g, found: Optional[GraphDescriptors], indices: Sequence[int], source: str) -> None:
    """Set ``g.ndata['atom_desc']`` / ``g.edata['bond_desc']`` of the batched graph ``g`` of the
    molecules ``indices`` from ``found``; a one-line error when there are none."""
    if found is None:
        raise FinetuneError(f"{source}: its featurised data hold no atom/bond descriptors; featurise it again "
                            "(delete its cache file under $GRAPHMVP_HOME/featurised)")
    g.ndata["atom_desc"], g.edata["bond_desc"] = found.batch(indices)


def cache_key(file_sha256: str, opts: TableOptions) -> str:
    """The featurised-cache key of a file content and reading options."""
    doc = {"file_sha256": file_sha256, "options": opts.key(), "cache_version": CACHE_VERSION, "features": "hu-simple"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep.strip("._") or "data"


def write_dataset_store(path: Path, molecules: list[Molecule], skipped: list[SkipRecord], table: RawTable,
                        config: dict, found: Optional[GraphDescriptors] = None) -> None:
    """Write a featurised data set: a conformer store + the /finetune group (with the
    descriptors ``found`` of the molecules, when given), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.array([m.candidate_index for m in molecules], dtype=np.int64)
    with atomic_path(path) as tmp:
        write_store(tmp, molecules, skipped, config, command=["graphmvp-finetune"], n_candidates=table.num_rows)
        with h5py.File(tmp, "a") as f:
            g = f.create_group("finetune")
            g.create_dataset("labels", data=table.labels[rows] if len(rows) else np.zeros((0, len(table.label_names)), np.float32))
            g.create_dataset("label_names", data=table.label_names, dtype=h5py.string_dtype())
            g.create_dataset("row_index", data=rows)
            g.attrs["num_rows"] = table.num_rows
            if table.split_values is not None:
                g.create_dataset("split_values", data=[table.split_values[r] for r in rows], dtype=h5py.string_dtype())
            if found is not None:
                g.create_dataset("atom_descriptors", data=found.atom)
                g.create_dataset("bond_descriptors", data=found.bond)
                g.attrs["descriptors"] = _descriptor_stamp()
            write_checksums(f)  # now covering /finetune too



def read_dataset_store(path: Path, task_type: str, source: str) -> MolDataset:
    """Load a featurised data set written by :func:`write_dataset_store`."""
    with ConformerStore(path) as store:
        store.verify()  # a damaged cache is featurised again (load_dataset)
        mols = store.molecules(0, len(store))
        skipped = store.skipped()
        g = store.h5["finetune"]
        labels = g["labels"][:].astype(np.float32)
        names = list(g["label_names"].asstr()[:])
        rows = g["row_index"][:].astype(np.int64)
        num_rows = int(g.attrs["num_rows"])
        split_values = list(g["split_values"].asstr()[:]) if "split_values" in g else None
        found = None
        if "atom_descriptors" in g and g.attrs.get("descriptors") == _descriptor_stamp():
            found = GraphDescriptors(g["atom_descriptors"][:], g["bond_descriptors"][:],
                                     _offsets([m.num_atoms for m in mols]), _offsets([m.num_edges for m in mols]))
            found.check(mols, str(path))
    return MolDataset(
        graphs=[m.graph for m in mols],
        labels=labels,
        label_names=names,
        smiles=[m.smiles for m in mols],
        row_index=rows,
        split_values=split_values,
        num_rows=num_rows,
        skipped=skipped,
        task_type=task_type,
        source=source,
        store_path=path,
        descriptors=found,
    )


def load_dataset(path: str | os.PathLike, opts: TableOptions, name: Optional[str] = None,
                 use_cache: bool = True) -> MolDataset:
    """Read, featurise and cache the data file ``path`` (or read the cached result).

    Raises :class:`FinetuneError` for missing columns, non-numeric labels and a file without any
    valid molecule; warns (does not fail) when some rows are skipped.
    """
    path = Path(path)
    file_sha = sha256_file(path)
    key = cache_key(file_sha, opts)
    store_path = featurised_dir() / f"{_slug(name or path.name)}-{key[:16]}.h5"
    dataset = None
    if use_cache and store_path.is_file():
        try:
            dataset = read_dataset_store(store_path, opts.task_type, str(path))
            log.info("read the featurised data set from the cache %s", store_path)
        except (OSError, KeyError, ValueError) as e:
            log.warning("featurised cache %s is unreadable (%s); featurising again", store_path, e)
            dataset = None
    if dataset is None:
        table = read_table(path, opts)
        featurised = featurise_rows(table, opts.hydrogens)
        molecules, skipped = featurised.kept, featurised.skipped
        if not molecules:
            example = f" (e.g. row {skipped[0].candidate_index}: {skipped[0].smiles[:60]!r}, {skipped[0].reason})" if skipped else ""
            raise FinetuneError(f"{path.name}: none of its {table.num_rows} rows is a valid molecule{example}")
        config = {"source": "finetune", "input": str(path), "file_sha256": file_sha, "features": "hu-simple",
                  "cache_version": CACHE_VERSION, **opts.key()}
        if use_cache:
            write_dataset_store(store_path, molecules, skipped, table, config, featurised.descriptors())
            dataset = read_dataset_store(store_path, opts.task_type, str(path))
        else:
            rows = np.array([m.candidate_index for m in molecules], dtype=np.int64)
            dataset = MolDataset(
                graphs=[m.graph for m in molecules],
                labels=table.labels[rows],
                label_names=table.label_names,
                smiles=[m.smiles for m in molecules],
                row_index=rows,
                split_values=None if table.split_values is None else [table.split_values[r] for r in rows],
                num_rows=table.num_rows,
                skipped=skipped,
                task_type=opts.task_type,
                source=str(path),
                descriptors=featurised.descriptors(),
            )
    dataset.info["file_sha256"] = file_sha
    if dataset.skipped:
        shown = "; ".join(f"row {s.candidate_index} {s.smiles[:40]!r} ({s.reason})" for s in dataset.skipped[:3])
        log.warning("%s: %d of %d rows skipped and left out: %s%s", path.name, len(dataset.skipped),
                    dataset.num_rows, shown, " ..." if len(dataset.skipped) > 3 else "")
    labelled = np.sum(~np.isnan(dataset.labels))
    if labelled == 0:
        raise FinetuneError(f"{path.name}: no molecule has a label in {', '.join(dataset.label_names[:5])}")
    return dataset


def write_skipped_tsv(path: Path, skipped: Sequence[SkipRecord]) -> None:
    """One line per skipped row: row, source, SMILES, reason, detail."""
    buf = io.StringIO()
    buf.write("row\tsource\tsmiles\treason\tdetail\n")
    for s in skipped:
        buf.write(f"{s.candidate_index}\t{s.source_id}\t{s.smiles}\t{s.reason}\t{s.detail}\n")
    path.write_text(buf.getvalue(), encoding="utf-8")


__all__ = [
    "CACHE_VERSION",
    "MolDataset",
    "RawTable",
    "TableOptions",
    "cache_key",
    "chem_dataset_processed_count",
    "checksum_manifest",
    "datasets_dir",
    "FeaturisedRows",
    "GraphDescriptors",
    "attach_descriptors",
    "featurise_rows",
    "featurise_table",
    "featurised_dir",
    "fetch_file",
    "fetch_task_file",
    "find_in_chem_dataset",
    "load_dataset",
    "locate_data_file",
    "read_dataset_store",
    "read_table",
    "write_dataset_store",
    "write_skipped_tsv",
]
