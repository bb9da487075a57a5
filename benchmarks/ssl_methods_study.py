"""Every 2D pretraining method of GraphMVP's Table 1 (and the masking-design cells) on the same
data, encoder, epoch budget and FreeSolv fine-tuning protocol; plus the MI table.

Steps (each skipped when its output already exists, so an interrupted study continues):

1. **Pretraining data**: the store of ``benchmarks/finetune_freesolv_study.py`` (5,000 ZINC
   molecules from ``../shared/data/zinc_moses_train.csv.gz``, 5 RDKit conformers, explicit H,
   FreeSolv molecules excluded), prepared by that script's code if absent; then its label sidecar
   (``graphmvp-prep labels``: motif, contextual and functional-group labels).
2. **Pretraining**: each method's preset (the paper's settings, GIN 5 x 300 unless the method
   says otherwise) for ``--epochs`` epochs (the SAME budget for every method; one epoch = one pass
   over the 5,000 molecules: 2D methods draw one sample per molecule, and GraphMVP is run with
   ``--conformer-sampling random`` so that its epoch is also 5,000 samples), batch 256.
3. **Fine-tuning**: FreeSolv (scaffold split 80/10/10, dropout 0.2, Adam 1e-3, batch 256, MSE),
   ``--finetune-epochs`` epochs, seeds 0 1 2, for every method and for random initialisation
   (of the GIN and of the GraphGPS, the baselines of the two encoders' rows).
4. **Table** (``<work>/RESULTS.md``): method x (test RMSE at the best-validation epoch, at the last
   epoch: mean (std) over seeds; pretraining molecules/s of the last epoch and, with
   ``--speed-steps N``, of N steps timed in a separate short run, best on an idle machine: the
   epochs' own figure depends on whatever else ran meanwhile).
5. **MI table**: ``graphmvp-analyze mi`` on FreeSolv with its label binarised at the median, atom
   vs motif targets under uniform / pagerank / learnable masking (the learnable scorer is the one
   trained by the ``structmae-l`` run of step 2); the motif vocabulary is the pretraining store's.

Run::

    python benchmarks/ssl_methods_study.py --work runs/ssl_study

``--methods`` selects a subset (labels of :data:`METHODS`); ``--smoke`` checks the pipeline in a
few minutes (300 molecules, 1 epoch, 2 fine-tuning epochs).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_freesolv_study import REPO, SHARED, finetune, log, prepare_store, run  # noqa: E402

#: method label -> graphmvp-pretrain arguments (None = no pretraining: a random encoder, see SCRATCH)
METHODS: dict[str, list[str] | None] = {
    "no pretraining": None,
    "no pretraining (GraphGPS)": None,
    "EdgePred": ["--preset", "edgepred"],
    "AttrMask": ["--preset", "attrmask"],
    "ContextPred": ["--preset", "contextpred"],
    "InfoGraph": ["--preset", "infomax"],
    "GraphCL": ["--preset", "graphcl"],
    "JOAO": ["--preset", "joao"],
    "GPT-GNN": ["--preset", "gpt-gnn"],
    "GraphLoG": ["--preset", "graphlog"],
    "G-Contextual": ["--preset", "g-contextual"],
    "G-Motif": ["--preset", "g-motif"],
    # masking-design cells (Yang, Thost, Ma): target, distribution, encoder
    "AttrMask motif target": ["--preset", "motif-mae"],
    "StructMAE-P (pagerank)": ["--preset", "structmae-p"],
    "StructMAE-L (learnable)": ["--preset", "structmae-l"],
    "GraphMAE (GNN decoder, SCE)": ["--preset", "graphmae"],
    "AttrMask GraphGPS": ["--preset", "attrmask", "--encoder", "graphgps"],
    "AttrMask motif GraphGPS": ["--preset", "motif-mae", "--encoder", "graphgps"],
    # 2D + 3D, for reference (one conformer per molecule and epoch: the same 5,000 samples/epoch)
    "GraphMVP": ["--preset", "graphmvp", "--conformer-sampling", "random"],
}


#: the randomly initialised encoder of a no-pretraining row (GIN when not listed)
SCRATCH = {"no pretraining (GraphGPS)": "graphgps"}


def labels_current(store: Path) -> bool:
    """True if the store's label sidecar holds current motif, contextual and functional-group labels."""
    from graphmvp.data.annotations import AtomLabels, LabelsError, MoleculeLabels

    try:
        AtomLabels.open(store, "motif", preload=False)
        AtomLabels.open(store, "contextual", preload=False)
        MoleculeLabels.open(store)
    except LabelsError:
        return False
    return True


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def pretrain(args, label: str, flags: list[str], store: Path, run_dir: Path) -> dict:
    metrics = run_dir / "metrics.csv"
    done = 0
    if metrics.is_file() and (run_dir / "last.pt").is_file():
        with open(metrics) as fh:
            done = len(list(csv.DictReader(fh)))
    if done < args.epochs:
        cmd = [sys.executable, "-m", "graphmvp.pretrain.cli", *flags, "--store", str(store), "--out", str(run_dir),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
               "--seed", str(args.seed), "--no-progress", "--log-every", "20"]
        run(cmd + (["--resume"] if done else ["--overwrite"]))
    with open(metrics) as fh:
        rows = list(csv.DictReader(fh))
    return {"label": label, "epochs": len(rows), "seconds": round(sum(float(r["seconds"]) for r in rows), 1),
            "samples_per_s": float(rows[-1]["samples_per_s"]), "final_loss_total": float(rows[-1]["loss_total"])}


