"""A seeded fuzz pass over every input reader: SMILES CSV, SDF, GEOM summary and pickles
(graphmvp-prep), fine-tuning CSV and SDF, and the DeepDTA folder. Each input is random bytes,
mutated bytes of a good file, an empty file, a header only, or a molecule of a hard kind (> 500
atoms, salts, isotopes, radicals, metals, charges, ``*``). Each is either processed (molecules
kept or skipped with a reason) or refused with the reader's one-line error; nothing else is
raised and no half-written file is left. The tally is printed (``pytest -s``)."""

from __future__ import annotations

import json
import pickle
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from graphmvp.finetune.data import TableOptions, load_dataset
from graphmvp.finetune.dta import load_deepdta
from graphmvp.finetune.errors import FinetuneError
from geom_fixture import ZINC_SMILES, GeomEntry, conformer_records, embed_conformers, write_geom_folder
from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.pipeline import prepare
from test_finetune_dta import KD, write_deepdta

HARD = [
    "C" * 170,                                   # 512 atoms with hydrogens
    "[Na+].[Cl-]", "CC(=O)[O-].[Na+]", "Cl.CCN(CC)CC",  # salts, several fragments
    "[13CH3]C(=O)O", "[2H]OC", "[CH3]", "C[N]C",  # isotopes, radicals
    "[Fe+2]", "Cl[Pt](Cl)([NH3])[NH3]", "[Gd]",  # metals
    "C[N+](C)(C)C", "[O-][n+]1ccccc1",           # charged species
    "*C(=O)O", "*", "c1ccccc1*",                  # the wildcard atom (ClinTox has it)
]
TALLY: Counter = Counter()


def mutate(data: bytes, rng: random.Random, n: int = 6) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        op = rng.randrange(3)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            del b[pos:pos + rng.randrange(1, 16)]
    return bytes(b)


def variants(good: bytes, header: bytes, rng: random.Random, n_mutated: int = 4) -> list[tuple[str, bytes]]:
    return ([("empty", b""), ("header only", header), ("random bytes", bytes(rng.randrange(256) for _ in range(300)))]
            + [("mutated", mutate(good, rng)) for _ in range(n_mutated)])


def no_leftovers(folder: Path) -> None:
    # (STORE.parts/ may stay: it is the resumable state of a run that ended in an error, by design)
    left = [p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.endswith(".lock")]
    assert not left, left


def run_prep(reader: str, path: Path, out: Path, what: str) -> None:
    try:
        result = prepare(PrepConfig(input=str(path), output=str(out), n_conf=1, gen_confs=1, conf_timeout=2,
                                    overwrite=True, source=None if reader == "geom" else reader))
    except PrepError as e:
        assert "\n" not in str(e), (what, str(e))
        assert not out.exists(), what  # no store from a refused run
        TALLY[(reader, "refused with a one-line error")] += 1
    else:
        TALLY[(reader, "processed")] += 1
        for reason, n in result.counts["skipped"].items():
            TALLY[(reader, f"  molecules skipped: {reason}")] += n
        TALLY[(reader, "  molecules kept")] += result.counts["kept"]
    TALLY[(reader, "tried")] += 1
    no_leftovers(out.parent)


def test_prep_smiles_and_sdf_fuzz(tmp_path):
    from rdkit import Chem

    rng = random.Random(1234)
    good_csv = ("id,SMILES\n" + "\n".join(f"m{i},{s}" for i, s in enumerate(ZINC_SMILES[:3]))).encode()
    inputs = variants(good_csv, b"id,SMILES\n", rng) + [("hard molecules", ("SMILES\n" + "\n".join(HARD) + "\n").encode())]
    for k, (what, data) in enumerate(inputs):
        (tmp_path / f"in{k}.csv").write_bytes(data)
        run_prep("smiles", tmp_path / f"in{k}.csv", tmp_path / "out" / f"s{k}.h5", what)
    sdf = b""
    for s in ZINC_SMILES[:3]:
        sdf += Chem.MolToMolBlock(Chem.MolFromSmiles(s)).encode() + b"$$$$\n"
    hard_sdf = b"".join(Chem.MolToMolBlock(m).encode() + b"$$$$\n" for m in map(Chem.MolFromSmiles, HARD) if m is not None)
    for k, (what, data) in enumerate(variants(sdf, b"\n\n\n", rng) + [("hard molecules", hard_sdf)]):
        (tmp_path / f"in{k}.sdf").write_bytes(data)
        run_prep("sdf", tmp_path / f"in{k}.sdf", tmp_path / "out" / f"d{k}.h5", what)
    assert TALLY[("smiles", "tried")] == 8 and TALLY[("sdf", "tried")] == 8


