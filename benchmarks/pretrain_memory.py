"""Memory of pretraining against the store size: peak RSS on stores of 10k and 1M molecules.

    python benchmarks/pretrain_memory.py [--shared ../shared/data] [--sizes 10000 1000000]
        [--steps 20] [--batch-size 256] [--presets graphmvp attrmask] [--threads 2] [--repeats 2]
    python benchmarks/pretrain_memory.py --schnet-impls plain fused tabulated fused-bf16 [--steps 20] [--repeats 1]

Stores. A base store is prepared once with geom_prep from ``<shared>/geom_bench1k`` (1,000 MOSES
molecules, 5 lowest-energy conformers each, explicit hydrogens; ``<shared>/geom_sample``'s 60
molecules when absent). Each size is then synthesised by repeating real molecules with
:func:`graphmvp.prep.store_writer.concatenate_stores` (block copies of whole datasets, no Python
loop over molecules): 10k = 10 x the base, 1M = 100 x the 10k store (~15 s, 3.3 GiB). They go to
``benchmarks/out/memory/`` (git-ignored: never commit them) and are reused when present with the
right number of molecules.

Every figure comes from a fresh Python process (``--child``) and ``/proc/self/status`` (VmRSS:
resident now; VmHWM: peak resident). Preload modes: ``stream`` forces streaming
(``PRELOAD_AUTO_MAX_BYTES = 0``); ``auto`` is the dataset's default policy (the 10k store,
~34 MB, is loaded into memory as MoleculeArrays; the 1M store streams).

Data path (``--child data``): what the trainer builds from the store (``ConformerStore``,
``PretrainDataset`` with the preset's options, the epoch plan of ``epoch_batches``) and
``--steps`` batches through its DataLoader (``num_workers=0``, ``collate``), no model. Without
the model's large, allocator-dependent tensors this peak is reproducible to ~1 MB, so the growth
from 10k to 1M molecules is measured exactly and compared with the arrays of O(M) entries
(the store's 4 offset arrays, the dataset's per-molecule conformer counts and sample offsets:
8 bytes per molecule each) and the epoch plan (8 bytes per sample).

Pretraining (``--child train``): ``graphmvp.pretrain.pretrain`` for one epoch cut at
``--steps`` optimiser steps, batch ``--batch-size``, upstream model sizes, the preset's settings
(``graphmvp``: 2D + 3D, EBM-NCE + VRR, one sample per conformer; ``attrmask``: 2D only, one
sample per molecule), ``num_workers=0``, glibc malloc tuning as the trainer's default (freed
blocks below 64 MiB stay in the heap, 32 MiB for the whole-edge SchNet paths plain, fused and
fused-bf16, see ``malloc_mmap_threshold``; ``--no-malloc-tuning`` to compare). Per run: RSS after the imports, after the
dataset, after the model, the peak; steps/s and the share of step time spent waiting for data.
The peak of a training run varies between identical runs (by ~1-3% for AttrMask and up to ~15%
for GraphMVP, whose SchNet step allocates and frees ~100 MB tensors: how the heap fragments
differs from run to run), so every configuration runs ``--repeats`` times and the range is shown.

Reads (``--child reads``), on each store: a random molecule read (:meth:`ConformerStore.molecule`)
the first time (its pages may have to come from disk: whatever the page cache holds) and again
(cached pages); batch reads (:meth:`ConformerStore.molecules_at`, 256 random or 256 consecutive
molecules); a molecule of the loaded 10k store (:class:`MoleculeArrays`); one dataset sample
(``dataset[i]``: read, mask, features, 3D neighbours, AttrMask inputs) streaming (first and
second time) vs preloaded, both presets, the same sample indices.

SchNet implementations (``--schnet-impls plain fused tabulated fused-bf16``): instead of the
store-size study, one ``--child train`` run of the GraphMVP preset per ``--schnet-impl`` on the
base store itself (``geom_bench1k``: 5,000 samples, i.e. one epoch = 20 steps at batch 256),
``--repeats`` runs each; the table shows peak RSS, its ratio to the default implementation's and
steps/s (so that a memory saving that costs speed is visible).

Output: one JSON line per figure, then tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out" / "memory"
BASE_N_CONF = 5


def emit(figure: str, **values: Any) -> dict:
    row = {"figure": figure, **values}
    print(json.dumps(row), flush=True)
    return row


def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


# -- stores ------------------------------------------------------------------------------------------
def base_store(shared: Path, out: Path) -> Path:
    """The real molecules every synthetic store repeats (prepared once with geom_prep)."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    out.mkdir(parents=True, exist_ok=True)
    for name in ("geom_bench1k", "geom_sample"):
        geom = shared / name / "rdkit_folder"
        if (geom / "summary_drugs.json").is_file():
            path = out / f"base_{name}_c{BASE_N_CONF}.h5"
            if not path.is_file():
                t0 = time.perf_counter()
                prepare(PrepConfig(input=str(geom), output=str(path), n_conf=BASE_N_CONF, shuffle=False, workers=2))
                emit("base_store_prepared", path=str(path), seconds=round(time.perf_counter() - t0, 1))
            return path
    raise SystemExit(f"neither {shared}/geom_bench1k nor {shared}/geom_sample is there: no real molecules to repeat")


