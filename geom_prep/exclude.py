"""Downstream molecules to keep out of pretraining (``--exclude FILE...``)."""

from __future__ import annotations

import logging
from pathlib import Path

from rdkit import Chem
from rdkit.rdBase import BlockLogs

from graphmvp.prep.config import PrepError
from graphmvp.prep.molecule import exclusion_key
from graphmvp.prep.sources.smiles import find_smiles_column, is_smi_file, open_text, read_smiles_file

log = logging.getLogger("graphmvp.prep")


def _headerless_smiles(path: Path) -> list[str] | None:
    """Hu et al.'s ``processed/smiles.csv`` has one SMILES per line and no header."""
    with open_text(path) as f:
        first = f.readline().strip()
        _quiet = BlockLogs()  # a header word is not a SMILES: no RDKit error on stderr
        if "," in first or Chem.MolFromSmiles(first) is None:
            return None
        return [first] + [line.strip() for line in f if line.strip()]


def load_excluded(paths: list[str], ignore_stereo: bool = False) -> frozenset[str]:
    """Canonical SMILES of every parsable molecule in ``paths`` (CSV with a SMILES column, .smi,
    or a header-less one-SMILES-per-line file; gzipped too)."""
    keys: set[str] = set()
    for p in map(Path, paths):
        smiles = _headerless_smiles(p) if not is_smi_file(p) else None
        if smiles is None:
            if not is_smi_file(p):
                with open_text(p) as f:
                    header = f.readline().rstrip("\r\n").split(",")
                find_smiles_column(header, None, p)  # a clear error when there is none
            smiles = [s for _, s in read_smiles_file(p)]
        bad = 0
        for s in smiles:
            mol = Chem.MolFromSmiles(s) if s else None
            if mol is None:
                bad += 1
                continue
            keys.add(exclusion_key(mol, ignore_stereo))
        log.info("exclude: %s: %d molecules (%d unparsable, ignored)", p, len(smiles) - bad, bad)
    if paths and not keys:
        raise PrepError(f"--exclude files {', '.join(paths)} hold no parsable SMILES")
    return frozenset(keys)
