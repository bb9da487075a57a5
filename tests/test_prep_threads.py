"""RDKit threads inside a preparation worker share out the work and change nothing stored; a run
started before an option existed still resumes with that option's legacy value."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rdkit import Chem

from geom_fixture import ZINC_SMILES, write_smiles_csv
from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.conformers import generate_conformers
from graphmvp.prep.pipeline import _prepare_parts, parts_dir


@pytest.mark.parametrize("smiles", ZINC_SMILES[:3])
def test_two_threads_give_the_same_conformers_and_energies(smiles):
    mol = Chem.MolFromSmiles(smiles)
    _, pos1, e1 = generate_conformers(mol, 6, seed=11, threads=1)
    _, pos2, e2 = generate_conformers(mol, 6, seed=11, threads=2)
    assert pos1.shape == pos2.shape and pos1.shape[0] == 6
    assert np.array_equal(pos1, pos2) and np.array_equal(e1, e2)


def test_threads_default_to_cores_per_worker_and_are_not_result_defining(tmp_path, monkeypatch):
    csv = write_smiles_csv(tmp_path / "m.csv", ZINC_SMILES[:2])
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    cfg = PrepConfig(input=str(csv), output=str(tmp_path / "m.h5"), workers=2).resolved()
    assert cfg.rdkit_threads == 4
    assert "rdkit_threads" not in cfg.result_defining()
    with pytest.raises(PrepError, match="--rdkit-threads"):
        PrepConfig(input=str(csv), output=str(tmp_path / "m.h5"), rdkit_threads=0).resolved()


def test_a_run_from_before_conf_timeout_resumes_with_its_legacy_value(tmp_path):
    csv = write_smiles_csv(tmp_path / "m.csv", ZINC_SMILES[:2])
    out = tmp_path / "m.h5"
    parts = parts_dir(out)
    fingerprint = {"file": str(csv), "size": 1}
    old = PrepConfig(input=str(csv), output=str(out), conf_timeout=0).resolved()
    _prepare_parts(parts, old, 10, fingerprint)
    run_file = parts / "run.json"
    run = json.loads(run_file.read_text())
    del run["config"]["conf_timeout"]  # as written by a version without the option
    run_file.write_text(json.dumps(run))
    _prepare_parts(parts, old, 10, fingerprint)  # no limit then = --conf-timeout 0 now: resumes
    assert (parts / "run.json").is_file()
    new = PrepConfig(input=str(csv), output=str(out), conf_timeout=120).resolved()
    with pytest.raises(PrepError, match="conf_timeout"):
        _prepare_parts(parts, new, 10, fingerprint)
