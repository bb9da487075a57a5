"""The HDF5 conformer store: schema and reader.

One file holds every molecule of a prepared data set as concatenated (CSR-style) arrays with
per-molecule offsets, so that reading one molecule or a slice touches only its rows and opening a
store with a million molecules reads nothing but a few attributes.

Schema, ``format_version`` 1 (M molecules, A atoms, E directed edges, K conformers, P position
rows; every dataset is contiguous and written once, at its final size)::

    /molecules/atom_offset       int64   [M+1]  atoms of molecule m: rows atom_offset[m]:atom_offset[m+1]
    /molecules/edge_offset       int64   [M+1]  edges of molecule m
    /molecules/conf_offset       int64   [M+1]  conformers of molecule m
    /molecules/pos_offset        int64   [M+1]  position rows of molecule m (C_m x N_m rows)
    /molecules/smiles            str     [M]    canonical isomeric SMILES (RDKit, heavy atoms)
    /molecules/source_id         str     [M]    where it came from (GEOM pickle_path, file:line, file#record)
    /molecules/candidate_index   int64   [M]    position in the (shuffled) candidate list of the run
    /atoms/atomic_num            uint8   [A]
    /atoms/features              uint8   [A,2]  Hu et al. (type = Z-1, chirality tag); see graphmvp.features
    /edges/index                 int32   [E,2]  (src, dst), molecule-local atom indices, both directions
    /edges/features              uint8   [E,2]  Hu et al. (bond type, bond direction)
    /conformers/positions        float32 [P,3]  Angstrom; molecule m's block reshapes to [C_m, N_m, 3]
    /conformers/energy           float64 [K]    total energy, kcal/mol (GEOM: totalenergy x 627.5095)
    /conformers/boltzmann_weight float64 [K]    GEOM's boltzmannweight, or MMFF-based at 298.15 K
    /conformers/source_index     int32   [K]    index of the conformer in its source's list
    /skipped/candidate_index     int64   [S]    molecules that were skipped, one row each ...
    /skipped/source_id           str     [S]
    /skipped/smiles              str     [S]
    /skipped/reason              str     [S]    a short fixed reason key (see graphmvp.prep.reasons)
    /skipped/detail              str     [S]    free text

Root attributes: ``format_version`` (int), ``tool_version``, ``created`` (UTC ISO time),
``config`` (JSON: the fully resolved preparation config), ``command`` (JSON list: argv),
``counts`` (JSON: candidates, kept, skipped per reason), ``hydrogens`` ("keep" or "drop").

Conformers of a molecule are stored in selection order (e.g. lowest energy first).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from graphmvp.molgraph import MolGraph

FORMAT_VERSION = 1

#: kcal/mol per Hartree (CODATA 2018, as used by GEOM's own tools)
HARTREE_TO_KCAL = 627.509474
#: Boltzmann constant in kcal/(mol K)
BOLTZMANN_KCAL = 0.0019872041

OFFSET_KEYS = ("atom_offset", "edge_offset", "conf_offset", "pos_offset")


class StoreFormatError(ValueError):
    """The file is not a conformer store this version can read."""


@dataclass
class Molecule(MolGraph):
    """One molecule of the store, as numpy arrays: its graph (a :class:`MolGraph`) and its
    conformers.

    Shapes: the graph's ``atomic_num`` [N], ``atom_features`` [N, 2], ``edge_index`` [2, E] int64,
    ``edge_features`` [E, 2]; ``positions`` [C, N, 3], ``energy``/``boltzmann_weight``/
    ``conf_source_index`` [C].

    A Molecule *is* a MolGraph (a subclass, not a holder of one), so it goes wherever a graph is
    expected (masking, batching, a 2D task) and its graph fields are the store's rows as they
    are (:data:`ROW_FIELDS`), with no conversion. :attr:`graph` is the graph alone, for what keeps
    or ships graphs (pretraining samples, fine-tuning data sets): the conformers, the text and,
    for a :class:`StoredMolecule`, the store do not travel with it.
    """

    positions: np.ndarray
    energy: np.ndarray
    boltzmann_weight: np.ndarray
    conf_source_index: np.ndarray
    smiles: str
    source_id: str
    candidate_index: int = -1

    @classmethod
    def from_graph(cls, graph: MolGraph, **conformers_and_text) -> "Molecule":
        """The molecule with ``graph``'s arrays (no copy) and the other fields given by name."""
        return cls(graph.atomic_num, graph.atom_features, graph.edge_index, graph.edge_features, **conformers_and_text)

    @property
    def num_conformers(self) -> int:
        return int(self.positions.shape[0])

    @property
    def graph(self) -> MolGraph:
        """The molecule's graph as a plain :class:`MolGraph` sharing these arrays (no copy)."""
        return MolGraph(self.atomic_num, self.atom_features, self.edge_index, self.edge_features)