def store_length(path: Path) -> int:
    from graphmvp.data.store import ConformerStore

    try:
        with ConformerStore(path) as store:
            return len(store)
    except (OSError, ValueError):
        return -1


def synthesise(sizes: list[int], base: Path, out: Path) -> dict[int, Path]:
    """A store of each size in ``sizes``, each made of copies of the largest smaller one built
    (the base store first): few inputs, large block copies."""
    from graphmvp.prep.store_writer import concatenate_stores
    from graphmvp.data.store import ConformerStore

    with ConformerStore(base) as store:
        sources = [(len(store), base)]
        config = store.config
    stores = {}
    for n in sorted(sizes):
        path = out / f"synthetic_{n}.h5"
        if store_length(path) != n:
            per, src = max((s for s in sources if s[0] <= n), default=sources[0])
            copies = -(-n // per)
            t0 = time.perf_counter()
            concatenate_stores([src] * copies, path, config, ["benchmarks/pretrain_memory.py"],
                               n_candidates=per * copies, max_molecules=n)
            emit("store_synthesised", molecules=n, copies=copies, of=src.name, seconds=round(time.perf_counter() - t0, 1),
                 file_gib=round(path.stat().st_size / 2**30, 3))
        stores[n] = path
        sources.append((n, path))
    return stores


def om_bytes(dataset) -> int:
    """Bytes of the arrays with one entry per molecule (or sample offset) behind ``dataset``: its
    conformer counts and sample offsets, and the offsets a streaming store has cached."""
    total = dataset.conformers_per_molecule.nbytes
    if dataset._sample_offset is not None:
        total += dataset._sample_offset.nbytes
    if not dataset.preloaded:
        total += sum(a.nbytes for a in dataset.store.__dict__.get("_cached_offsets", {}).values())
    return int(total)


# -- the data path alone (child process) --------------------------------------------------------------
def child_data(args: argparse.Namespace) -> None:
    import torch

    from graphmvp.data import pretrain_dataset
    from graphmvp.data.collate import collate
    from graphmvp.data.store import ConformerStore
    from graphmvp.pretrain import dataset_options, resolve_config
    from graphmvp.malloc_tuning import tune_malloc
    from graphmvp.pretrain.epoch_plan import epoch_batches

    torch.set_num_threads(args.threads)
    if not args.no_malloc_tuning:
        tune_malloc()
    if args.mode == "stream":
        pretrain_dataset.PRELOAD_AUTO_MAX_BYTES = 0
    marks: dict[str, Any] = {"rss_imports_mib": mib(proc_status_kib("VmRSS"))}
    cfg = resolve_config(args.preset, store=args.store, batch_size=args.batch_size)
    with ConformerStore(args.store) as store:
        dataset = pretrain_dataset.PretrainDataset(
            store, views=cfg.views, conformer_sampling=cfg.conformer_sampling, mask_ratio=cfg.mask_ratio,
            seed=cfg.seed, cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors, **dataset_options(cfg))
    marks["rss_dataset_mib"] = mib(proc_status_kib("VmRSS"))
    plan = epoch_batches(len(dataset), cfg.batch_size, cfg.seed, 0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[plan[i] for i in range(min(args.steps, len(plan)))],
                                         collate_fn=collate, num_workers=0)
    t0 = time.perf_counter()
    n = sum(batch.batch_size for batch in loader)
    seconds = time.perf_counter() - t0
    marks.update(preloaded=bool(dataset.preloaded), samples=len(dataset), om_arrays_mib=round(om_bytes(dataset) / 2**20, 1),
                 epoch_plan_mib=round(plan.order.nbytes / 2**20, 1), rss_end_mib=mib(proc_status_kib("VmRSS")),
                 peak_rss_mib=mib(proc_status_kib("VmHWM")), ms_per_batch=round(1000 * seconds / args.steps, 1),
                 us_per_sample=round(1e6 * seconds / n, 1))
    print("RESULT " + json.dumps(marks), flush=True)


# -- one training run (child process) ---------------------------------------------------------------
def child_train(args: argparse.Namespace) -> None:
    import numpy as np

    from graphmvp.data import pretrain_dataset
    from graphmvp.malloc_tuning import tune_malloc
    from graphmvp.pretrain import malloc_mmap_threshold, resolve_config, trainer

    impl = {"schnet_impl": args.schnet_impl} if args.schnet_impl else {}
    if not args.no_malloc_tuning:  # what graphmvp-pretrain does (the library leaves the process alone)
        tune_malloc(malloc_mmap_threshold(resolve_config(args.preset, **impl)))
    marks: dict[str, Any] = {"rss_imports_mib": mib(proc_status_kib("VmRSS"))}
    if args.mode == "stream":
        pretrain_dataset.PRELOAD_AUTO_MAX_BYTES = 0

    open_data, build, epoch_batches = trainer._Run._open_data, trainer._Run._build, trainer.epoch_batches

    datasets = []

    def traced_open_data(self):
        open_data(self)
        marks["rss_dataset_mib"] = mib(proc_status_kib("VmRSS"))
        datasets.append(self.dataset)

    def traced_build(self):
        build(self)
        marks["rss_model_mib"] = mib(proc_status_kib("VmRSS"))

    def traced_epoch_batches(*a, **kw):
        before = proc_status_kib("VmRSS")
        plan = epoch_batches(*a, **kw)
        order = getattr(plan, "order", None)  # an array of sample indices; else RSS added by a list of lists
        size = order.nbytes / 2**20 if isinstance(order, np.ndarray) else (proc_status_kib("VmRSS") - before) / 1024
        marks["epoch_plan_mib"] = round(max(marks.get("epoch_plan_mib", 0.0), size), 1)
        return plan

    trainer._Run._open_data = traced_open_data
    trainer._Run._build = traced_build
    trainer.epoch_batches = traced_epoch_batches
    with tempfile.TemporaryDirectory(prefix="pretrain_memory_") as tmp:
        cfg = resolve_config(args.preset, store=args.store, out=str(Path(tmp) / "run"), epochs=1, max_steps=args.steps,
                             batch_size=args.batch_size, threads=args.threads, num_workers=0, progress=False,
                             log_every=10**9, malloc_tuning=not args.no_malloc_tuning,
                             **impl)
        result = trainer.pretrain(cfg)
    row = result.metrics[-1]
    dataset = datasets[-1]
    marks.update(preloaded=bool(dataset.preloaded), samples=len(dataset),
                 om_arrays_mib=round(om_bytes(dataset) / 2**20, 1),  # measured after the run: all offsets read
                 preloaded_mib=round(dataset.store.nbytes / 2**20, 1) if dataset.preloaded else 0.0)
    marks.update(
        rss_end_mib=mib(proc_status_kib("VmRSS")),
        peak_rss_mib=mib(proc_status_kib("VmHWM")),
        steps=int(row["steps"]),
        steps_per_s=round(row["steps"] / row["seconds"], 3),
        samples_per_s=round(row["samples_per_s"], 1),
        data_share=round(row["data_seconds"] / row["seconds"], 4),
    )
    print("RESULT " + json.dumps(marks), flush=True)


# -- read costs (child process) -----------------------------------------------------------------------
def child_reads(args: argparse.Namespace) -> None:
    import numpy as np

    from graphmvp.data.pretrain_dataset import PretrainDataset
    from graphmvp.data.store import ConformerStore
    from graphmvp.pretrain import dataset_options, resolve_config

    def per_call_us(fn, calls) -> float:
        t0 = time.perf_counter()
        for c in calls:
            fn(c)
        return round((time.perf_counter() - t0) / len(calls) * 1e6, 1)

    rng = np.random.default_rng(0)
    results = []
    for path in args.stores:
        store = ConformerStore(path)
        n = len(store)
        idx = rng.integers(0, n, args.reads).tolist()
        store.molecule(0)  # offsets are read on first use
        row = {"molecules": n, "molecule_first_us": per_call_us(store.molecule, idx),  # pages may come from disk
               "molecule_us": per_call_us(store.molecule, idx)}  # the same molecules again: cached pages
        batches = [idx[i : i + 256] for i in range(0, len(idx), 256)]
        row["molecules_at_random_us"] = round(per_call_us(store.molecules_at, batches) * len(batches) / len(idx), 1)
        runs = [range(i, min(n, i + 256)) for i in rng.integers(0, n, len(batches)).tolist()]
        row["molecules_at_consecutive_us"] = round(per_call_us(store.molecules_at, runs) * len(runs) / sum(map(len, runs)), 1)
        loadable = store.preload_bytes() <= args.max_load_bytes
        if loadable:
            loaded = store.load()
            row["in_memory_us"] = per_call_us(loaded.molecule, idx)
            row["loaded_mib"] = round(loaded.nbytes / 2**20, 1)
        for preset in ("graphmvp", "attrmask"):
            cfg = resolve_config(preset)
            kw = dict(views=cfg.views, conformer_sampling=cfg.conformer_sampling, mask_ratio=cfg.mask_ratio,
                      seed=0, cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors, **dataset_options(cfg))
            streaming = PretrainDataset(store, preload=False, **kw)
            samples = rng.integers(0, len(streaming), args.samples).tolist()
            row[f"sample_{preset}_stream_first_us"] = per_call_us(streaming.__getitem__, samples)
            row[f"sample_{preset}_stream_us"] = per_call_us(streaming.__getitem__, samples)
            if loadable:
                loaded_dataset = PretrainDataset(store, preload=True, **kw)
                loaded_dataset[samples[0]]
                row[f"sample_{preset}_preloaded_us"] = per_call_us(loaded_dataset.__getitem__, samples)
        results.append(row)
        store.close()
    print("RESULT " + json.dumps(results), flush=True)


def run_child(argv: list[str]) -> Any:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"child {' '.join(argv)} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


# -- main ---------------------------------------------------------------------------------------------
def mib_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:,.0f} MiB" if hi - lo < 1 else f"{lo:,.0f}-{hi:,.0f} MiB"


