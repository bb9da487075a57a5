"""Label sidecars: chemistry labels of a store's molecules, precomputed into a file beside it.

``STORE.labels.h5`` (e.g. ``geom_drugs.h5.labels.h5``) holds, for the store ``STORE``, the
labels that 2D objectives predict, computed once by ``graphmvp-prep labels STORE`` (or
``graphmvp-prep motifs STORE``) instead of at every step. The store file itself is never
modified; the sidecar is written under a temporary name and renamed into place (after an
fsync), so a killed build leaves the previous sidecar, or none, never a broken one.

Schema, ``format`` ``graphmvp-labels``, ``format_version`` 1 (M molecules, A atom rows of the
store, F = 85 functional groups)::

    /atom_offset                   int64 [M+1]  copy of the store's /molecules/atom_offset
    /<atom kind>/labels            int32 [A]    class index per store atom row (0 = <other>)
    /<atom kind>/valid             uint8 [M]    1 if the molecule was labelled
    /<atom kind>/vocab             str   []     the vocabulary's JSON (graphmvp.chem.vocab)
    /functional_groups/flags       uint8 [M,F]  presence of each RDKit fr_* group
    /functional_groups/valid       uint8 [M]
    /functional_groups/names       str   [F]
    /failures/mol_index            int64 [K]    molecules a kind could not label ...
    /failures/kind, reason, detail str   [K]

Atom kinds are ``motif`` and ``contextual``. Labels are aligned with the store's atom rows:
molecule ``m``'s are rows ``atom_offset[m]:atom_offset[m+1]``, in the store's atom order (labels
computed on the molecule parsed from the stored SMILES are moved onto the stored graph by graph
matching; a hydrogen row carries its heavy atom's label; see :mod:`graphmvp.chem.atom_map`).
Each kind group has attributes ``rules_version``, ``coverage`` (heavy rows not ``<other>``) and
``row_coverage`` (all rows). Root attributes: ``format``, ``format_version``, ``tool_version``,
``created``, ``command`` (JSON), ``atom_mapping`` (JSON: molecules per mapping step of
:func:`graphmvp.chem.atom_map.map_atoms`), ``store`` (file name) and ``store_fingerprint`` (JSON:
molecule, atom and edge counts, the store's ``created`` attribute, its size in bytes and a SHA-1
of its atom and edge offsets). The readers compare the fingerprint with the store as it is and
refuse a stale sidecar, naming the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import h5py
import numpy as np

import graphmvp
from graphmvp.chem.annotate import DEFAULT_CHUNK_SIZE, ScanResult, scan_store
from graphmvp.chem.kinds import AtomLabelKind, MoleculeLabelKind, all_kinds, label_kind
from graphmvp.chem.vocab import DEFAULT_MIN_COUNT, OTHER_INDEX, Vocabulary, VocabularyError
from graphmvp.io import atomic_path

SIDECAR_SUFFIX = ".labels.h5"
LABELS_FORMAT = "graphmvp-labels"
LABELS_FORMAT_VERSION = 1
STR = h5py.string_dtype()


class LabelsError(ValueError):
    """A label sidecar that is missing, of another format, or lacks the kind asked for."""


class StaleLabelsError(LabelsError):
    """The sidecar was built for another version of the store (or with other label rules)."""


# ----------------------------------------------------------------------------------- paths
def labels_path(store: str | os.PathLike) -> Path:
    """The sidecar of ``store``: ``STORE.labels.h5``."""
    store = Path(store)
    return store.with_name(store.name + SIDECAR_SUFFIX)


def vocab_path(store: str | os.PathLike, kind: str) -> Path:
    """Where a vocabulary built from ``store`` (or a SMILES file) is written: ``STORE.<kind>_vocab.json``."""
    store = Path(store)
    return store.with_name(f"{store.name}.{kind}_vocab.json")


def rebuild_command(store: str | os.PathLike, kinds: Sequence[str] | None = None) -> str:
    kinds_arg = f" --kinds {','.join(kinds)}" if kinds else ""
    return f"graphmvp-prep labels {store}{kinds_arg}"


def store_fingerprint(store: str | os.PathLike) -> dict:
    """What identifies a store's content cheaply: counts, its ``created`` time, its size, and a
    hash of its atom and edge offsets (16 bytes per molecule read: ~30 ms per million)."""
    store = Path(store)
    if not store.is_file():
        raise LabelsError(f"{store}: no such store")
    try:
        with h5py.File(store, "r") as f:
            digest = hashlib.sha1()
            for key in ("atom_offset", "edge_offset"):
                digest.update(np.ascontiguousarray(f[f"molecules/{key}"][:], dtype="<i8").tobytes())
            return {
                "n_molecules": int(f["molecules/smiles"].shape[0]),
                "n_atoms": int(f["atoms/atomic_num"].shape[0]),
                "n_edges": int(f["edges/index"].shape[0]),
                "created": str(f.attrs.get("created", "")),
                "file_bytes": store.stat().st_size,
                "offsets_sha1": digest.hexdigest(),
            }
    except (OSError, KeyError) as e:
        raise LabelsError(f"{store}: not a conformer store ({e})") from None


def _fingerprint_difference(built: dict, now: dict) -> str:
    diffs = [f"{k} {built.get(k)!r} then, {now.get(k)!r} now" for k in sorted(now) if built.get(k) != now.get(k)]
    return "; ".join(diffs)


# ----------------------------------------------------------------------------------- building
@dataclass
class KindReport:
    """What one kind's labelling gave on a store."""

    kind: str
    n_labelled: int
    failures: dict[str, int]
    coverage: float | None = None  # heavy rows not <other> (atom kinds)
    row_coverage: float | None = None  # all rows not <other> (atom kinds)
    vocab: Vocabulary | None = None
    vocab_file: Path | None = None
    positives: np.ndarray | None = None  # molecules with each flag (molecule kinds)

    def summary(self) -> str:
        failed = sum(self.failures.values())
        tail = f"; {failed} not labelled ({', '.join(f'{r} {n}' for r, n in sorted(self.failures.items()))})" if failed else ""
        if self.vocab is not None:
            return (f"{self.kind}: {self.vocab.size} classes (min count {self.vocab.min_count}); coverage "
                    f"{100 * self.coverage:.2f}% of heavy atoms, {100 * self.row_coverage:.2f}% of all atom rows; "
                    f"{self.n_labelled} molecules labelled{tail}")
        present = int(np.count_nonzero(self.positives)) if self.positives is not None else 0
        return f"{self.kind}: {present} of {len(label_kind(self.kind).names)} groups present; {self.n_labelled} molecules labelled{tail}"