@dataclass
class SkipRecord:
    """A molecule that did not make it into the store, and why."""

    candidate_index: int
    source_id: str
    smiles: str
    reason: str
    detail: str = ""


@dataclass
class StoreSummary:
    """What ``graphmvp-prep info`` prints."""

    path: str
    format_version: int
    tool_version: str
    created: str
    hydrogens: str
    n_molecules: int
    n_conformers: int
    n_atoms: int
    n_edges: int
    file_bytes: int
    counts: dict
    config: dict = field(repr=False)

    def format(self) -> str:
        m = max(self.n_molecules, 1)
        lines = [
            f"store            {self.path}",
            f"format_version   {self.format_version} (written by graphmvp {self.tool_version} at {self.created})",
            f"source           {self.config.get('input', '?')} ({self.config.get('source', '?')})",
            f"molecules        {self.n_molecules}",
            f"conformers       {self.n_conformers} ({self.n_conformers / m:.2f} per molecule; "
            f"at most {self.config.get('n_conf', '?')}, rule '{self.config.get('select', '?')}')",
            f"atoms            {self.n_atoms} ({self.n_atoms / m:.1f} per molecule; hydrogens {self.hydrogens})",
            f"directed edges   {self.n_edges} ({self.n_edges / m:.1f} per molecule)",
            f"file size        {self.file_bytes} bytes ({self.file_bytes / m:.0f} bytes per molecule)",
            f"candidates       {self.counts.get('candidates', '?')}",
        ]
        skipped = self.counts.get("skipped", {})
        lines.append(f"skipped          {sum(skipped.values())}")
        for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<30} {n}")
        dropped = self.counts.get("dropped_conformers", {})
        lines.append(f"dropped confs    {sum(dropped.values())} (molecule kept with its other conformers)")
        for reason, n in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<30} {n}")
        return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------------
#: Molecule field -> (its dataset, the offset array that indexes the dataset's rows)
ROW_FIELDS: dict[str, tuple[str, str]] = {
    "atomic_num": ("atoms/atomic_num", "atom_offset"),
    "atom_features": ("atoms/features", "atom_offset"),
    "edge_index": ("edges/index", "edge_offset"),
    "edge_features": ("edges/features", "edge_offset"),
    "positions": ("conformers/positions", "pos_offset"),
    "energy": ("conformers/energy", "conf_offset"),
    "boltzmann_weight": ("conformers/boltzmann_weight", "conf_offset"),
    "conf_source_index": ("conformers/source_index", "conf_offset"),
}
#: Molecule text field -> its (variable-length UTF-8 string) dataset
TEXT_FIELDS: dict[str, str] = {"smiles": "molecules/smiles", "source_id": "molecules/source_id"}
CANDIDATE_DATASET = "molecules/candidate_index"