def data_table(rows: list[dict]) -> str:
    head = ("preset", "molecules", "preload", "samples", "RSS after dataset", "O(M) arrays", "epoch plan",
            "peak RSS", "ms / batch")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["preset"], f"{r['molecules']:,}", "loaded" if r["preloaded"] else "stream", f"{r['samples']:,}",
            f"{r['rss_dataset_mib']:,.0f} MiB", f"{r['om_arrays_mib']:,.1f} MiB", f"{r['epoch_plan_mib']:,.1f} MiB",
            f"{r['peak_rss_mib']:,.0f} MiB", f"{r['ms_per_batch']:.0f}",
        ]) + " |")
    return "\n".join(lines)


def train_table(groups: list[list[dict]]) -> str:
    head = ("preset", "molecules", "preload", "runs", "RSS after dataset", "RSS after model", "O(M) arrays + plan",
            "peak RSS", "steps/s", "data share")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for runs in groups:
        r = runs[0]
        lines.append("| " + " | ".join([
            r["preset"], f"{r['molecules']:,}", "loaded" if r["preloaded"] else "stream", str(len(runs)),
            mib_range([x["rss_dataset_mib"] for x in runs]), mib_range([x["rss_model_mib"] for x in runs]),
            f"{r['om_arrays_mib'] + r['epoch_plan_mib']:,.1f} MiB", mib_range([x["peak_rss_mib"] for x in runs]),
            f"{sum(x['steps_per_s'] for x in runs) / len(runs):.3f}",
            f"{100 * sum(x['data_share'] for x in runs) / len(runs):.1f}%",
        ]) + " |")
    return "\n".join(lines)


