"""Preparation throughput: molecules/s for GEOM-format input and for SMILES input with RDKit
conformer generation, with 1 and 2 workers; the store's bytes per molecule; and how long a
1M-molecule store takes to open and to read molecules from.

    python benchmarks/prep_throughput.py [--shared ../shared/data] [--big 1000000]

GEOM-format inputs: ``geom_sample`` (60 molecules) replicated to >= 2,000 summary entries (each
copy keyed by a different random SMILES of the same molecule, pointing at the same pickle), and
``geom_bench1k`` (1,000 molecules) replicated twice, the set on which upstream's preparation was
timed at ~260 molecules/s (../shared/reference/GRAPHMVP.md). Molecules/s counts every candidate
processed (kept or skipped), end to end: reading the summary, workers, assembly, report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.prep.store_writer import concatenate_stores
from graphmvp.data.store import ConformerStore

RDLogger.DisableLog("rdApp.*")


def replicate_geom(src: Path, dst: Path, min_entries: int) -> Path:
    """A summary with >= ``min_entries`` entries over ``src``'s pickles (random SMILES as keys)."""
    summary = json.loads((src / "summary_drugs.json").read_text())
    copies = -(-min_entries // len(summary))
    out = {}
    for smiles, info in summary.items():
        mol = Chem.MolFromSmiles(smiles)
        keys = {smiles}
        tries = 0
        while len(keys) < copies and tries < 50 * copies:
            keys.add(Chem.MolToSmiles(mol, doRandom=True, canonical=False))
            tries += 1
        for k in keys:
            entry = dict(info)
            entry["pickle_path"] = str((src / info["pickle_path"]).resolve())
            out[k] = entry
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "summary_drugs.json").write_text(json.dumps(out))
    return dst


def run(label: str, input_path: Path, out_dir: Path, workers: int, **kw) -> dict:
    store = out_dir / f"{label}_w{workers}_t{kw.get('rdkit_threads', 1)}.h5"
    result = prepare(PrepConfig(input=str(input_path), output=str(store), workers=workers, overwrite=True, **kw))
    size = store.stat().st_size
    row = {
        "input": label,
        "workers": workers,
        "rdkit_threads": kw.get("rdkit_threads", 1),
        "candidates": result.counts["candidates"],
        "kept": result.counts["kept"],
        "seconds": round(result.seconds, 2),
        "mol_per_s": round(result.molecules_per_second, 1),
        "bytes_per_kept_mol": round(size / max(result.counts["kept"], 1)),
    }
    print(json.dumps(row), flush=True)
    return row


def stage_times(smiles: list[str], n_conf: int = 10) -> dict:
    """Where a generated molecule's time goes: ETKDGv3 embedding and MMFF94 optimisation of
    ``n_conf`` conformers, one thread, ms per molecule (the floor of SMILES preparation)."""
    from rdkit.Chem import AllChem, rdDistGeom

    embed = mmff = atoms = 0.0
    for k, smi in enumerate(smiles):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = k
        t0 = time.perf_counter()
        rdDistGeom.EmbedMultipleConfs(mol, n_conf, params)
        t1 = time.perf_counter()
        AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000)
        t2 = time.perf_counter()
        embed += t1 - t0
        mmff += t2 - t1
        atoms += mol.GetNumAtoms()
    n = len(smiles)
    row = {"stage_times_molecules": n, "atoms_with_h": round(atoms / n, 1), "conformers": n_conf,
           "embed_ms_per_mol": round(1000 * embed / n, 1), "mmff_ms_per_mol": round(1000 * mmff / n, 1),
           "floor_mol_per_s_one_thread": round(n / (embed + mmff), 2)}
    print(json.dumps(row), flush=True)
    return row


def big_store_open(base: Path, out_dir: Path, n: int) -> None:
    """Concatenate ``base`` until ``n`` molecules, then time open, len, and random reads."""
    with ConformerStore(base) as s:
        per = len(s)
        cfg = s.config
    copies = -(-n // per)
    big = out_dir / "big.h5"
    t0 = time.perf_counter()
    concatenate_stores([base] * copies, big, cfg, ["benchmark"], n_candidates=per * copies, max_molecules=n)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = ConformerStore(big)
    length = len(store)
    t_open = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    idx = rng.integers(0, length, 1000)
    t0 = time.perf_counter()
    first = store[int(idx[0])]
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in idx:
        store[int(i)]
    t_read = (time.perf_counter() - t0) / len(idx)
    print(json.dumps({
        "big_store_molecules": length,
        "file_gib": round(big.stat().st_size / 2**30, 2),
        "write_s": round(t_write, 1),
        "open_s": round(t_open, 4),
        "first_read_s": round(t_first, 4),
        "random_read_ms_per_mol": round(1000 * t_read, 3),
        "atoms_first": first.num_atoms,
    }), flush=True)
    store.close()
    big.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--smiles-n", type=int, default=100, help="SMILES molecules for the generation benchmark")
    parser.add_argument("--big", type=int, default=1_000_000, help="molecules in the open-time store (0: skip)")
    args = parser.parse_args()
    shared = Path(args.shared)
    if not (shared / "geom_sample").is_dir():
        print(f"no {shared}/geom_sample: nothing to benchmark", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="prep_bench_"))
    try:
        sample = replicate_geom(shared / "geom_sample" / "rdkit_folder", tmp / "geom_sample_x", 2000)
        bench = replicate_geom(shared / "geom_bench1k" / "rdkit_folder", tmp / "geom_bench1k_x2", 2000)
        import gzip

        with gzip.open(shared / "zinc_moses_train.csv.gz", "rt") as f:
            lines = [next(f) for _ in range(args.smiles_n + 1)]
        smi = tmp / "zinc.csv"
        smi.write_text("".join(lines))
        rows = []
        smiles_label = f"smiles_zinc{args.smiles_n}_gen10"
        for workers in (1, 2):
            rows.append(run("geom_sample_x2000", sample, tmp, workers))
            rows.append(run("geom_bench1k_x2", bench, tmp, workers))
            rows.append(run(smiles_label, smi, tmp, workers, rdkit_threads=1))
        # one worker sharing its molecule's conformers over RDKit threads (same store)
        threaded = run(smiles_label, smi, tmp, 1, rdkit_threads=2)
        by = {(r["input"], r["workers"]): r for r in rows}
        for label in sorted({r["input"] for r in rows}):
            speedup = by[(label, 2)]["mol_per_s"] / by[(label, 1)]["mol_per_s"]
            print(json.dumps({"input": label, "speedup_2_vs_1_workers": round(speedup, 2)}))
        print(json.dumps({"input": smiles_label, "speedup_1_worker_2_rdkit_threads": round(
            threaded["mol_per_s"] / by[(smiles_label, 1)]["mol_per_s"], 2)}))
        stage_times([line.split(",")[0].strip() for line in lines[1:]])
        if args.big:
            big_store_open(tmp / "geom_bench1k_x2_w1_t1.h5", tmp, args.big)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