@dataclass
class LabelsBuild:
    """Result of :func:`build_labels`."""

    store: Path
    sidecar: Path
    n_molecules: int
    seconds: float
    reports: dict[str, KindReport] = field(default_factory=dict)
    kept_kinds: tuple[str, ...] = ()  # kinds copied unchanged from the previous sidecar
    mapping: dict[str, int] = field(default_factory=dict)  # molecules per atom-mapping step

    @property
    def molecules_per_second(self) -> float:
        return self.n_molecules / self.seconds if self.seconds > 0 else float("inf")


def build_labels(
    store: str | os.PathLike,
    kinds: Sequence[str] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    workers: int = 1,
    vocabs: Mapping[str, Vocabulary] | None = None,
    vocab_out: Mapping[str, str | os.PathLike] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    command: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> LabelsBuild:
    """Label every molecule of ``store`` with ``kinds`` (default: all) and write its sidecar.

    Atom kinds get a vocabulary built from the store with ``min_count``, unless ``vocabs`` gives
    one (e.g. the pretraining set's, for a downstream store); built vocabularies are also saved
    as JSON at ``vocab_out[kind]`` (default :func:`vocab_path`). Kinds already in a sidecar that
    still matches the store and are not rebuilt are kept as they are.
    """
    store = Path(store)
    kinds = tuple(kinds) if kinds else all_kinds()
    for kind in kinds:
        label_kind(kind)
    vocabs = dict(vocabs or {})
    for kind, vocab in vocabs.items():
        if kind not in kinds or not isinstance(label_kind(kind), AtomLabelKind):
            raise LabelsError(f"a vocabulary was given for '{kind}', which is not an atom-level kind being built")
        vocab.check(kind, label_kind(kind).rules_version)
    if int(min_count) < 1:
        raise LabelsError(f"min_count must be >= 1, not {min_count}")
    if int(workers) < 1:
        raise LabelsError(f"workers must be >= 1, not {workers}")
    fingerprint = store_fingerprint(store)
    with h5py.File(store, "r") as f:
        atom_offset = f["molecules/atom_offset"][:].astype(np.int64)
        heavy = f["atoms/atomic_num"][:] != 1
    scan = scan_store(store, kinds, workers=workers, chunk_size=chunk_size, progress=progress)
    sidecar = labels_path(store)
    keep = _reusable_kinds(sidecar, fingerprint, exclude=kinds)
    build = LabelsBuild(store, sidecar, scan.n_molecules, scan.seconds, kept_kinds=tuple(keep),
                        mapping=dict(sorted(scan.mapping.items())))
    failures_by_kind = Counter()
    for fl in scan.failures:
        failures_by_kind[(fl.kind, fl.reason)] += 1

    def failures_of(kind: str) -> dict[str, int]:
        return {r: n for (k, r), n in sorted(failures_by_kind.items()) if k == kind}

    with atomic_path(sidecar, fsync=True) as tmp, h5py.File(tmp, "w") as out:
        out.attrs["format"] = LABELS_FORMAT
        out.attrs["format_version"] = LABELS_FORMAT_VERSION
        out.attrs["tool_version"] = graphmvp.__version__
        out.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out.attrs["command"] = json.dumps(list(command))
        out.attrs["store"] = store.name
        out.attrs["store_fingerprint"] = json.dumps(fingerprint, sort_keys=True)
        out.attrs["atom_mapping"] = json.dumps(build.mapping, sort_keys=True)
        out.create_dataset("atom_offset", data=atom_offset)
        for kind in kinds:
            spec = label_kind(kind)
            if isinstance(spec, AtomLabelKind):
                report = _write_atom_kind(out, kind, spec, scan, heavy, min_count, vocabs.get(kind),
                                          {"store": str(store), "fingerprint": fingerprint})
            else:
                report = _write_molecule_kind(out, kind, spec, scan)
            report.failures = failures_of(kind)
            build.reports[kind] = report
        failures = [(fl.index, fl.kind, fl.reason, fl.detail) for fl in scan.failures]
        if keep:
            with h5py.File(sidecar, "r") as old:
                for kind in keep:
                    old.copy(old[kind], out, name=kind)
                failures += [row for row in _read_failures(old) if row[1] in keep]
        failures.sort(key=lambda row: (row[0], row[1]))
        g = out.create_group("failures")
        g.create_dataset("mol_index", data=np.array([r[0] for r in failures], dtype=np.int64))
        for j, col in enumerate(("kind", "reason", "detail"), start=1):
            g.create_dataset(col, data=[r[j] for r in failures], dtype=STR)
    for kind, report in build.reports.items():
        if report.vocab is not None and kind not in vocabs:
            target = Path((vocab_out or {}).get(kind) or vocab_path(store, kind))
            report.vocab_file = report.vocab.save(target)
    return build


def _write_atom_kind(out: h5py.File, kind: str, spec: AtomLabelKind, scan: ScanResult, heavy: np.ndarray,
                     min_count: int, given: Vocabulary | None, source: dict) -> KindReport:
    vocab = given or Vocabulary.build(kind, spec.rules_version, scan.counts[kind], min_count, source=source)
    remap = np.append(vocab.encode(scan.keys[kind]).astype(np.int32), np.int32(OTHER_INDEX))
    labels = remap[scan.row_key[kind]]  # row_key -1 -> the appended <other>
    g = out.create_group(kind)
    g.create_dataset("labels", data=labels, dtype=np.int32)
    g.create_dataset("valid", data=scan.atom_valid[kind], dtype=np.uint8)
    g.create_dataset("vocab", data=vocab.to_json(), dtype=STR)
    coverage = float(np.mean(labels[heavy] != OTHER_INDEX)) if heavy.any() else 0.0
    row_coverage = float(np.mean(labels != OTHER_INDEX)) if labels.size else 0.0
    g.attrs["rules_version"] = spec.rules_version
    g.attrs["coverage"] = coverage
    g.attrs["row_coverage"] = row_coverage
    g.attrs["vocab_given"] = given is not None
    return KindReport(kind, int(scan.atom_valid[kind].sum()), {}, coverage, row_coverage, vocab)


def _write_molecule_kind(out: h5py.File, kind: str, spec: MoleculeLabelKind, scan: ScanResult) -> KindReport:
    g = out.create_group(kind)
    g.create_dataset("flags", data=scan.flags[kind], dtype=np.uint8)
    g.create_dataset("valid", data=scan.flag_valid[kind], dtype=np.uint8)
    g.create_dataset("names", data=list(spec.names), dtype=STR)
    g.attrs["rules_version"] = spec.rules_version
    positives = scan.flags[kind].sum(axis=0, dtype=np.int64)
    return KindReport(kind, int(scan.flag_valid[kind].sum()), {}, positives=positives)


def _read_failures(f: h5py.File) -> list[tuple[int, str, str, str]]:
    g = f["failures"]
    return list(zip(g["mol_index"][:].tolist(), g["kind"].asstr()[:], g["reason"].asstr()[:], g["detail"].asstr()[:]))


def _reusable_kinds(sidecar: Path, fingerprint: dict, exclude: Sequence[str]) -> list[str]:
    """Kinds of an existing sidecar that still fits the store and the current rules."""
    if not sidecar.is_file():
        return []
    try:
        with h5py.File(sidecar, "r") as f:
            if f.attrs.get("format") != LABELS_FORMAT or int(f.attrs.get("format_version", -1)) != LABELS_FORMAT_VERSION:
                return []
            if json.loads(f.attrs["store_fingerprint"]) != fingerprint:
                return []
            return [k for k in all_kinds() if k in f and k not in exclude
                    and f[k].attrs.get("rules_version") == label_kind(k).rules_version]
    except (OSError, KeyError, ValueError):
        return []


# ----------------------------------------------------------------------------------- reading
class _SidecarFile:
    """A validated, lazily (re)opened sidecar (h5py handles must not cross a fork)."""

    def __init__(self, store: str | os.PathLike, kind: str, sidecar: str | os.PathLike | None):
        self.store = Path(store)
        self.path = Path(sidecar) if sidecar is not None else labels_path(self.store)
        self.kind = kind
        spec = label_kind(kind)
        if not self.path.is_file():
            raise LabelsError(f"{self.store} has no label sidecar {self.path}; build it with: "
                              f"{rebuild_command(self.store, [kind])}")
        self._h5: h5py.File | None = None
        self._pid = -1
        f = self.h5
        if f.attrs.get("format") != LABELS_FORMAT:
            raise LabelsError(f"{self.path}: not a graphmvp label sidecar")
        version = int(f.attrs.get("format_version", -1))
        if version != LABELS_FORMAT_VERSION:
            raise StaleLabelsError(f"{self.path}: sidecar format_version {version}, this graphmvp reads "
                                   f"{LABELS_FORMAT_VERSION}; rebuild it with: {rebuild_command(self.store)}")
        built = json.loads(f.attrs["store_fingerprint"])
        now = store_fingerprint(self.store)
        if built != now:
            raise StaleLabelsError(
                f"{self.path} was built for another version of {self.store} ({_fingerprint_difference(built, now)}); "
                f"rebuild it with: {rebuild_command(self.store)}")
        if kind not in f:
            have = [k for k in all_kinds() if k in f]
            raise LabelsError(f"{self.path} has no '{kind}' labels (it has: {', '.join(have) or 'none'}); build them "
                              f"with: {rebuild_command(self.store, [kind])}")
        rules = f[kind].attrs.get("rules_version")
        if rules != spec.rules_version:
            raise StaleLabelsError(f"{self.path}: '{kind}' labels made with rules {rules}, this graphmvp uses "
                                   f"{spec.rules_version}; rebuild them with: {rebuild_command(self.store, [kind])}")

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as e:
                raise LabelsError(f"{self.path}: not an HDF5 file ({e})") from None
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, -1
        return state


def _check_index(i: int, n: int) -> int:
    i = int(i)
    if not 0 <= i < n:
        raise IndexError(f"molecule {i} out of range for a store of {n}")
    return i


class AtomLabels:
    """Per-atom class indices of one atom-level kind (``motif``, ``contextual``) of a store.

    With ``preload`` (default) the whole int32 label array is read at open (4 bytes per atom
    row; ``labels`` is then a slice, about a microsecond); without it each call reads the
    molecule's rows from the sidecar (HDF5 partial read, tens of microseconds).
    """

    def __init__(self, sidecar: _SidecarFile, preload: bool = True):
        self._file = sidecar
        self.kind = sidecar.kind
        g = sidecar.h5[self.kind]
        self.vocab = Vocabulary.from_json(g["vocab"].asstr()[()], f"{sidecar.path}:{self.kind}/vocab")
        self.atom_offset = sidecar.h5["atom_offset"][:]
        self.valid_mask = g["valid"][:].astype(bool)
        self.coverage = float(g.attrs["coverage"])
        self._labels = g["labels"][:] if preload else None
        if not preload:
            sidecar.close()

    @classmethod
    def open(cls, store: str | os.PathLike, kind: str, sidecar: str | os.PathLike | None = None,
             preload: bool = True) -> "AtomLabels":
        """Labels of ``kind`` for ``store`` from its sidecar (default ``STORE.labels.h5``).
        Raises :class:`LabelsError` (missing, wrong kind) or :class:`StaleLabelsError`."""
        if not isinstance(label_kind(kind), AtomLabelKind):
            raise LabelsError(f"'{kind}' is a molecule-level kind; open it with MoleculeLabels")
        try:
            return cls(_SidecarFile(store, kind, sidecar), preload)
        except VocabularyError as e:
            raise LabelsError(str(e)) from None

    def __len__(self) -> int:
        return self.atom_offset.shape[0] - 1

    @property
    def num_classes(self) -> int:
        return self.vocab.size

    @property
    def other_index(self) -> int:
        return OTHER_INDEX

    def labels(self, mol_index: int) -> np.ndarray:
        """Class index of each atom of molecule ``mol_index``, in the store's atom order: int64 [N_m]."""
        mol_index = _check_index(mol_index, len(self))
        a0, a1 = self.atom_offset[mol_index], self.atom_offset[mol_index + 1]
        rows = self._labels[a0:a1] if self._labels is not None else self._file.h5[self.kind]["labels"][a0:a1]
        return rows.astype(np.int64)

    def batch(self, mol_indices: Sequence[int]) -> np.ndarray:
        """Labels of several molecules concatenated in the given order: int64 [sum N_m] (the node
        order of a batched graph of those molecules)."""
        parts = [self.labels(int(i)) for i in mol_indices]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def valid(self, mol_index: int) -> bool:
        """Whether the molecule was labelled (if not, all its atoms are ``<other>``)."""
        return bool(self.valid_mask[mol_index])


class MoleculeLabels:
    """Per-molecule binary flags of a molecule-level kind (``functional_groups``: [M, 85]),
    preloaded (1 byte per molecule and flag)."""

    def __init__(self, sidecar: _SidecarFile):
        self.kind = sidecar.kind
        g = sidecar.h5[self.kind]
        self.names: tuple[str, ...] = tuple(g["names"].asstr()[:])
        self.flags_array: np.ndarray = g["flags"][:]
        self.valid_mask = g["valid"][:].astype(bool)
        sidecar.close()

    @classmethod
    def open(cls, store: str | os.PathLike, kind: str = "functional_groups",
             sidecar: str | os.PathLike | None = None) -> "MoleculeLabels":
        if not isinstance(label_kind(kind), MoleculeLabelKind):
            raise LabelsError(f"'{kind}' is an atom-level kind; open it with AtomLabels")
        return cls(_SidecarFile(store, kind, sidecar))

    def __len__(self) -> int:
        return self.flags_array.shape[0]

    @property
    def num_flags(self) -> int:
        return len(self.names)

    def flags(self, mol_index: int) -> np.ndarray:
        """Flags of molecule ``mol_index``: uint8 [F]."""
        return self.flags_array[_check_index(mol_index, len(self))]

    def batch(self, mol_indices: Sequence[int]) -> np.ndarray:
        """Flags of several molecules: uint8 [B, F]."""
        return self.flags_array[np.asarray(mol_indices, dtype=np.int64)]

    def valid(self, mol_index: int) -> bool:
        return bool(self.valid_mask[mol_index])
