"""Fixtures for the ``geom_prep`` tests, written by the tests themselves.

* GEOM ``rdkit_folder`` layout: ``rdkit_folder/summary_<subset>.json`` maps SMILES ->
  ``{"pickle_path": "<subset>/<name>.pickle", "totalconfs", "uniqueconfs", "charge", ...}`` and
  each pickle is a dict whose ``"conformers"`` is a list of ``{"rd_mol": explicit-H Mol with ONE
  conformer, "totalenergy" (Hartree), "relativeenergy" (kcal/mol), "boltzmannweight",
  "geom_id", "degeneracy"}``. Boltzmann weights are computed the GEOM way (degeneracy included),
  so they can disagree in order with the energies.
* Small SMILES (CSV, .smi) and SDF files, gzipped or not.
* Reading every dataset of a store, to compare stores.

The ZINC molecules below are rows of the MOSES training split (``zinc_moses_train.csv.gz``,
molsets 0.3.1 package data, MIT licence), already RDKit-canonical.
"""

from __future__ import annotations

import gzip
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom

from graphmvp.data.store import BOLTZMANN_KCAL, HARTREE_TO_KCAL

#: kT at GEOM's 298.15 K, kcal/mol
KT_KCAL = BOLTZMANN_KCAL * 298.15

#: small, quick to embed, RDKit-canonical, no stereo (MOSES / ZINC clean leads)
ZINC_SMILES = (
    "NC(=O)c1cc(Br)cc(Br)c1O",
    "CNC(=O)c1ccc(Cl)c(S(=O)(=O)NC)c1",
    "CC1Oc2ccc(Cl)cc2N(CC(O)CO)C1=O",
    "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C",
    "Nc1ncnc2c1ncn2Cc1c(F)cccc1Cl",
    "CCCN(CCC)S(=O)(=O)c1ccc(C)cc1",
    "CC(=O)Oc1cccc(OC(C)=O)c1OC(C)=O",
    "CCC(=O)c1ccc(OCC(O)CO)c(OC)c1",
)


# -- GEOM ----------------------------------------------------------------------------------------
def embed_conformers(smiles: str, n: int, seed: int = 0) -> list[Chem.Mol]:
    """``n`` explicit-H molecules of ``smiles``, each holding ONE ETKDG conformer (as GEOM's rd_mol)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    params.pruneRmsThresh = -1.0
    cids = list(rdDistGeom.EmbedMultipleConfs(mol, n, params))
    assert len(cids) == n, f"could not embed {n} conformers of {smiles}"
    return [Chem.Mol(mol, False, int(cid)) for cid in cids]


def geom_weights(rel_energy_kcal: Sequence[float], degeneracy: Sequence[int]) -> np.ndarray:
    """GEOM's Boltzmann weights: p_i = g_i exp(-E_i/kT) / sum_j g_j exp(-E_j/kT) at 298.15 K."""
    e = np.asarray(rel_energy_kcal, dtype=np.float64)
    w = np.asarray(degeneracy, dtype=np.float64) * np.exp(-(e - e.min()) / KT_KCAL)
    return w / w.sum()


def conformer_records(
    mols: Sequence[Chem.Mol],
    rel_energy_kcal: Sequence[float],
    degeneracy: Sequence[int] | None = None,
    base_hartree: float = -500.0,
    first_geom_id: int = 1000,
) -> list[dict]:
    """GEOM conformer dicts for ``mols`` in the given (file) order with the given energies."""
    rel = np.asarray(rel_energy_kcal, dtype=np.float64)
    deg = np.ones(len(mols), dtype=int) if degeneracy is None else np.asarray(degeneracy)
    weights = geom_weights(rel, deg)
    return [
        {
            "rd_mol": m,
            "totalenergy": base_hartree + float(rel[k]) / HARTREE_TO_KCAL,
            "relativeenergy": float(rel[k] - rel.min()),
            "boltzmannweight": float(weights[k]),
            "geom_id": first_geom_id + k,
            "degeneracy": int(deg[k]),
            "set": 1,
        }
        for k, m in enumerate(mols)
    ]


def rebond(
    mol: Chem.Mol,
    remove: Sequence[tuple[int, int]] = (),
    add: Sequence[tuple[int, int]] = (),
    set_type: Sequence[tuple[int, int, Chem.BondType]] = (),
) -> Chem.Mol:
    """A copy of ``mol`` (same atoms, same coordinates) with bonds removed / added (single) /
    retyped: a rearranged or dissociated conformer as GEOM sometimes holds."""
    rw = Chem.RWMol(mol)
    for i, j in remove:
        rw.RemoveBond(i, j)
    for i, j in add:
        rw.AddBond(i, j, Chem.BondType.SINGLE)
    for i, j, t in set_type:
        rw.GetBondBetweenAtoms(i, j).SetBondType(t)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out


