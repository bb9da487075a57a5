"""Pickles from the internet run no code: GEOM conformer pickles and DeepDTA's ``Y`` carrying
payloads of several kinds are refused (the marker file a payload would write stays absent), the
other molecules are kept, and summary paths that leave the GEOM folder are never opened."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from graphmvp.finetune.dta import load_deepdta, read_affinity_pickle
from graphmvp.finetune.errors import FinetuneError
from geom_fixture import ZINC_SMILES, GeomEntry, conformer_records, embed_conformers, read_report, write_geom_folder
from graphmvp.prep import reasons as R
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import ConformerStore
from graphmvp.safe_pickle import GEOM_GLOBALS, NUMPY_ARRAY_GLOBALS, UnsafePickle, restricted_loads
from test_finetune_dta import KD, davis, py2_pickle  # noqa: F401  (davis is a fixture)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class Reduce:
    """Pickles as ``func(*args)``: what a malicious ``__reduce__`` makes of a file."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def global_pickle(module: str, name: str, arg) -> bytes:
    """``module.name(arg)`` written with the GLOBAL opcode (any module/name string, dotted names too)."""
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + pickle.dumps(arg, protocol=2)[2:-1]
            + b"\x85R.")


def payloads(marker: Path) -> dict[str, bytes]:
    """name -> pickle bytes that create ``marker`` (or delete the folder ``marker.parent / 'keep'``)
    when loaded with :func:`pickle.loads`."""
    m = str(marker)
    keep = marker.parent / "keep"
    return {
        "os.system": pickle.dumps(Reduce(os.system, f"touch {m}")),
        "subprocess": pickle.dumps(Reduce(subprocess.check_call, ["touch", m])),
        "builtins.eval": pickle.dumps(Reduce(eval, f"open({m!r}, 'w').close()")),
        "builtins.exec": pickle.dumps(Reduce(exec, f"open({m!r}, 'w').close()")),
        # an allowed outer callable whose argument is itself a payload
        "nested_reduce": pickle.dumps({"conformers": [{"rd_mol": Reduce(Chem.Mol, Reduce(os.system, f"touch {m}"))}]}),
        "unexpected_module": pickle.dumps(Reduce(shutil.rmtree, str(keep))),
        "allowed_module_other_name": pickle.dumps(Reduce(np.save, m, np.zeros(1))),
        "dotted_attribute": global_pickle("rdkit.Chem.rdchem", "Mol.__init__.__globals__", 0),
    }


def side_effects(marker: Path) -> list[str]:
    out = []
    if marker.exists():
        out.append(f"{marker} was written")
    if marker.with_suffix(".npy").exists():
        out.append("numpy.save ran")
    if not (marker.parent / "keep").is_dir():
        out.append("keep/ was deleted")
    return out


@pytest.fixture
def marker(tmp_path) -> Path:
    (tmp_path / "keep").mkdir()
    return tmp_path / "PWNED"


def test_the_payloads_do_run_under_plain_pickle(marker):
    # proves the payloads are live: the refusals below are what stops them
    for name in ("os.system", "builtins.exec"):
        pickle.loads(payloads(marker)[name])
        assert marker.exists(), name
        marker.unlink()
    pickle.loads(payloads(marker)["unexpected_module"])
    assert not (marker.parent / "keep").exists()


@pytest.mark.parametrize("kind", list(payloads(Path("/x"))))
@pytest.mark.parametrize("allowed", [GEOM_GLOBALS, NUMPY_ARRAY_GLOBALS], ids=["geom", "numpy"])
def test_every_payload_is_refused_and_nothing_runs(marker, kind, allowed):
    with pytest.raises(UnsafePickle, match="refused"):
        restricted_loads(payloads(marker)[kind], allowed)
    assert side_effects(marker) == []