def test_prep_geom_fuzz(tmp_path):
    rng = random.Random(99)
    entries = [GeomEntry(s, f"m{i}", conformer_records(embed_conformers(s, 1, seed=i), [0.0]))
               for i, s in enumerate(ZINC_SMILES[:3])]
    folder = write_geom_folder(tmp_path / "g", entries)
    summary = (folder / "summary_drugs.json").read_bytes()
    pickles = {p: p.read_bytes() for p in sorted((folder / "drugs").iterdir())[1:]}  # the first stays good
    for k, (what, data) in enumerate(variants(summary, b"{}", rng)):  # the summary
        (folder / "summary_drugs.json").write_bytes(data)
        run_prep("geom", folder, tmp_path / "out" / f"g{k}.h5", f"summary {what}")
    (folder / "summary_drugs.json").write_bytes(summary)
    for k in range(6):  # the pickles: random, truncated, mutated
        for p, data in pickles.items():
            choice = rng.randrange(3)
            p.write_bytes(bytes(rng.randrange(256) for _ in range(200)) if choice == 0
                          else data[: rng.randrange(len(data))] if choice == 1 else mutate(data, rng, 3))
        run_prep("geom", folder, tmp_path / "out" / f"p{k}.h5", "pickles")
    assert TALLY[("geom", "tried")] == 13


def test_finetune_table_fuzz(tmp_path, monkeypatch):
    from rdkit import Chem

    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    rng = random.Random(7)
    good = ("smiles,y\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(ZINC_SMILES))).encode()
    hard = ("smiles,y\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(HARD))).encode()
    sdf = b"".join(Chem.MolToMolBlock(Chem.MolFromSmiles(s)).encode() + f">  <y>\n{i % 2}\n\n$$$$\n".encode()
                   for i, s in enumerate(list(ZINC_SMILES[:4]) + HARD[1:6]))
    cases = [("csv", w, d) for w, d in variants(good, b"smiles,y\n", rng) + [("hard molecules", hard)]]
    cases += [("sdf", w, d) for w, d in variants(sdf, b"", rng) + [("hard molecules", sdf)]]
    for k, (kind, what, data) in enumerate(cases):
        path = tmp_path / f"t{k}.{kind}"
        path.write_bytes(data)
        opts = TableOptions(smiles_col="smiles" if kind == "csv" else None, label_cols=("y",), task_type="classification")
        reader = f"finetune {kind}"
        try:
            ds = load_dataset(path, opts)
        except FinetuneError as e:
            assert "\n" not in str(e), (what, str(e))
            TALLY[(reader, "refused with a one-line error")] += 1
        else:
            TALLY[(reader, "processed")] += 1
            TALLY[(reader, "  molecules kept")] += len(ds.smiles)
            for s in ds.skipped:
                TALLY[(reader, f"  molecules skipped: {s.reason}")] += 1
        TALLY[(reader, "tried")] += 1
    assert TALLY[("finetune csv", "tried")] == 8 and TALLY[("finetune sdf", "tried")] == 8


def test_dta_folder_fuzz(tmp_path):
    rng = random.Random(5)
    good = write_deepdta(tmp_path / "good", KD, [[0, 1], [2, 3], [4], [5, 6], [7]], [8])
    files = ["Y", "ligands_can.txt", "proteins.txt", "folds/train_fold_setting1.txt", "folds/test_fold_setting1.txt"]
    k = 0
    for name in files:
        original = (good / name).read_bytes()
        for what, data in variants(original, b"", rng, n_mutated=2):
            folder = tmp_path / f"f{k}"
            k += 1
            shutil.copytree(good, folder)
            (folder / name).write_bytes(data)
            try:
                load_deepdta(folder)
            except FinetuneError as e:
                assert "\n" not in str(e), (name, what, str(e))
                TALLY[("dta folder", "refused with a one-line error")] += 1
            else:
                TALLY[("dta folder", "processed")] += 1
            TALLY[("dta folder", "tried")] += 1
    assert TALLY[("dta folder", "tried")] == 25


def teardown_module(module):
    print("\nfuzz tally (reader: outcome = count)")
    for (reader, outcome), n in sorted(TALLY.items()):
        print(f"  {reader}: {outcome} = {n}")
