"""How far each fine-tuning set lies from the released checkpoints' pretraining corpus (issue 11).

The released ``*-zinc50k`` checkpoints saw 50,000 ZINC "clean leads" molecules (MOSES training
split): small, neutral, made of C, N, O, S, F, Cl and Br. The table's sets are drugs, toxicants and
kinase inhibitors. This script measures the gap, one row per set:

* molecules (parsable SMILES);
* heavy atoms: median (10th-90th percentile), and the share larger than the corpus' largest;
* the share with an element the corpus never shows (and the commonest such elements);
* the share with a charged atom (a non-zero formal charge);
* the ECFP4 (radius 2, 2048 bits) Tanimoto similarity of each molecule to its nearest corpus
  neighbour: the median, and the share below 0.3 (nothing in the corpus resembles it).

The corpus is rebuilt from its recipe without conformers: ``graphmvp-prep``'s seeded shuffle of
``zinc_moses_train.csv.gz`` (seed 777), keeping the first ``--n-mol`` parsable molecules that are not
in any downstream set (canonical SMILES, stereo ignored, as ``--exclude-ignore-stereo``). The
release also lost the few molecules whose conformers failed, so this is the corpus up to those.
A reference row, "corpus, held out", takes the next ``--held-out`` molecules of the same shuffle:
what an in-distribution set looks like on these measures.

    python benchmarks/corpus_shift.py                 # prints the table, writes RESULTS/shift.json
    python benchmarks/corpus_shift.py --tasks bbbp sider --n-mol 10000

Figures: ``benchmarks/results/corpus_shift/`` (``--results``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from rdkit.rdBase import BlockLogs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from moleculenet_table import DATA_FILES, DEFAULT_TASKS, REPO  # noqa: E402

from graphmvp.finetune.dta import load_deepdta  # noqa: E402
from graphmvp.io import write_text_atomic  # noqa: E402
from graphmvp.prep.molecule import exclusion_key  # noqa: E402
from graphmvp.prep.pipeline import shuffled_order  # noqa: E402
from graphmvp.prep.sources.smiles import read_smiles_file  # noqa: E402

log = logging.getLogger("corpus_shift")

#: nearest-neighbour similarity below which a molecule counts as unlike anything in the corpus
FAR = 0.3
FP_RADIUS, FP_BITS = 2, 2048
CORPUS_FILE = "zinc_moses_train.csv.gz"
HELD_OUT = "corpus, held out"


@dataclass
class Molecules:
    """The parsed molecules of one set: per molecule its heavy-atom count, elements (heavy atoms),
    whether any atom is charged, and its ECFP4 bit vector."""

    heavy_atoms: list[int]
    elements: list[frozenset[str]]
    charged: list[bool]
    fingerprints: list
    unparsable: int = 0


def describe(smiles: Iterable[str]) -> Molecules:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    out = Molecules([], [], [], [])
    _quiet = BlockLogs()
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is None:
            out.unparsable += 1
            continue
        out.heavy_atoms.append(mol.GetNumHeavyAtoms())
        out.elements.append(frozenset(a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() > 1))
        out.charged.append(any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()))
        out.fingerprints.append(gen.GetFingerprint(mol))
    return out


def nearest_similarity(queries: list, reference: list) -> np.ndarray:
    """[Q] the largest Tanimoto similarity of each query fingerprint to any reference fingerprint."""
    return np.array([max(DataStructs.BulkTanimotoSimilarity(q, reference)) for q in queries], dtype=float)


@dataclass
class ShiftRow:
    name: str
    molecules: int
    unparsable: int
    heavy_atoms_median: float
    heavy_atoms_p10: float
    heavy_atoms_p90: float
    larger_than_corpus: float  # share, 0-1
    new_element: float
    new_elements_top: list[tuple[str, int]]  # (element, molecules holding it), commonest first
    charged: float
    nn_similarity_median: float
    far: float  # share with nearest similarity < FAR


def shift_row(name: str, mols: Molecules, corpus: Molecules) -> ShiftRow:
    n = len(mols.heavy_atoms)
    if not n:
        raise ValueError(f"{name}: no parsable molecule")
    largest = max(corpus.heavy_atoms)
    known = frozenset().union(*corpus.elements)
    new = Counter(e for els in mols.elements for e in els - known)
    sim = nearest_similarity(mols.fingerprints, corpus.fingerprints)
    atoms = np.asarray(mols.heavy_atoms, dtype=float)
    return ShiftRow(
        name=name, molecules=n, unparsable=mols.unparsable,
        heavy_atoms_median=float(np.median(atoms)), heavy_atoms_p10=float(np.percentile(atoms, 10)),
        heavy_atoms_p90=float(np.percentile(atoms, 90)),
        larger_than_corpus=float(np.mean(atoms > largest)),
        new_element=float(np.mean([bool(els - known) for els in mols.elements])),
        new_elements_top=new.most_common(4),
        charged=float(np.mean(mols.charged)),
        nn_similarity_median=float(np.median(sim)), far=float(np.mean(sim < FAR)),
    )


def _canonical(smiles: str) -> Optional[str]:
    """``--exclude-ignore-stereo``'s key of a SMILES (None if unparsable)."""
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return exclusion_key(mol, ignore_stereo=True) if mol is not None else None


