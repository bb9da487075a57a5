"""GEOM ``rdkit_folder``: ``summary_<subset>.json`` (SMILES -> ``pickle_path``, ...) + pickles.

Each pickle holds ``conformers``: dicts with ``rd_mol`` (explicit-H RDKit Mol, one conformer),
``totalenergy`` (Hartree), ``boltzmannweight``, ... . Conformers are not guaranteed to be sorted,
and some have a different heavy-atom graph than the molecule (dissociation, tautomers): those
are dropped, counted and reported, and the molecule is kept if enough valid conformers remain.
The molecule's own graph is that of its summary SMILES.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from rdkit import Chem

from graphmvp.data.store import HARTREE_TO_KCAL
from graphmvp.safe_pickle import GEOM_GLOBALS, UnsafePickle, restricted_load
from graphmvp.prep import reasons as R
from graphmvp.prep.config import PrepError
from graphmvp.prep.molecule import build_molecule, conformer_order, graph_key, graph_signature, matched_positions
from graphmvp.prep.reasons import Skip
from graphmvp.prep.sources.base import SOURCES, Candidate, Source


def find_summary(path: Path, subset: str) -> Path:
    """The summary JSON for ``path``: the file itself, or ``summary_<subset>.json`` inside it
    (or inside its ``rdkit_folder``)."""
    if path.is_file():
        return path
    for folder in (path, path / "rdkit_folder"):
        candidate = folder / f"summary_{subset}.json"
        if candidate.is_file():
            return candidate
    raise PrepError(f"{path}: no summary_{subset}.json here or in {path / 'rdkit_folder'} (is this GEOM's rdkit_folder?)")


@SOURCES.register("geom")
class GeomSource(Source):
    name = "geom"

    def __init__(self, config, excluded=frozenset()):
        super().__init__(config, excluded)
        self.summary_path = find_summary(Path(config.input), config.geom_subset)
        self.root = self.summary_path.parent.resolve()

    def input_file(self) -> Path:
        return self.summary_path

    def candidates(self) -> list[Candidate]:
        try:
            with open(self.summary_path) as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError (binary junk)
            raise PrepError(f"{self.summary_path}: cannot read the GEOM summary ({e})") from None
        if not isinstance(summary, dict):
            raise PrepError(f"{self.summary_path}: expected a JSON object SMILES -> info")
        out = []
        for smiles, info in summary.items():
            pickle_path = info.get("pickle_path", "") if isinstance(info, dict) else ""
            pickle_path = pickle_path if isinstance(pickle_path, str) else ""
            out.append(Candidate(source_id=pickle_path or f"{self.summary_path.name}[{smiles}]", smiles=smiles, payload=pickle_path))
        return out

    def build(self, candidate: Candidate, index: int):
        cfg = self.config
        if not candidate.payload:
            raise Skip(R.NO_PICKLE_PATH, f"summary entry {candidate.smiles} has no pickle_path")
        mol = Chem.MolFromSmiles(candidate.smiles)
        if mol is None:
            raise Skip(R.UNPARSABLE_SMILES, candidate.smiles)
        self.check_excluded(mol)
        confs = self._load_conformers(self.pickle_file(candidate.payload))
        n = len(confs)
        if n < cfg.min_confs:
            raise Skip(R.TOO_FEW_CONFORMERS, f"{n} conformers < --min-confs {cfg.min_confs}")
        if n > cfg.max_confs:
            raise Skip(R.TOO_MANY_CONFORMERS, f"{n} conformers > --max-confs {cfg.max_confs}")

        energy = np.array([_number(c, "totalenergy") * HARTREE_TO_KCAL for c in confs])
        weight = np.array([_number(c, "boltzmannweight") for c in confs])
        needed = {"energy": (energy, "totalenergy"), "boltzmann": (weight, "boltzmannweight")}.get(cfg.select)
        if needed is not None and np.isnan(needed[0]).any():
            bad = int(np.flatnonzero(np.isnan(needed[0]))[0])
            raise Skip(R.MISSING_ENERGY, f"conformer {bad} has no {needed[1]} (needed by --select {cfg.select})")

        ref_key = graph_key(mol)
        ref = ref_sig = None
        kept, positions, drops = [], [], []
        for idx in conformer_order(energy, weight, cfg.select):
            idx = int(idx)
            rd_mol = confs[idx].get("rd_mol") if isinstance(confs[idx], dict) else None
            try:
                if rd_mol is None or rd_mol.GetNumConformers() == 0:
                    raise ValueError("no rd_mol with a conformer")
                sig = graph_signature(rd_mol)
                same_as_ref = ref_sig is not None and sig == ref_sig
                key = ref_key if same_as_ref else graph_key(rd_mol)
            except Exception as e:  # RDKit sanitisation errors have many types
                drops.append((R.CONFORMER_UNREADABLE, f"conformer {idx}: {e}"))
                continue
            if key != ref_key:
                drops.append((R.CONFORMER_CHANGED_GRAPH, f"conformer {idx}: {key} != {ref_key}"))
                continue
            if ref is None or same_as_ref:
                if ref is None:
                    ref, ref_sig = rd_mol, sig
                pos = rd_mol.GetConformer().GetPositions()
            else:
                pos = matched_positions(ref, rd_mol)
                if pos is None:
                    drops.append((R.CONFORMER_CHANGED_GRAPH, f"conformer {idx}: atoms cannot be matched to conformer {kept[0]}"))
                    continue
            kept.append(idx)
            positions.append(pos)
            if len(kept) == cfg.n_conf:
                break
        need = min(cfg.min_confs, cfg.n_conf)
        if len(kept) < need:
            why = "; ".join(d for _, d in drops[:3])
            raise Skip(R.TOO_FEW_VALID_CONFORMERS, f"{len(kept)} valid of {n} conformers, need {need} ({why})")
        molecule = build_molecule(
            ref,
            np.stack(positions),
            energy[kept],
            weight[kept],
            np.array(kept),
            cfg.hydrogens,
            smiles=Chem.MolToSmiles(mol),
            source_id=candidate.source_id,
            candidate_index=index,
        )
        return molecule, drops

    def pickle_file(self, pickle_path: str) -> Path:
        """``pickle_path`` of the summary as a file inside the GEOM folder; an absolute path or one
        that resolves (``..``, symlinks) outside the folder is skipped, never opened."""
        try:
            path = (self.root / pickle_path).resolve()
        except (OSError, ValueError) as e:  # a NUL byte, a symlink loop
            raise Skip(R.UNPARSABLE_RECORD, f"pickle_path {pickle_path!r}: {e}") from None
        if Path(pickle_path).is_absolute() or not path.is_relative_to(self.root):
            raise Skip(R.PICKLE_PATH_OUTSIDE, f"pickle_path {pickle_path!r} is not inside {self.root}")
        return path

    @staticmethod
    def _load_conformers(path: Path) -> list:
        if not path.is_file():
            raise Skip(R.MISSING_PICKLE, str(path))
        try:
            with open(path, "rb") as f:
                data = restricted_load(f, GEOM_GLOBALS)
        except UnsafePickle as e:
            raise Skip(R.UNSAFE_PICKLE, f"{path}: {e}") from None
        except Exception as e:  # truncated or corrupt pickles raise many different errors
            raise Skip(R.UNREADABLE_PICKLE, f"{path}: {type(e).__name__}: {e}") from None
        confs = data.get("conformers") if isinstance(data, dict) else None
        if not confs:
            raise Skip(R.NO_CONFORMERS, str(path))
        return list(confs)


def _number(conf, key: str) -> float:
    value = conf.get(key) if isinstance(conf, dict) else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value