class _RowReader:
    """Reads the rows ``[start, stop)`` of one numeric dataset as a new, writable numpy array.

    A contiguous dataset (what graphmvp-prep writes: no chunks, so no filters) is read with
    ``os.preadv`` of its raw bytes straight into the array: ~1 us per read, against ~3-5 us for an
    h5py slice of an open dataset and ~30 us when the dataset is also looked up by name. The raw
    position (``H5Dget_offset``) is checked once against h5py on the first rows; chunked datasets,
    datasets whose check fails and platforms without ``preadv`` are read with h5py slicing.
    """

    def __init__(self, dset: h5py.Dataset, fd: int | None):
        self.dset = dset
        self.name = dset.name
        self.dtype = dset.dtype
        self.row_shape = tuple(int(s) for s in dset.shape[1:])
        self.num_rows = int(dset.shape[0])
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self.fd: int | None = None
        self.offset: int | None = None
        if fd is not None and dset.chunks is None and self.dtype.kind in "biuf" and self.num_rows > 0:
            offset = dset.id.get_offset()
            if offset is not None:
                self.fd, self.offset = fd, int(offset)
                k = min(self.num_rows, 16)
                if self.read(0, k).tobytes() != dset[0:k].tobytes():
                    self.fd = self.offset = None

    @property
    def raw(self) -> bool:
        """True if rows are read with ``preadv`` (False: h5py slicing)."""
        return self.offset is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` ([stop - start, *row_shape]); raises StoreFormatError outside the
        dataset (a corrupt offset array) or on a short read (a truncated file)."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.num_rows:
            raise StoreFormatError(f"{self.name}: rows {start}:{stop} outside the dataset's {self.num_rows} rows (corrupt offsets?)")
        if self.offset is None:
            return self.dset[start:stop]
        out = np.empty((stop - start, *self.row_shape), self.dtype)
        if out.nbytes == 0:
            return out
        position = self.offset + start * self.row_bytes
        done = os.preadv(self.fd, [out], position)
        if done < out.nbytes:  # a short read: at most ~2 GiB per call on Linux, or the file ends
            view = memoryview(out).cast("B")
            while done < len(view):
                got = os.preadv(self.fd, [view[done:]], position + done)
                if got <= 0:
                    raise StoreFormatError(f"{self.name}: file ends inside rows {start}:{stop} (truncated store?)")
                done += got
        return out


class _TextReader:
    """Reads entries of a variable-length UTF-8 string dataset with HDF5's low-level calls.

    One entry: ~10 us on a 10k-molecule store (an h5py ``dset.asstr()[i]`` with the lookup is
    ~90 us), ~35-50 us at random on a 1M store (see :class:`StoredMolecule`); a range: one read.
    """

    def __init__(self, dset: h5py.Dataset):
        self.dset = dset
        # one entry: a kept file/memory dataspace pair saves ~10 us per read; the lock keeps the
        # select-then-read pair atomic if threads share the store
        self._one_space = dset.id.get_space()
        self._one_memory = h5py.h5s.create_simple((1,))
        self._one_lock = threading.Lock()

    def _read(self, space: h5py.h5s.SpaceID, n: int) -> np.ndarray:
        out = np.empty(n, dtype=self.dset.dtype)
        if n:
            self.dset.id.read(h5py.h5s.create_simple((n,)), space, out)
        return out

    def one(self, i: int) -> str:
        out = np.empty(1, dtype=self.dset.dtype)
        with self._one_lock:
            self._one_space.select_hyperslab((int(i),), (1,))
            self.dset.id.read(self._one_memory, self._one_space, out)
        return _text(out[0])

    def range(self, start: int, stop: int) -> np.ndarray:
        """Entries ``start:stop`` as an object array of bytes."""
        if stop <= start:
            return np.empty(0, dtype=object)
        space = self.dset.id.get_space()
        space.select_hyperslab((int(start),), (int(stop - start),))
        return self._read(space, int(stop - start))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class _OpenFile:
    """The per-process handles of a store: the h5py file, a raw file descriptor for ``preadv``,
    and one reader per dataset (created on first use, at most one per dataset)."""

    def __init__(self, path: Path):
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as e:
            raise StoreFormatError(f"{path}: not an HDF5 file ({e})") from None
        self.pid = os.getpid()
        self.fd: int | None = os.open(path, os.O_RDONLY) if hasattr(os, "preadv") else None
        self._rows: dict[str, _RowReader] = {}
        self._texts: dict[str, _TextReader] = {}

    def rows(self, name: str) -> _RowReader:
        reader = self._rows.get(name)
        if reader is None:
            reader = self._rows[name] = _RowReader(self.h5[name], self.fd)
        return reader

    def text(self, name: str) -> _TextReader:
        reader = self._texts.get(name)
        if reader is None:
            reader = self._texts[name] = _TextReader(self.h5[name])
        return reader

    def close(self) -> None:
        self._rows.clear()
        self._texts.clear()
        self.h5.close()
        self.drop_fd()

    def drop_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _array_fields(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A molecule's array fields (as in :class:`Molecule`) from its own rows of each dataset of
    :data:`ROW_FIELDS`."""
    n_atoms = int(rows["atomic_num"].shape[0])
    n_conf = int(rows["energy"].shape[0])
    fields = dict(rows)
    fields["edge_index"] = rows["edge_index"].T.astype(np.int64)
    fields["positions"] = rows["positions"].reshape(n_conf, n_atoms, 3)
    return fields


def _molecule(rows: dict[str, np.ndarray], smiles: str, source_id: str, candidate_index: int) -> Molecule:
    """A :class:`Molecule` from its own rows of each dataset of :data:`ROW_FIELDS`."""
    return Molecule(**_array_fields(rows), smiles=smiles, source_id=source_id, candidate_index=int(candidate_index))


class StoredMolecule(Molecule):
    """A :class:`Molecule` streamed from a :class:`ConformerStore` (what ``store[i]`` and
    :meth:`ConformerStore.molecules_at` return): the same fields, the arrays read at once, but
    ``smiles`` and ``source_id`` read from the store on first access.

    Why: pretraining needs only the arrays, and the strings are the slow part of a random read on
    a large store. HDF5 keeps variable-length strings in global-heap collections, and at random
    over a million molecules its metadata cache cannot hold them: ~35-50 us per string (~10 us
    on a 10k store), against ~25 us for all the arrays of a molecule. Access, assignment,
    equality and ``repr`` behave as for a :class:`Molecule`; a pickled StoredMolecule is a plain
    :class:`Molecule` (strings read first).
    """

    @classmethod
    def streamed(cls, store: "ConformerStore", index: int, rows: dict[str, np.ndarray], candidate_index: int) -> "StoredMolecule":
        """Molecule ``index`` of ``store`` from its rows (:data:`ROW_FIELDS`); text read later."""
        mol = cls.__new__(cls)
        mol.__dict__.update(_array_fields(rows), candidate_index=int(candidate_index))
        mol.__dict__["_text_source"] = (store, int(index))
        mol.__dict__["_text"] = {}
        return mol

    def _get_text(self, name: str) -> str:
        text = self.__dict__.setdefault("_text", {})
        if name not in text:
            store, index = self.__dict__["_text_source"]
            text[name] = store._open().text(TEXT_FIELDS[name]).one(index)
        return text[name]

    def _set_text(self, name: str, value: str) -> None:
        self.__dict__.setdefault("_text", {})[name] = value

    smiles = property(lambda self: self._get_text("smiles"), lambda self, value: self._set_text("smiles", value))
    source_id = property(lambda self: self._get_text("source_id"), lambda self, value: self._set_text("source_id", value))

    def __reduce__(self):
        return (Molecule, tuple(getattr(self, f.name) for f in dataclasses.fields(Molecule)))


class PackedText:
    """Strings kept as one UTF-8 byte array and offsets (no Python object per string).

    ``data`` uint8 [total bytes], ``offset`` int64 [n+1]; entry j is ``data[offset[j]:offset[j+1]]``.
    """

    def __init__(self, data: np.ndarray, offset: np.ndarray):
        self.data = data
        self.offset = offset

    @classmethod
    def pack(cls, values: Sequence[bytes | str]) -> "PackedText":
        encoded = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        offset = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(v) for v in encoded], out=offset[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offset)

    def __len__(self) -> int:
        return len(self.offset) - 1

    def __getitem__(self, j: int) -> str:
        return self.data[self.offset[j] : self.offset[j + 1]].tobytes().decode("utf-8")

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offset.nbytes)


class MoleculeArrays:
    """Molecules held in memory as the store's own concatenated arrays: one array per dataset,
    offsets per molecule, SMILES and source ids packed (:class:`PackedText`), and no Python object
    per molecule. What :meth:`ConformerStore.load` returns.

    Indexing builds a :class:`Molecule` whose arrays are views of these (``edge_index`` is a
    [2, E] int64 copy), in ~5 us. Memory: the numeric bytes of the store's rows (~3.6 KB per GEOM
    molecule with 5 conformers and hydrogens) + 40 bytes per molecule of offsets and candidate
    index + the text. Unlike a list of :class:`Molecule`, forked DataLoader workers share these
    pages instead of copying them (reference counts of per-molecule objects dirty the pages).

    ``offsets``: offset key (:data:`OFFSET_KEYS`) -> int64 [M+1] starting at 0; ``rows``: field of
    :data:`ROW_FIELDS` -> the rows of its dataset; ``text``: field of :data:`TEXT_FIELDS` ->
    :class:`PackedText`; ``candidate_index`` int64 [M].
    """

    def __init__(
        self,
        offsets: dict[str, np.ndarray],
        rows: dict[str, np.ndarray],
        text: dict[str, PackedText],
        candidate_index: np.ndarray,
    ):
        self.offsets = offsets
        self.rows = rows
        self.text = text
        self.candidate_index = candidate_index
        self._len = int(len(candidate_index))

    def __len__(self) -> int:
        return self._len

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"molecule {i} out of range for {self._len} molecules")
        return i

    def molecule(self, i: int) -> Molecule:
        i = self._index(i)
        rows = {}
        for field_name, (_, key) in ROW_FIELDS.items():
            off = self.offsets[key]
            rows[field_name] = self.rows[field_name][off[i] : off[i + 1]]
        return _molecule(rows, self.text["smiles"][i], self.text["source_id"][i], self.candidate_index[i])

    __getitem__ = molecule

    def __iter__(self) -> Iterator[Molecule]:
        for i in range(self._len):
            yield self.molecule(i)

    def smiles(self, i: int) -> str:
        return self.text["smiles"][self._index(i)]

    def num_atoms(self) -> np.ndarray:
        """Atoms per molecule [M]."""
        return np.diff(self.offsets["atom_offset"])

    def num_conformers(self) -> np.ndarray:
        """Conformers per molecule [M]."""
        return np.diff(self.offsets["conf_offset"])

    @property
    def nbytes(self) -> int:
        """Bytes held (all arrays)."""
        arrays = [*self.offsets.values(), *self.rows.values(), self.candidate_index]
        return int(sum(a.nbytes for a in arrays) + sum(t.nbytes for t in self.text.values()))


CHECKSUM_ATTR = "checksums"
_CHECKSUM_BLOCK_BYTES = 64 << 20


def dataset_checksums(f: h5py.File) -> dict[str, int]:
    """CRC-32 of every dataset's content (numeric: the raw bytes; strings: the UTF-8 bytes of the
    entries, NUL-separated), read in blocks of ~64 MB: ``{"/group/name": crc}``."""
    import zlib

    out: dict[str, int] = {}

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.shape is None:
            return
        crc = 0
        n = int(obj.shape[0]) if obj.shape else 1
        row = max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:], dtype=np.int64)))
        step = max(1, _CHECKSUM_BLOCK_BYTES // row)
        for a in range(0, n, step):
            block = obj[a:a + step] if obj.shape else obj[()]
            if h5py.check_string_dtype(obj.dtype) is not None:
                data = b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in np.ravel(block)) + b"\0"
            else:
                data = np.ascontiguousarray(block).tobytes()
            crc = zlib.crc32(data, crc)
        out["/" + name] = crc

    f.visititems(visit)
    return out


def write_checksums(f: h5py.File) -> None:
    """Record :func:`dataset_checksums` in the file's ``checksums`` attribute (call last)."""
    f.attrs[CHECKSUM_ATTR] = json.dumps(dataset_checksums(f), sort_keys=True)


class ConformerStore:
    """Read-only access to a conformer store, streaming: nothing per molecule is kept in memory.

    Opening reads only attributes. The four offset arrays are read on first use and kept: the
    only store-level state that grows with the store, 4 x 8 bytes per molecule (32 MB for 1M
    molecules). Each molecule read touches only its own rows, one ``preadv`` per numeric dataset
    (see :class:`_RowReader`): ~25 us per random molecule of ~40 atoms x 5 conformers, on a 10k
    or a 1M store whose pages are cached (h5py slicing by dataset name took ~0.9 ms); SMILES and
    source id are read only when asked for (:class:`StoredMolecule`). :meth:`molecules_at` reads
    many molecules in store order (~6 us each for consecutive ones); :meth:`molecules` and
    :meth:`load` read a slice with one read per dataset. Nothing else is cached: at most one
    reader per dataset, HDF5's own bounded metadata cache. The handles (h5py file, raw
    descriptor, readers) are reopened transparently in a forked child process (e.g. a DataLoader
    worker), since h5py handles must not cross a fork.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such conformer store")
        self._open_file: _OpenFile | None = None
        f = self.h5
        try:
            version = int(f.attrs["format_version"])
        except KeyError:
            self.close()
            raise StoreFormatError(f"{self.path}: not a graphmvp conformer store (no format_version)") from None
        if version != FORMAT_VERSION:
            self.close()
            raise StoreFormatError(
                f"{self.path}: store format_version {version}, this graphmvp reads {FORMAT_VERSION}; "
                "re-run graphmvp-prep with this version"
            )
        self.format_version = version
        self._len = int(f["molecules/smiles"].shape[0])

    # -- file handle -------------------------------------------------------------------------
    def _open(self) -> _OpenFile:
        handles = self._open_file
        if handles is None or handles.pid != os.getpid():
            if handles is not None:  # inherited through fork: the h5py handle is left alone
                handles.drop_fd()
            handles = self._open_file = _OpenFile(self.path)
        return handles

    @property
    def _pid(self) -> int:
        """The process whose handles are open (-1: none yet)."""
        return self._open_file.pid if self._open_file is not None else -1

    @property
    def h5(self) -> h5py.File:
        return self._open().h5

    def close(self) -> None:
        handles = self._open_file
        if handles is not None and handles.pid == os.getpid():
            handles.close()
        self._open_file = None

    def __enter__(self) -> "ConformerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open_file"] = None
        for key in list(state):
            if key.startswith("_cached_"):
                del state[key]
        return state

    def verify(self) -> bool:
        """Read every dataset and compare it with the checksums recorded when the store was
        written. True: intact; False: a store written before checksums (nothing to compare).
        Raises :class:`StoreFormatError` naming the file for a corrupted or truncated store."""
        try:
            recorded = self.h5.attrs.get(CHECKSUM_ATTR)
            if recorded is None:
                return False
            expected = json.loads(recorded)
            actual = dataset_checksums(self.h5)
        except StoreFormatError:
            raise
        except Exception as e:  # noqa: BLE001 - HDF5 reports damage as OSError, KeyError, ValueError, RuntimeError...
            raise StoreFormatError(f"{self.path}: corrupted store, cannot read it ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}); re-create it") from None
        if not isinstance(expected, dict):
            raise StoreFormatError(f"{self.path}: corrupted store (its checksums attribute is damaged); re-create it")
        bad = sorted(set(expected) ^ set(actual) | {k for k in expected if k in actual and expected[k] != actual[k]})
        if bad:
            raise StoreFormatError(f"{self.path}: corrupted store ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
                                   "fails its checksum); re-create it")
        return True

    # -- metadata ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @cached_property
    def config(self) -> dict:
        return json.loads(self.h5.attrs["config"])

    @cached_property
    def counts(self) -> dict:
        return json.loads(self.h5.attrs["counts"])

    @property
    def hydrogens(self) -> str:
        return str(self.h5.attrs["hydrogens"])

    @cached_property
    def command(self) -> list[str] | None:
        """The command line that wrote the store (``graphmvp-prep ...`` argv), None if not recorded."""
        return json.loads(self.h5.attrs["command"]) if "command" in self.h5.attrs else None

    @property
    def has_positions(self) -> bool:
        return int(self.h5["conformers/energy"].shape[0]) > 0

    def _offsets(self, key: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_cached_offsets", {})
        if key not in cache:
            cache[key] = self._open().rows(f"molecules/{key}").read(0, self._len + 1)
        return cache[key]

    @property
    def atom_offset(self) -> np.ndarray:
        return self._offsets("atom_offset")

    @property
    def conf_offset(self) -> np.ndarray:
        return self._offsets("conf_offset")

    def num_atoms(self) -> np.ndarray:
        """Atoms per molecule [M]."""
        return np.diff(self.atom_offset)

    def num_conformers(self) -> np.ndarray:
        """Conformers per molecule [M]."""
        return np.diff(self.conf_offset)

    def preload_bytes(self) -> int:
        """An upper bound of the memory :meth:`load` needs for the whole store: the file's size.

        The loaded arrays are the file's numeric datasets byte for byte plus its strings without
        HDF5's per-string overhead; the file also holds the skip table and metadata, not loaded.
        """
        return int(self.path.stat().st_size)

    def summary(self) -> StoreSummary:
        f = self.h5
        return StoreSummary(
            path=str(self.path),
            format_version=self.format_version,
            tool_version=str(f.attrs.get("tool_version", "?")),
            created=str(f.attrs.get("created", "?")),
            hydrogens=self.hydrogens,
            n_molecules=len(self),
            n_conformers=int(f["conformers/energy"].shape[0]),
            n_atoms=int(f["atoms/atomic_num"].shape[0]),
            n_edges=int(f["edges/index"].shape[0]),
            file_bytes=self.path.stat().st_size,
            counts=self.counts,
            config=self.config,
        )

    # -- molecules ---------------------------------------------------------------------------
    def smiles(self, i: int) -> str:
        return self._open().text(TEXT_FIELDS["smiles"]).one(self._index(i))

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"molecule {i} out of range for a store of {self._len}")
        return i

    def _read_rows(self, start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """The rows of molecules ``start:stop`` (0 <= start < stop <= M): (field -> rows of its
        dataset, offset key -> offsets [stop - start + 1] starting at 0, candidate indices)."""
        handles = self._open()
        offsets = {key: self._offsets(key)[start : stop + 1] for key in OFFSET_KEYS}
        rows = {
            field_name: handles.rows(name).read(offsets[key][0], offsets[key][-1])
            for field_name, (name, key) in ROW_FIELDS.items()
        }
        relative = {key: off - off[0] for key, off in offsets.items()}
        return rows, relative, handles.rows(CANDIDATE_DATASET).read(start, stop)

    def molecule(self, i: int) -> StoredMolecule:
        """Molecule ``i`` with all its stored conformers (its text is read on first access)."""
        i = self._index(i)
        rows, _, candidate = self._read_rows(i, i + 1)
        return StoredMolecule.streamed(self, i, rows, candidate[0])

    __getitem__ = molecule

    def load(self, start: int = 0, stop: int | None = None) -> MoleculeArrays:
        """Molecules ``start:stop`` (Python slice rules; default: the whole store) in memory as
        :class:`MoleculeArrays`, read with one read per dataset. Memory: at most
        :meth:`preload_bytes` for the whole store."""
        start, stop, _ = slice(start, stop).indices(self._len)
        stop = max(start, stop)
        if start == stop:
            empty_rows = {}
            for field_name, (name, _) in ROW_FIELDS.items():
                reader = self._open().rows(name)
                empty_rows[field_name] = np.zeros((0, *reader.row_shape), reader.dtype)
            offsets = {key: np.zeros(1, dtype=np.int64) for key in OFFSET_KEYS}
            text = {f: PackedText.pack([]) for f in TEXT_FIELDS}
            return MoleculeArrays(offsets, empty_rows, text, np.zeros(0, dtype=np.int64))
        rows, offsets, candidate = self._read_rows(start, stop)
        handles = self._open()
        text = {f: PackedText.pack(handles.text(name).range(start, stop)) for f, name in TEXT_FIELDS.items()}
        return MoleculeArrays(offsets, rows, text, candidate)

    def molecules(self, start: int = 0, stop: int | None = None) -> list[Molecule]:
        """Molecules ``start:stop`` (Python slice rules), read with one slice per dataset (faster
        than one by one)."""
        return list(self.load(start, stop))

    def molecules_at(self, indices: Sequence[int] | np.ndarray) -> list[StoredMolecule]:
        """The molecules at ``indices`` (any order, repeats and negative indices allowed), in that
        order, text read on access as for :meth:`molecule`. They are read in ascending store
        order (forward through the file), each run of consecutive indices as one block."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        idx = np.where(idx < 0, idx + self._len, idx)
        bad = np.flatnonzero((idx < 0) | (idx >= self._len))
        if bad.size:
            raise IndexError(f"molecule {int(np.asarray(indices).reshape(-1)[bad[0]])} out of range for a store of {self._len}")
        if idx.size == 0:
            return []
        unique = np.unique(idx)
        starts = np.flatnonzero(np.diff(unique, prepend=-2) != 1)  # first position of each run
        lengths = np.diff(np.append(starts, len(unique)))
        by_position: list[StoredMolecule] = []
        for first, n in zip(unique[starts].tolist(), lengths.tolist()):
            rows, offsets, candidate = self._read_rows(first, first + n)
            if n == 1:
                by_position.append(StoredMolecule.streamed(self, first, rows, candidate[0]))
                continue
            for j in range(n):
                own = {}
                for field_name, (_, key) in ROW_FIELDS.items():
                    own[field_name] = rows[field_name][offsets[key][j] : offsets[key][j + 1]]
                by_position.append(StoredMolecule.streamed(self, first + j, own, candidate[j]))
        where = np.searchsorted(unique, idx)
        return [by_position[k] for k in where.tolist()]

    def __iter__(self) -> Iterator[Molecule]:
        step = 1024
        for start in range(0, self._len, step):
            yield from self.load(start, start + step)

    def skipped(self) -> list[SkipRecord]:
        """The molecules this store's run skipped, with their reasons."""
        g = self.h5["skipped"]
        return [
            SkipRecord(int(c), s, smi, r, d)
            for c, s, smi, r, d in zip(
                g["candidate_index"][:],
                g["source_id"].asstr()[:],
                g["smiles"].asstr()[:],
                g["reason"].asstr()[:],
                g["detail"].asstr()[:],
            )
        ]


def open_store(path: str | os.PathLike) -> ConformerStore:
    """Open a conformer store for reading."""
    return ConformerStore(path)