def test_what_the_readers_hold_still_loads():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    data = {"conformers": [{"rd_mol": mol, "totalenergy": -1.5, "set": {1, 2}, "ids": frozenset([3])}],
            "weights": np.arange(3.0), "n": np.int64(4), "x": np.float32(0.5), "tag": None}
    for protocol in (2, 4, 5):
        back = restricted_loads(pickle.dumps(data, protocol=protocol), GEOM_GLOBALS)
        assert Chem.MolToSmiles(back["conformers"][0]["rd_mol"]) == Chem.MolToSmiles(mol)
        np.testing.assert_array_equal(back["weights"], data["weights"])
        assert back["n"] == 4 and back["x"] == np.float32(0.5) and back["conformers"][0]["set"] == {1, 2}
    np.testing.assert_array_equal(restricted_loads(py2_pickle(KD), NUMPY_ARRAY_GLOBALS, encoding="latin1"), KD)
    with pytest.raises(UnsafePickle, match="rdkit.Chem.rdchem.Mol"):  # Y may hold arrays only
        restricted_loads(pickle.dumps(mol), NUMPY_ARRAY_GLOBALS)


# -- GEOM ---------------------------------------------------------------------------------------
@pytest.fixture
def hostile_geom(tmp_path, marker):
    good = [GeomEntry(s, f"good{i}", conformer_records(embed_conformers(s, 2, seed=i), [0.0, 0.1]))
            for i, s in enumerate(ZINC_SMILES[:2])]
    folder = write_geom_folder(tmp_path / "geom", good)
    summary = json.loads((folder / "summary_drugs.json").read_text())
    extra = ["CCO", "CCN", "CCC", "CCS", "CCCl", "CCBr", "CCF", "CCI", "OCCO", "NCCN"]
    for smiles, (kind, data) in zip(extra, payloads(marker).items()):
        (folder / "drugs" / f"{kind}.pickle").write_bytes(data)
        summary[smiles] = {"pickle_path": f"drugs/{kind}.pickle"}
    outside = tmp_path / "outside.pickle"
    outside.write_bytes(pickle.dumps({"conformers": []}))
    summary["C=O"] = {"pickle_path": "../outside.pickle"}
    summary["C#N"] = {"pickle_path": str(outside)}
    (folder / "drugs" / "link.pickle").symlink_to(outside)
    summary["CC#N"] = {"pickle_path": "drugs/link.pickle"}
    (folder / "summary_drugs.json").write_text(json.dumps(summary))
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_geom_payloads_are_skipped_and_the_good_molecules_kept(hostile_geom, marker, tmp_path, workers):
    store = tmp_path / f"out{workers}.h5"
    result = prepare(PrepConfig(input=str(hostile_geom), output=str(store), n_conf=2, workers=workers, chunk_size=2))
    assert side_effects(marker) == []
    with ConformerStore(store) as s:
        assert sorted(s[i].smiles for i in range(len(s))) == sorted(ZINC_SMILES[:2])
    skipped = result.counts["skipped"]
    assert skipped[R.UNSAFE_PICKLE] == len(payloads(marker))
    assert skipped[R.PICKLE_PATH_OUTSIDE] == 3
    rows = [r for r in read_report(store) if r["reason"] == R.UNSAFE_PICKLE]
    assert all("refused global" in r["detail"] for r in rows)


# -- DeepDTA Y ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "nested_reduce", "unexpected_module"])
def test_dta_payload_is_a_one_line_error_naming_the_file(davis, marker, kind):  # noqa: F811
    (davis / "Y").write_bytes(payloads(marker)[kind])
    with pytest.raises(FinetuneError) as err:
        load_deepdta(davis)
    assert str(davis / "Y") in str(err.value) and "unsafe pickle" in str(err.value) and "\n" not in str(err.value)
    assert side_effects(marker) == []


@pytest.mark.skipif(not (SHARED / "dta").is_dir(), reason="../shared/data/dta is absent")
@pytest.mark.parametrize("name,shape", [("davis", (68, 442)), ("kiba", (2111, 229))])
def test_the_real_deepdta_y_loads(name, shape):
    assert read_affinity_pickle(SHARED / "dta" / name / "Y").shape == shape
