"""Writing conformer stores (schema in :mod:`graphmvp.data.store`).

Every store is written once at its final size under a temporary name and renamed into place, so
a killed process never leaves a half-written file where a good one is expected.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from typing import Sequence

import h5py
import numpy as np

import graphmvp
from graphmvp.io import atomic_path
from graphmvp.data.store import FORMAT_VERSION, OFFSET_KEYS, Molecule, SkipRecord, write_checksums
from graphmvp.prep.reasons import is_conformer_level

STR = h5py.string_dtype()

# dataset name -> (dtype, trailing shape, which offset indexes its rows)
ROW_DATASETS = {
    "atoms/atomic_num": (np.uint8, (), "atom_offset"),
    "atoms/features": (np.uint8, (2,), "atom_offset"),
    "edges/index": (np.int32, (2,), "edge_offset"),
    "edges/features": (np.uint8, (2,), "edge_offset"),
    "conformers/positions": (np.float32, (3,), "pos_offset"),
    "conformers/energy": (np.float64, (), "conf_offset"),
    "conformers/boltzmann_weight": (np.float64, (), "conf_offset"),
    "conformers/source_index": (np.int32, (), "conf_offset"),
}
MOLECULE_DATASETS = {
    "molecules/smiles": STR,
    "molecules/source_id": STR,
    "molecules/candidate_index": np.int64,
}
SKIP_DATASETS = {
    "skipped/candidate_index": np.int64,
    "skipped/source_id": STR,
    "skipped/smiles": STR,
    "skipped/reason": STR,
    "skipped/detail": STR,
}
COPY_BLOCK_ROWS = 1 << 20


def derive_counts(n_candidates: int, n_kept: int, reasons: Sequence[str]) -> dict:
    """Counts of a store from its skip table: molecule-level and conformer-level reasons apart."""
    mol = Counter(r for r in reasons if not is_conformer_level(r))
    conf = Counter(r for r in reasons if is_conformer_level(r))
    return {
        "candidates": int(n_candidates),
        "kept": int(n_kept),
        "skipped": dict(sorted(mol.items())),
        "dropped_conformers": dict(sorted(conf.items())),
    }


def _root_attrs(f: h5py.File, config: dict, command: Sequence[str], counts: dict) -> None:
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["tool_version"] = graphmvp.__version__
    f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    f.attrs["config"] = json.dumps(config, sort_keys=True)
    f.attrs["command"] = json.dumps(list(command))
    f.attrs["counts"] = json.dumps(counts, sort_keys=True)
    f.attrs["hydrogens"] = config.get("hydrogens", "keep")
    write_checksums(f)  # last: covers every dataset written before


def write_store(
    path: str | os.PathLike,
    molecules: Sequence[Molecule],
    skipped: Sequence[SkipRecord],
    config: dict,
    command: Sequence[str] = (),
    n_candidates: int | None = None,
) -> None:
    """Write ``molecules`` (in order) and the skip table to a new store at ``path``, atomically."""
    mols = list(molecules)
    counts_per = {
        "atom_offset": [m.num_atoms for m in mols],
        "edge_offset": [m.num_edges for m in mols],
        "conf_offset": [m.num_conformers for m in mols],
        "pos_offset": [m.num_conformers * m.num_atoms for m in mols],
    }
    columns = {
        "atoms/atomic_num": [m.atomic_num for m in mols],
        "atoms/features": [m.atom_features for m in mols],
        "edges/index": [np.asarray(m.edge_index).T for m in mols],
        "edges/features": [m.edge_features for m in mols],
        "conformers/positions": [np.asarray(m.positions).reshape(-1, 3) for m in mols],
        "conformers/energy": [m.energy for m in mols],
        "conformers/boltzmann_weight": [m.boltzmann_weight for m in mols],
        "conformers/source_index": [m.conf_source_index for m in mols],
    }
    if n_candidates is None:
        n_candidates = len(mols) + sum(1 for s in skipped if not is_conformer_level(s.reason))
    counts = derive_counts(n_candidates, len(mols), [s.reason for s in skipped])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, sizes in counts_per.items():
            f.create_dataset(f"molecules/{key}", data=np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))
        for name, (dtype, trail, _) in ROW_DATASETS.items():
            parts = columns[name]
            data = np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *trail), dtype)
            f.create_dataset(name, data=data.reshape(-1, *trail))
        f.create_dataset("molecules/smiles", data=[m.smiles for m in mols], dtype=STR)
        f.create_dataset("molecules/source_id", data=[m.source_id for m in mols], dtype=STR)
        f.create_dataset("molecules/candidate_index", data=np.array([m.candidate_index for m in mols], np.int64))
        f.create_dataset("skipped/candidate_index", data=np.array([s.candidate_index for s in skipped], np.int64))
        for col in ("source_id", "smiles", "reason", "detail"):
            f.create_dataset(f"skipped/{col}", data=[getattr(s, col) for s in skipped], dtype=STR)
        _root_attrs(f, config, command, counts)


def concatenate_stores(
    inputs: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    config: dict,
    command: Sequence[str],
    n_candidates: int,
    max_molecules: int | None = None,
) -> dict:
    """Concatenate stores in the given order into a new store, streaming in blocks.

    With ``max_molecules``, only the first that many molecules are kept, and only the skip rows
    of candidates up to the last kept molecule (so the result equals a run that stopped there);
    the candidate count is then that molecule's candidate index + 1 instead of ``n_candidates``
    (the cap is only applied to whole data sets, whose candidate indices start at 0).
    Returns the counts written.
    """
    # plan: how many molecules (and skip rows) of each input to take
    plan = []
    remaining = max_molecules
    cutoff = None  # candidate index of the last kept molecule when the cap bites
    for p in inputs:
        with h5py.File(p, "r") as f:
            n = int(f["molecules/smiles"].shape[0])
            take = n if remaining is None else min(n, remaining)
            if remaining is not None:
                remaining -= take
                if remaining == 0 and cutoff is None and take > 0:
                    cutoff = int(f["molecules/candidate_index"][take - 1])
            plan.append({"path": p, "take": take, "offsets": {k: f[f"molecules/{k}"][: take + 1] for k in OFFSET_KEYS}})
        if remaining == 0:
            break
    skip_take = []
    reasons: list[str] = []
    for item in plan:
        with h5py.File(item["path"], "r") as f:
            cand = f["skipped/candidate_index"][:]
            rows = np.flatnonzero(cand <= cutoff) if cutoff is not None else np.arange(len(cand))
            skip_take.append(rows)
            reasons.extend(f["skipped/reason"].asstr()[:][rows] if len(rows) else [])
    n_mol = sum(item["take"] for item in plan)
    if cutoff is not None:
        n_candidates = cutoff + 1
    counts = derive_counts(n_candidates, n_mol, reasons)

    totals = {k: sum(int(item["offsets"][k][item["take"]]) for item in plan) for k in OFFSET_KEYS}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        for key in OFFSET_KEYS:
            out.create_dataset(f"molecules/{key}", shape=(n_mol + 1,), dtype=np.int64)
        for name, (dtype, trail, off_key) in ROW_DATASETS.items():
            out.create_dataset(name, shape=(totals[off_key], *trail), dtype=dtype)
        for name, dtype in MOLECULE_DATASETS.items():
            out.create_dataset(name, shape=(n_mol,), dtype=dtype)
        n_skip = sum(len(r) for r in skip_take)
        for name, dtype in SKIP_DATASETS.items():
            out.create_dataset(name, shape=(n_skip,), dtype=dtype)

        base = {k: 0 for k in OFFSET_KEYS}
        mol_pos = skip_pos = 0
        for item, rows in zip(plan, skip_take):
            take = item["take"]
            with h5py.File(item["path"], "r") as f:
                for key in OFFSET_KEYS:
                    off = item["offsets"][key]
                    out[f"molecules/{key}"][mol_pos : mol_pos + take + 1] = off[: take + 1] - off[0] + base[key]
                for name, (_, _, off_key) in ROW_DATASETS.items():
                    end = int(item["offsets"][off_key][take])
                    dst0 = base[off_key]
                    for s in range(0, end, COPY_BLOCK_ROWS):
                        e = min(end, s + COPY_BLOCK_ROWS)
                        out[name][dst0 + s : dst0 + e] = f[name][s:e]
                for name in MOLECULE_DATASETS:
                    if take:
                        out[name][mol_pos : mol_pos + take] = f[name][:take]
                if len(rows):
                    for name in SKIP_DATASETS:
                        out[name][skip_pos : skip_pos + len(rows)] = f[name][:][rows]
            for key in OFFSET_KEYS:
                base[key] += int(item["offsets"][key][take])
            mol_pos += take
            skip_pos += len(rows)
        if n_mol == 0:
            for key in OFFSET_KEYS:
                out[f"molecules/{key}"][0] = 0
        _root_attrs(out, config, command, counts)
    return counts