def step_rate(log: Path, batch_size: int, skip: int = 2) -> float:
    """Steady pretraining speed (molecules/s) from a run's step lines (``--log-every 1``): the
    samples of the steps after the first ``skip`` over the time between their log lines."""
    import datetime

    times = []
    for line in log.read_text().splitlines():
        if " step " in line and "(global " in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            times.append(stamp.timestamp())
    if len(times) <= skip + 1:
        raise ValueError(f"{log}: only {len(times)} step lines; run more --speed-steps")
    return (len(times) - 1 - skip) * batch_size / (times[-1] - times[skip])


def measure_speed(args, label: str, flags: list[str], store: Path, run_dir: Path) -> float:
    """Molecules/s of ``label``'s step, from a short separate run (``--speed-steps`` steps)."""
    log = run_dir / "train.log"
    if not log.is_file():
        run([sys.executable, "-m", "graphmvp.pretrain.cli", *flags, "--store", str(store), "--out", str(run_dir),
             "--epochs", "1", "--max-steps", str(args.speed_steps), "--batch-size", str(args.batch_size),
             "--threads", str(args.threads), "--seed", str(args.seed), "--no-progress", "--log-every", "1",
             "--overwrite"])
    return step_rate(log, args.batch_size)


def rmse_cell(run_dir: Path, which: str) -> str:
    """``mean (std)`` of the test RMSE at the best-validation (``"best"``) or last epoch."""
    from graphmvp.finetune.table import read_entry

    entry = read_entry(run_dir, which)
    return f"{entry.mean:.3f} ({entry.std:.3f})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "ssl_study"))
    p.add_argument("--store", help="pretraining store (default: the FreeSolv study's, prepared if absent)")
    p.add_argument("--zinc", default=str(SHARED / "zinc_moses_train.csv.gz"))
    p.add_argument("--freesolv", default=str(SHARED / "freesolv.csv"))
    p.add_argument("--n-mol", type=int, default=5000)
    p.add_argument("--n-conf", type=int, default=5)
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="labels of METHODS (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="pretraining epochs, the same for every method (default 3)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--finetune-epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mi-draws", type=int, default=20, help="masking draws per molecule for the MI table")
    p.add_argument("--mi-bootstrap", type=int, default=200)
    p.add_argument("--speed-steps", type=int, default=0,
                   help="also time each method's step in a short separate run of this many steps (0: off); "
                        "run it on an otherwise idle machine")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        print(f"unknown method(s) {unknown}; known: {list(METHODS)}", file=sys.stderr)
        return 2
    if args.smoke:
        args.n_mol, args.n_conf, args.epochs, args.finetune_epochs, args.batch_size = 300, 2, 1, 2, 64
    args.zinc, args.freesolv = Path(args.zinc), Path(args.freesolv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.store:
        store = Path(args.store).resolve()
    else:
        store = work / f"zinc_{args.n_mol}x{args.n_conf}_keep.h5"
        args.gen_confs, args.hydrogens, args.prep_workers = None, "keep", 2
        prepare_store(args, store)
    if not labels_current(store):
        run([sys.executable, "-m", "graphmvp.prep.cli", "labels", str(store)])

    pre: dict[str, dict] = {}
    for label in args.methods:
        flags = METHODS[label]
        if flags is not None:
            pre[label] = pretrain(args, label, flags, store, work / "pretrain" / slug(label))

    speed: dict[str, float] = {}
    if args.speed_steps:
        for label in args.methods:
            if METHODS[label] is not None:
                speed[label] = measure_speed(args, label, METHODS[label], store, work / "speed" / slug(label))
                log(f"{label}: {speed[label]:.1f} molecules/s")

    summaries: dict[str, dict] = {}
    for label in args.methods:
        init = None if METHODS[label] is None else work / "pretrain" / slug(label)
        summary = finetune(args, label, init, work / "finetune" / slug(label), encoder=SCRATCH.get(label))
        summaries[label] = summary.get("metrics", {}) if isinstance(summary, dict) else {}

    lines = [
        "# 2D pretraining methods on one protocol: FreeSolv test RMSE (kcal/mol)",
        "",
        f"Command: `python benchmarks/ssl_methods_study.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"- pretraining: {store.name}, {args.epochs} epoch(s) per method, batch {args.batch_size}, "
        f"{args.threads} threads, seed {args.seed}; GIN 5 x 300 unless the row says GraphGPS",
        f"- fine-tuning: FreeSolv scaffold split 80/10/10, {args.finetune_epochs} epochs, seeds {args.seeds}, "
        "dropout 0.2, Adam 1e-3, batch 256, MSE",
        "",
        "| method | RMSE best-val | RMSE last | pretraining mol/s (epochs) | pretraining mol/s (timed alone) | pretraining s |",
        "|---|---|---|---|---|---|",
    ]
    speed_alone = speed
    for label in args.methods:
        ft = work / "finetune" / slug(label)
        info = pre.get(label)
        speed_cell = "-" if info is None else f"{info['samples_per_s']:.0f}"
        secs = "-" if info is None else f"{info['seconds']:.0f}"
        alone = f"{speed_alone[label]:.0f}" if label in speed_alone else "-"
        lines.append(f"| {label} | {rmse_cell(ft, 'best')} | {rmse_cell(ft, 'last')} | {speed_cell} | {alone} | {secs} |")

    scorer = work / "pretrain" / slug("StructMAE-L (learnable)")
    mi_out = work / "mi"
    mi_cmd = [sys.executable, "-m", "graphmvp.analysis.cli", "mi", "--data", str(args.freesolv), "--task", "freesolv",
              "--binarize", "median", "--vocab-store", str(store), "--draws", str(args.mi_draws),
              "--bootstrap", str(args.mi_bootstrap), "--out", str(mi_out)]
    if (scorer / "last.pt").is_file():
        mi_cmd += ["--scorer", str(scorer)]
    run(mi_cmd)
    lines += ["", "## I(target; FreeSolv label > median), bits", "", (mi_out / "mi_table.md").read_text().strip(), "",
              f"total wall time {time.time() - t0:.0f} s", ""]
    (work / "RESULTS.md").write_text("\n".join(lines))
    (work / "results.json").write_text(json.dumps({"pretrain": pre, "speed": speed, "finetune": summaries}, indent=1,
                                                  default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
