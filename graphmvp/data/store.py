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
    /skipped/reason              str     [S]    a short fixed reason key (see geom_prep.reasons)
    /skipped/detail              str     [S]    free text

Root attributes: ``format_version`` (int), ``tool_version``, ``created`` (UTC ISO time),
``config`` (JSON: the fully resolved preparation config), ``command`` (JSON list: argv),
``counts`` (JSON: candidates, kept, skipped per reason), ``hydrogens`` ("keep" or "drop").

Conformers of a molecule are stored in selection order (e.g. lowest energy first).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

FORMAT_VERSION = 1

#: kcal/mol per Hartree (CODATA 2018, as used by GEOM's own tools)
HARTREE_TO_KCAL = 627.509474
#: Boltzmann constant in kcal/(mol K)
BOLTZMANN_KCAL = 0.0019872041

OFFSET_KEYS = ("atom_offset", "edge_offset", "conf_offset", "pos_offset")


class StoreFormatError(ValueError):
    """The file is not a conformer store this version can read."""


@dataclass
class Molecule:
    """One molecule of the store, as numpy arrays.

    Shapes: ``atomic_num`` [N], ``atom_features`` [N, 2], ``edge_index`` [2, E],
    ``edge_features`` [E, 2], ``positions`` [C, N, 3], ``energy``/``boltzmann_weight``/
    ``conf_source_index`` [C].
    """

    atomic_num: np.ndarray
    atom_features: np.ndarray
    edge_index: np.ndarray
    edge_features: np.ndarray
    positions: np.ndarray
    energy: np.ndarray
    boltzmann_weight: np.ndarray
    conf_source_index: np.ndarray
    smiles: str
    source_id: str
    candidate_index: int = -1

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_num.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_conformers(self) -> int:
        return int(self.positions.shape[0])


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


class ConformerStore:
    """Read-only access to a conformer store.

    Opening reads only attributes; offsets are read on first use (8 bytes per molecule each), and
    each molecule read touches only its own rows. The HDF5 handle is reopened transparently in a
    forked child process (e.g. a DataLoader worker), since h5py handles must not cross a fork.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such conformer store")
        self._h5: h5py.File | None = None
        self._pid = -1
        f = self.h5
        try:
            version = int(f.attrs["format_version"])
        except KeyError:
            raise StoreFormatError(f"{self.path}: not a graphmvp conformer store (no format_version)") from None
        if version != FORMAT_VERSION:
            raise StoreFormatError(
                f"{self.path}: store format_version {version}, this graphmvp reads {FORMAT_VERSION}; "
                "re-run graphmvp-prep with this version"
            )
        self.format_version = version
        self._len = int(f["molecules/smiles"].shape[0])

    # -- file handle -------------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as e:
                raise StoreFormatError(f"{self.path}: not an HDF5 file ({e})") from None
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> "ConformerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = -1
        for key in list(state):
            if key.startswith("_cached_"):
                del state[key]
        return state

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

    @property
    def has_positions(self) -> bool:
        return int(self.h5["conformers/energy"].shape[0]) > 0

    def _offsets(self, key: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_cached_offsets", {})
        if key not in cache:
            cache[key] = self.h5[f"molecules/{key}"][:]
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
        return self.h5["molecules/smiles"].asstr()[self._index(i)]

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"molecule {i} out of range for a store of {self._len}")
        return i

    def molecule(self, i: int) -> Molecule:
        """Molecule ``i`` with all its stored conformers."""
        i = self._index(i)
        f = self.h5
        a0, a1 = self._offsets("atom_offset")[i : i + 2]
        e0, e1 = self._offsets("edge_offset")[i : i + 2]
        c0, c1 = self._offsets("conf_offset")[i : i + 2]
        p0, p1 = self._offsets("pos_offset")[i : i + 2]
        n = int(a1 - a0)
        return Molecule(
            atomic_num=f["atoms/atomic_num"][a0:a1],
            atom_features=f["atoms/features"][a0:a1],
            edge_index=f["edges/index"][e0:e1].T.astype(np.int64),
            edge_features=f["edges/features"][e0:e1],
            positions=f["conformers/positions"][p0:p1].reshape(int(c1 - c0), n, 3),
            energy=f["conformers/energy"][c0:c1],
            boltzmann_weight=f["conformers/boltzmann_weight"][c0:c1],
            conf_source_index=f["conformers/source_index"][c0:c1],
            smiles=f["molecules/smiles"].asstr()[i],
            source_id=f["molecules/source_id"].asstr()[i],
            candidate_index=int(f["molecules/candidate_index"][i]),
        )

    __getitem__ = molecule

    def molecules(self, start: int = 0, stop: int | None = None) -> list[Molecule]:
        """Molecules ``start:stop`` (Python slice rules), read with one slice per dataset (faster
        than one by one)."""
        start, stop, _ = slice(start, stop).indices(self._len)
        if start >= stop:
            return []
        f = self.h5
        off = {k: self._offsets(k)[start : stop + 1] for k in OFFSET_KEYS}
        block = {
            "atomic_num": f["atoms/atomic_num"][off["atom_offset"][0] : off["atom_offset"][-1]],
            "atom_features": f["atoms/features"][off["atom_offset"][0] : off["atom_offset"][-1]],
            "edge_index": f["edges/index"][off["edge_offset"][0] : off["edge_offset"][-1]],
            "edge_features": f["edges/features"][off["edge_offset"][0] : off["edge_offset"][-1]],
            "positions": f["conformers/positions"][off["pos_offset"][0] : off["pos_offset"][-1]],
            "energy": f["conformers/energy"][off["conf_offset"][0] : off["conf_offset"][-1]],
            "boltzmann_weight": f["conformers/boltzmann_weight"][off["conf_offset"][0] : off["conf_offset"][-1]],
            "conf_source_index": f["conformers/source_index"][off["conf_offset"][0] : off["conf_offset"][-1]],
        }
        smiles = f["molecules/smiles"].asstr()[start:stop]
        source = f["molecules/source_id"].asstr()[start:stop]
        cand = f["molecules/candidate_index"][start:stop]
        rel = {k: v - v[0] for k, v in off.items()}
        out = []
        for j in range(stop - start):
            a0, a1 = rel["atom_offset"][j : j + 2]
            e0, e1 = rel["edge_offset"][j : j + 2]
            c0, c1 = rel["conf_offset"][j : j + 2]
            p0, p1 = rel["pos_offset"][j : j + 2]
            out.append(
                Molecule(
                    atomic_num=block["atomic_num"][a0:a1],
                    atom_features=block["atom_features"][a0:a1],
                    edge_index=block["edge_index"][e0:e1].T.astype(np.int64),
                    edge_features=block["edge_features"][e0:e1],
                    positions=block["positions"][p0:p1].reshape(int(c1 - c0), int(a1 - a0), 3),
                    energy=block["energy"][c0:c1],
                    boltzmann_weight=block["boltzmann_weight"][c0:c1],
                    conf_source_index=block["conf_source_index"][c0:c1],
                    smiles=smiles[j],
                    source_id=source[j],
                    candidate_index=int(cand[j]),
                )
            )
        return out

    def __iter__(self) -> Iterator[Molecule]:
        step = 1024
        for start in range(0, self._len, step):
            yield from self.molecules(start, start + step)

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