@dataclass
class GeomEntry:
    """One molecule of a GEOM fixture.

    ``kind``: ``"ok"`` (pickle written), ``"missing"`` (summary names a pickle that is not there),
    ``"truncated"`` (only the first half of the pickle's bytes), ``"no_path"`` (summary entry
    without ``pickle_path``).
    """

    smiles: str
    name: str
    conformers: list[dict] = field(default_factory=list)
    kind: str = "ok"

    @property
    def pickle_path(self) -> str:
        return f"drugs/{self.name}.pickle"


def write_geom_folder(root: Path, entries: Sequence[GeomEntry], subset: str = "drugs") -> Path:
    """Write ``root/rdkit_folder`` in GEOM's layout; returns the ``rdkit_folder`` path."""
    folder = Path(root) / "rdkit_folder"
    (folder / subset).mkdir(parents=True, exist_ok=True)
    summary = {}
    for e in entries:
        info = {
            "charge": 0,
            "totalconfs": len(e.conformers),
            "uniqueconfs": len(e.conformers),
            "temperature": 298.15,
            "lowestenergy": min((c["relativeenergy"] for c in e.conformers), default=0.0),
            "poplowestpct": 100.0 * max((c["boltzmannweight"] for c in e.conformers), default=1.0),
            "ensembleenergy": 0.0,
            "ensembleentropy": 0.0,
            "ensemblefreeenergy": 0.0,
        }
        if e.kind != "no_path":
            info["pickle_path"] = f"{subset}/{e.name}.pickle"
        summary[e.smiles] = info
        if e.kind in ("ok", "truncated"):
            payload = pickle.dumps({"smiles": e.smiles, "charge": 0, "conformers": e.conformers, **{k: v for k, v in info.items() if k != "pickle_path"}})
            if e.kind == "truncated":
                payload = payload[: len(payload) // 2]
            (folder / subset / f"{e.name}.pickle").write_bytes(payload)
    (folder / f"summary_{subset}.json").write_text(json.dumps(summary, indent=1))
    return folder


def conformer_positions(rd_mol: Chem.Mol) -> np.ndarray:
    """[N, 3] float32 positions of the (only) conformer of a GEOM rd_mol, as the store keeps them."""
    return rd_mol.GetConformer().GetPositions().astype(np.float32)


# -- SMILES / SDF files --------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> Path:
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def write_smiles_csv(path: Path, smiles: Sequence[str], column: str = "SMILES", extra: bool = True) -> Path:
    """CSV with a header; a second column (``id``) unless ``extra`` is False. Gzipped for ``.gz``."""
    if extra:
        lines = [f"id,{column}"] + [f"m{k},{s}" for k, s in enumerate(smiles)]
    else:
        lines = [column, *smiles]
    return _write_text(path, "\n".join(lines) + "\n")


def write_smi(path: Path, smiles: Sequence[str]) -> Path:
    """``.smi``: ``SMILES name`` per line, no header."""
    return _write_text(path, "".join(f"{s} mol{k}\n" for k, s in enumerate(smiles)))


def write_sdf(path: Path, smiles: Sequence[str], titled: bool = True, three_d: bool = False) -> Path:
    """SDF of the molecules of ``smiles`` with atoms in the SMILES' own order (2D coordinates, or
    3D without hydrogens). Titles ``zinc<k>`` unless ``titled`` is False (RDKit then writes an
    empty first line, as many SDF files have)."""
    blocks = []
    for k, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if three_d:
            mh = Chem.AddHs(mol)
            AllChem.EmbedMolecule(mh, randomSeed=k + 1)
            mol = Chem.RemoveHs(mh)
        else:
            AllChem.Compute2DCoords(mol)
        if titled:
            mol.SetProp("_Name", f"zinc{k}")
        blocks.append(Chem.MolToMolBlock(mol) + "$$$$\n")
    return _write_text(path, "".join(blocks))


# -- stores --------------------------------------------------------------------------------------
def store_datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a store (strings decoded), by its HDF5 name."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj.asstr()[:] if h5py.check_string_dtype(obj.dtype) else obj[:]

        f.visititems(visit)
    return out


def assert_same_datasets(a: Path, b: Path, ignore: Sequence[str] = ()) -> None:
    """The two stores hold the same datasets with equal shapes, dtypes and values."""
    da, db = store_datasets(a), store_datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        if name in ignore:
            continue
        assert da[name].dtype == db[name].dtype, name
        assert da[name].shape == db[name].shape, (name, da[name].shape, db[name].shape)
        assert np.array_equal(da[name], db[name]), f"dataset {name} differs"


def store_counts(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["counts"])


def read_report(store: Path) -> list[dict]:
    """Rows of ``STORE.skipped.tsv`` as dicts (header: candidate_index, level, source_id, ...)."""
    lines = Path(str(store) + ".skipped.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["candidate_index", "level", "source_id", "smiles", "reason", "detail"]
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def assert_same_molecule(a, b) -> None:
    """Two ``graphmvp.data.Molecule`` are equal in every field."""
    for key in ("atomic_num", "atom_features", "edge_index", "edge_features", "positions", "energy", "boltzmann_weight", "conf_source_index"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), key
    assert (a.smiles, a.source_id, a.candidate_index) == (b.smiles, b.source_id, b.candidate_index)