def task_smiles(shared: Path, task: str) -> list[str]:
    """The SMILES of a table task's data file (a DTA task: its distinct ligands)."""
    path = shared / DATA_FILES[task]
    if path.is_dir():
        return list(load_deepdta(path, name=task).drug_smiles)
    return [s for _, s in read_smiles_file(path)]


def corpus_smiles(path: Path, n_mol: int, held_out: int, seed: int, excluded: frozenset[str]) -> tuple[list[str], list[str]]:
    """The first ``n_mol`` parsable, non-excluded molecules of ``graphmvp-prep``'s shuffle of
    ``path`` (:func:`graphmvp.prep.pipeline.shuffled_order`), and the ``held_out`` that follow."""
    rows = read_smiles_file(path)
    order = shuffled_order(len(rows), seed)
    kept: list[str] = []
    _quiet = BlockLogs()
    for i in order:
        key = _canonical(rows[i][1])
        if key is None or key in excluded:
            continue
        kept.append(rows[i][1])
        if len(kept) == n_mol + held_out:
            break
    return kept[:n_mol], kept[n_mol:]


def render(rows: list[ShiftRow], corpus_n: int) -> str:
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"Against the {corpus_n:,} corpus molecules. Heavy atoms: median (10th-90th percentile). "
             f"Nearest neighbour: ECFP4 Tanimoto to the most similar corpus molecule; far = below {FAR}.", "",
             "| set | molecules | heavy atoms | larger than any corpus molecule | with an element not in the corpus "
             "| with a charged atom | nearest neighbour, median | far |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        top = ", ".join(e for e, _ in r.new_elements_top)
        lines.append(f"| {r.name} | {r.molecules:,} | {r.heavy_atoms_median:g} ({r.heavy_atoms_p10:g}-{r.heavy_atoms_p90:g}) "
                     f"| {pct(r.larger_than_corpus)} | {pct(r.new_element)}{f' ({top})' if top else ''} | {pct(r.charged)} "
                     f"| {r.nn_similarity_median:.2f} | {pct(r.far)} |")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=sorted(DATA_FILES))
    p.add_argument("--n-mol", type=int, default=50_000, help="corpus size (the release's: 50,000)")
    p.add_argument("--held-out", type=int, default=2_000, help="molecules of the reference row")
    p.add_argument("--seed", type=int, default=777, help="graphmvp-prep's shuffle seed (the release's: 777)")
    p.add_argument("--results", type=Path, default=HERE / "results" / "corpus_shift")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not (args.shared / CORPUS_FILE).is_file():
        raise SystemExit(f"{args.shared / CORPUS_FILE} not found: give the shared data folder with --shared")
    missing = [str(args.shared / DATA_FILES[t]) for t in args.tasks if not (args.shared / DATA_FILES[t]).exists()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}; give the shared data folder with --shared, or leave "
                         "those sets out of --tasks")
    # the release excluded every downstream molecule, the optional sets' too
    sets = {t: task_smiles(args.shared, t) for t in DATA_FILES if (args.shared / DATA_FILES[t]).exists()}
    _quiet = BlockLogs()  # the sets' few unparsable SMILES are counted per row, not printed
    excluded = frozenset(k for smiles in sets.values() for k in map(_canonical, smiles) if k)
    corpus_list, held_out = corpus_smiles(args.shared / CORPUS_FILE, args.n_mol, args.held_out, args.seed, excluded)
    log.info("corpus: %d molecules, %d held out; %d downstream molecules excluded", len(corpus_list), len(held_out), len(excluded))
    corpus = describe(corpus_list)
    rows = []
    for name, smiles in [(HELD_OUT, held_out)] + [(t, sets[t]) for t in args.tasks]:
        rows.append(shift_row(name, describe(smiles), corpus))
        log.info("%s: %d molecules, nearest-neighbour median %.2f", name, rows[-1].molecules, rows[-1].nn_similarity_median)
    text = render(rows, len(corpus_list))
    print(text)
    record = {"corpus": {"file": CORPUS_FILE, "n_mol": len(corpus_list), "seed": args.seed, "held_out": len(held_out)},
              "far_below": FAR, "fingerprint": f"Morgan radius {FP_RADIUS}, {FP_BITS} bits", "rows": [asdict(r) for r in rows]}
    args.results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.results / "shift.json", json.dumps(record, indent=1) + "\n")
    write_text_atomic(args.results / "SHIFT.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
