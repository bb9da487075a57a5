"""SMILES files (CSV with a SMILES column, ``.smi``; gzipped too) and SDF files.

Conformers are generated with RDKit (ETKDGv3 + MMFF94, :mod:`graphmvp.prep.conformers`); Boltzmann
weights at 298.15 K come from the MMFF94 energies of all generated conformers. For SDF input the
record's graph (and stereo, perceived from its coordinates when 3D) defines the molecule; its own
coordinates are not used as a conformer, so every source goes through the same generator.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from rdkit import Chem

from graphmvp.prep import reasons as R
from graphmvp.prep.config import PrepError
from graphmvp.prep.conformers import generate_conformers
from graphmvp.prep.molecule import boltzmann_weights, build_molecule, conformer_order
from graphmvp.prep.reasons import Skip
from graphmvp.prep.sources.base import SOURCES, Candidate, Source

SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "mol", "smi")


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gunzipping ``.gz`` files."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def is_smi_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(".smi") or name.endswith(".smiles") or name.endswith(".txt")


def find_smiles_column(header: list[str], wanted: str | None, path: Path) -> int:
    if wanted is not None:
        if wanted not in header:
            raise PrepError(f"{path}: no column '{wanted}' (columns: {', '.join(header)})")
        return header.index(wanted)
    lowered = [h.strip().lower() for h in header]
    for name in SMILES_COLUMN_NAMES:
        if name in lowered:
            return lowered.index(name)
    raise PrepError(f"{path}: no SMILES column among {', '.join(header)}; name it with --smiles-col")


def read_smiles_file(path: Path, smiles_col: str | None = None) -> list[tuple[int, str]]:
    """(line number, SMILES) for every molecule of a CSV or .smi file (1-based line numbers)."""
    out = []
    try:
        with open_text(path) as f:
            if is_smi_file(path):
                for line_no, line in enumerate(f, start=1):
                    tokens = line.split()
                    if not tokens or (line_no == 1 and tokens[0].lower() in SMILES_COLUMN_NAMES):
                        continue
                    out.append((line_no, tokens[0]))
            else:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None:
                    return []
                col = find_smiles_column(header, smiles_col, path)
                for row in reader:
                    if not row:
                        continue
                    out.append((reader.line_num, row[col].strip() if col < len(row) else ""))
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as e:
        raise PrepError(f"{path}: cannot read ({e})") from None
    return out


def read_sdf_records(path: Path) -> list[tuple[int, str]]:
    """(record number, mol block) for every record of an SDF file (1-based)."""
    try:
        with open_text(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise PrepError(f"{path}: cannot read ({e})") from None
    records, lines = [], []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == "$$$$":
            records.append("".join(lines))
            lines = []
        else:
            lines.append(line)
    if "".join(lines).strip():  # a last record without its $$$$ line
        records.append("".join(lines))
    # the first line of a record is its title, which may be empty: never strip it
    return [(k, r) for k, r in enumerate(records, start=1) if r.strip()]


class GeneratedConformerSource(Source):
    """Shared part of SMILES and SDF input: generate, order, keep the first ``n_conf``."""

    def molecule_from_graph(self, mol: Chem.Mol, candidate: Candidate, index: int):
        cfg = self.config
        self.check_excluded(mol)
        seed = (cfg.seed * 1_000_003 + index) % (2**31 - 1)
        mol_h, generated, energy = generate_conformers(mol, cfg.gen_confs, seed, cfg.conf_timeout, cfg.rdkit_threads or 1)
        n = len(energy)
        if n < cfg.min_confs:
            raise Skip(R.TOO_FEW_CONFORMERS, f"{n} conformers embedded < --min-confs {cfg.min_confs}")
        weight = boltzmann_weights(energy)
        kept = conformer_order(energy, weight, cfg.select)[: cfg.n_conf]
        molecule = build_molecule(
            mol_h,
            generated[kept],
            energy[kept],
            weight[kept],
            kept,
            cfg.hydrogens,
            smiles=Chem.MolToSmiles(mol),
            source_id=candidate.source_id,
            candidate_index=index,
        )
        return molecule, []


@SOURCES.register("smiles")
class SmilesSource(GeneratedConformerSource):
    name = "smiles"

    def candidates(self) -> list[Candidate]:
        path = Path(self.config.input)
        return [Candidate(f"{path.name}:{line}", smi) for line, smi in read_smiles_file(path, self.config.smiles_col)]

    def build(self, candidate: Candidate, index: int):
        mol = Chem.MolFromSmiles(candidate.smiles) if candidate.smiles else None
        if mol is None:
            raise Skip(R.UNPARSABLE_SMILES, repr(candidate.smiles))
        return self.molecule_from_graph(mol, candidate, index)


@SOURCES.register("sdf")
class SdfSource(GeneratedConformerSource):
    name = "sdf"

    def candidates(self) -> list[Candidate]:
        path = Path(self.config.input)
        out = []
        for k, block in read_sdf_records(path):
            title = block.splitlines()[0].strip() if block else ""
            out.append(Candidate(f"{path.name}#{k}" + (f" ({title})" if title else ""), "", block))
        return out

    def build(self, candidate: Candidate, index: int):
        mol = Chem.MolFromMolBlock(candidate.payload, removeHs=False)
        if mol is None:
            raise Skip(R.UNPARSABLE_RECORD, f"RDKit cannot read record {candidate.source_id}")
        # Through canonical SMILES: stereo is kept (perceived from 3D coordinates when present),
        # drawing artefacts such as wedge-derived bond directions are not, and the graph equals
        # the one of the stored SMILES, as for SMILES input.
        mol = Chem.MolFromSmiles(Chem.MolToSmiles(Chem.RemoveHs(mol)))
        if mol is None:
            raise Skip(R.UNPARSABLE_RECORD, f"record {candidate.source_id} has no valid SMILES form")
        return self.molecule_from_graph(mol, candidate, index)
