"""Nothing hangs: a molecule whose embedding is slow (C60: ETKDG fails on it for ~50 s) is
stopped at ``--conf-timeout`` and skipped as ``timeout``; an early stop (``--n-mol``) of a
2-worker run with slow molecules in flight ends cleanly (the run is a subprocess with a generous
cap, so a deadlock fails the test instead of hanging the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem

from geom_fixture import ZINC_SMILES, write_smiles_csv
from graphmvp.prep import reasons as R
from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.conformers import generate_conformers
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import ConformerStore

ROOT = Path(__file__).resolve().parents[1]
#: buckminsterfullerene: without a limit ETKDGv3 spends ~50 s and finds nothing (2 cores)
C60 = ("c12c3c4c5c1c1c6c7c2c2c8c3c3c9c4c4c%10c5c5c1c1c6c6c%11c7c2c2c7c8c3c3c8c9c4c4c9c%10c5c5c1c1c6c6c%11c2c2c7"
       "c3c3c8c4c4c9c5c1c1c6c2c3c41")


def test_a_slow_embedding_is_stopped_and_skipped_as_timeout():
    with pytest.raises(R.Skip) as skip:
        generate_conformers(Chem.MolFromSmiles(C60), 4, seed=1, timeout=1)
    assert skip.value.reason == R.TIMEOUT and "--conf-timeout" in skip.value.detail


def test_the_run_skips_the_slow_molecule_and_keeps_the_others(tmp_path):
    csv = write_smiles_csv(tmp_path / "in.csv", [ZINC_SMILES[0], C60, ZINC_SMILES[1]])
    result = prepare(PrepConfig(input=str(csv), output=str(tmp_path / "out.h5"), n_conf=1, gen_confs=1, conf_timeout=1))
    assert result.counts["kept"] == 2 and result.counts["skipped"] == {R.TIMEOUT: 1}


def test_negative_timeout_is_refused(tmp_path):
    csv = write_smiles_csv(tmp_path / "in.csv", [ZINC_SMILES[0]])
    with pytest.raises(PrepError, match="--conf-timeout"):
        prepare(PrepConfig(input=str(csv), output=str(tmp_path / "out.h5"), conf_timeout=-1))


def test_early_stop_with_slow_molecules_in_flight_does_not_hang(tmp_path):
    smiles = [s for pair in zip(ZINC_SMILES[:4], [C60] * 4) for s in pair]  # fast, slow, fast, slow, ...
    csv = write_smiles_csv(tmp_path / "in.csv", smiles)
    store = tmp_path / "out.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "graphmvp.prep.cli", "run", str(csv), "-o", str(store), "--workers", "2", "--chunk-size", "1",
         "--n-mol", "2", "--no-shuffle", "--n-conf", "1", "--gen-confs", "1", "--conf-timeout", "1"],
        env=env, capture_output=True, text=True, timeout=240)  # a hang fails here (the run needs ~10 s)
    assert proc.returncode == 0, proc.stderr
    with ConformerStore(store) as s:
        assert [s[i].smiles for i in range(len(s))] == [Chem.CanonSmiles(x) for x in ZINC_SMILES[:2]]
    assert not Path(str(store) + ".parts").exists()