def impl_table(groups: list[list[dict]], default: str) -> str:
    head = ("--schnet-impl", "runs", "RSS after model", "peak RSS", "peak / default's", "steps/s", "molecules/s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = max(x["peak_rss_mib"] for g in groups if g[0]["schnet_impl"] == default for x in g) if any(
        g[0]["schnet_impl"] == default for g in groups) else None
    for runs in groups:
        peak = max(x["peak_rss_mib"] for x in runs)
        lines.append("| " + " | ".join([
            runs[0]["schnet_impl"], str(len(runs)), mib_range([x["rss_model_mib"] for x in runs]),
            mib_range([x["peak_rss_mib"] for x in runs]), f"{peak / ref:.2f}" if ref else "-",
            f"{sum(x['steps_per_s'] for x in runs) / len(runs):.3f}",
            f"{sum(x['samples_per_s'] for x in runs) / len(runs):.1f}",
        ]) + " |")
    return "\n".join(lines)


def main_impls(args: argparse.Namespace, common: list[str]) -> int:
    """Peak RSS and speed of one GraphMVP run per SchNet implementation, on the base store."""
    from graphmvp.models.schnet import DEFAULT_SCHNET_IMPL

    store = base_store(Path(args.shared), Path(args.out))
    groups = []
    for impl in args.schnet_impls:
        runs = []
        for repeat in range(args.repeats):
            result = run_child(["--child", "train", "--store", str(store), "--preset", "graphmvp", "--mode", "auto",
                                "--schnet-impl", impl, *common])
            runs.append(emit("pretrain_memory_schnet_impl", schnet_impl=impl, store=store.name, repeat=repeat,
                             batch_size=args.batch_size, threads=args.threads, **result))
        groups.append(runs)
    print(f"\nGraphMVP on {store.name}, batch {args.batch_size}, {args.steps} steps, {args.threads} threads:\n"
          + impl_table(groups, DEFAULT_SCHNET_IMPL))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(OUT), help="where the synthetic stores go (git-ignored)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--presets", nargs="+", default=["graphmvp", "attrmask"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="training runs per configuration")
    parser.add_argument("--reads", type=int, default=5000, help="random molecule reads per store (read figures)")
    parser.add_argument("--samples", type=int, default=1000, help="dataset samples per mode (read figures)")
    parser.add_argument("--max-load-bytes", type=int, default=256 * 2**20, help="load stores up to this size for the read figures")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="glibc returns freed memory (the trainer's --no-malloc-tuning); see the module docstring")
    parser.add_argument("--schnet-impls", nargs="+", metavar="IMPL",
                        help="measure these SchNet implementations on the base store instead of the store sizes")
    parser.add_argument("--schnet-impl", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("data", "train", "reads"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--stores", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="auto", choices=("auto", "stream"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        {"data": child_data, "train": child_train, "reads": child_reads}[args.child](args)
        return 0

    common = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    if args.no_malloc_tuning:
        common.append("--no-malloc-tuning")
    if args.schnet_impls:
        return main_impls(args, common)
    out = Path(args.out)
    stores = synthesise(args.sizes, base_store(Path(args.shared), out), out)
    smallest, largest = min(stores), max(stores)
    configs = [(preset, n, mode) for preset in args.presets for n in sorted(stores)
               for mode in (("stream", "auto") if n == smallest else ("auto",))]

    data_rows = []
    for preset, n, mode in configs:
        result = run_child(["--child", "data", "--store", str(stores[n]), "--preset", preset, "--mode", mode, *common])
        data_rows.append(emit("data_path_memory", preset=preset, molecules=n, mode=mode, **result))
    groups = []
    for preset, n, mode in configs:
        runs = []
        for repeat in range(args.repeats):
            result = run_child(["--child", "train", "--store", str(stores[n]), "--preset", preset, "--mode", mode, *common])
            runs.append(emit("pretrain_memory", preset=preset, molecules=n, mode=mode, repeat=repeat, **result))
        groups.append(runs)
    reads = run_child(["--child", "reads", "--stores", *map(str, stores.values()), "--reads", str(args.reads),
                       "--samples", str(args.samples), "--max-load-bytes", str(args.max_load_bytes)])
    for row in reads:
        emit("read_costs", **row)

    for preset in args.presets:
        ref = next(r for r in data_rows if r["preset"] == preset and r["molecules"] == smallest and not r["preloaded"])
        big = next(r for r in data_rows if r["preset"] == preset and r["molecules"] == largest)
        om = big["om_arrays_mib"] + big["epoch_plan_mib"] - ref["om_arrays_mib"] - ref["epoch_plan_mib"]
        emit("flatness_data_path", preset=preset, small=smallest, large=largest, peak_small_mib=ref["peak_rss_mib"],
             peak_large_mib=big["peak_rss_mib"], growth_mib=round(big["peak_rss_mib"] - ref["peak_rss_mib"], 1),
             o_m_growth_mib=round(om, 1))
        small = next(g for g in groups if g[0]["preset"] == preset and g[0]["molecules"] == smallest and not g[0]["preloaded"])
        large = next(g for g in groups if g[0]["preset"] == preset and g[0]["molecules"] == largest)
        om = large[0]["om_arrays_mib"] + large[0]["epoch_plan_mib"] - small[0]["om_arrays_mib"] - small[0]["epoch_plan_mib"]
        lo, hi = min(x["peak_rss_mib"] for x in small), max(x["peak_rss_mib"] for x in small)
        emit("flatness_pretrain", preset=preset, small=smallest, large=largest, peak_small_mib=[lo, hi],
             peak_large_mib=[x["peak_rss_mib"] for x in large], o_m_growth_mib=round(om, 1),
             large_minus_o_m_over_small_max=round((min(x["peak_rss_mib"] for x in large) - om) / hi, 4))
    print("\nData path alone (no model):\n" + data_table(data_rows))
    print("\nPretraining:\n" + train_table(groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
