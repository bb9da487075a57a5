"""Does pretraining help FreeSolv? No pretraining vs AttrMask vs GraphMVP vs GraphMVP-G, end to end.

Steps (each skipped when its output already exists, so an interrupted study continues):

1. **Pretraining data**: ``graphmvp-prep`` on ``../shared/data/zinc_moses_train.csv.gz``: a seeded
   shuffle, the first ``--n-mol`` valid molecules, ``--n-conf`` RDKit conformers each (ETKDG +
   MMFF; ``--gen-confs`` generated, the lowest-energy ``--n-conf`` kept), molecules of the
   FreeSolv file excluded (canonical SMILES).
2. **Pretraining**: ``graphmvp-pretrain`` with the released presets ``attrmask``, ``graphmvp`` and
   ``graphmvp-g`` (GIN 5 x 300, the upstream hyper-parameters; batch 256) on that store. With
   ``--pretrain-minutes M`` the first epoch is timed and the run is resumed up to as many epochs
   as fit in M minutes (at least 1); ``--pretrain-epochs E`` fixes the count instead.
3. **Fine-tuning**: ``graphmvp-finetune`` on ``../shared/data/freesolv.csv`` (642 molecules,
   scaffold split 80/10/10, dropout 0.2, Adam 1e-3, batch 256, MSE on raw labels) for each
   method, ``--seeds`` (default 0 1 2), ``--finetune-epochs`` (default 100).
4. **Table**: test RMSE (kcal/mol) at the best-validation epoch and at the last epoch,
   mean(std) over seeds, written to ``<work>/RESULTS.md`` with the settings that produced it.

Cost with the defaults on an idle 2-core machine: conformer generation for 5,000 molecules
(5 conformers each) ~10-15 min, pretraining 3 x ~15 min (at least one epoch each: the first
epoch is always run whole; a GraphMVP epoch is 25,000 samples), fine-tuning 4 methods x 3 seeds x
100 epochs ~15 min; about 1.5 h in all, more on a busy machine. Full study::

    python benchmarks/finetune_freesolv_study.py --work runs/freesolv_study

Smoke setting (minutes)::

    python benchmarks/finetune_freesolv_study.py --smoke --work runs/freesolv_smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: method label -> pretraining preset (None = no pretraining)
METHODS = {"no pretraining": None, "attrmask": "attrmask", "graphmvp": "graphmvp", "graphmvp-g": "graphmvp-g"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str]) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO)


def prepare_store(args, store: Path) -> None:
    if store.is_file():
        log(f"store {store} exists; reusing it")
        return
    run([sys.executable, "-m", "graphmvp.prep.cli", "run", str(args.zinc), "-o", str(store), "--smiles-col", "SMILES",
         "--n-mol", str(args.n_mol), "--n-conf", str(args.n_conf), "--gen-confs", str(args.gen_confs or args.n_conf),
         "--exclude", str(args.freesolv),
         "--hydrogens", args.hydrogens, "--workers", str(args.prep_workers), "--seed", str(args.seed)])


def epoch_seconds(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh)]


def pretrain(args, preset: str, store: Path, run_dir: Path) -> dict:
    base = [sys.executable, "-m", "graphmvp.pretrain.cli", "--preset", preset, "--store", str(store), "--out",
            str(run_dir), "--threads", str(args.threads), "--seed", str(args.seed), "--no-progress",
            "--batch-size", str(args.pretrain_batch_size), "--log-every", "50"]
    if (run_dir / "model_2d.pt").is_file() and (run_dir / "metrics.csv").is_file():
        done = len(epoch_seconds(run_dir))
    else:
        done = 0
    if args.pretrain_epochs is not None:
        target = args.pretrain_epochs
    else:
        if done == 0:
            run(base + ["--epochs", "1", "--overwrite"])
            done = 1
        first = epoch_seconds(run_dir)[0]
        target = max(1, int(args.pretrain_minutes * 60 // max(first, 1e-9)))
        log(f"{preset}: first epoch {first:.1f} s -> {target} epoch(s) fit in {args.pretrain_minutes} min")
    if done == 0:
        run(base + ["--epochs", str(target), "--overwrite"])
    elif done < target:
        run(base + ["--epochs", str(target), "--resume"])
    secs = epoch_seconds(run_dir)
    with open(run_dir / "metrics.csv") as fh:
        last = list(csv.DictReader(fh))[-1]
    return {"preset": preset, "epochs": len(secs), "seconds": round(sum(secs), 1),
            "final_loss_total": float(last["loss_total"]), "samples_per_s": float(last["samples_per_s"])}


def finetune(args, label: str, init: Path | None, out: Path, encoder: str | None = None) -> dict:
    """Fine-tune ``init`` (None: a random ``encoder``, GIN by default) on FreeSolv into ``out``."""
    from graphmvp.finetune.config import FinetuneConfig
    from graphmvp.finetune.trainer import SUMMARY_FILE, finetune as run_finetune

    if (out / SUMMARY_FILE).is_file():
        log(f"fine-tuning {label}: {out} is finished; reusing it")
        return json.loads((out / SUMMARY_FILE).read_text())
    log(f"fine-tuning {label} ({'random init' if init is None else init}) on FreeSolv, seeds {args.seeds}")
    cfg = FinetuneConfig(task="freesolv", data_file=str(args.freesolv), init=None if init is None else str(init),
                         method=label, encoder=encoder, seeds=tuple(args.seeds), epochs=args.finetune_epochs, out=str(out),
                         threads=args.threads, progress=False, overwrite=True)
    return run_finetune(cfg, command=["benchmarks/finetune_freesolv_study.py"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "freesolv_study"), help="study folder")
    p.add_argument("--zinc", default=str(SHARED / "zinc_moses_train.csv.gz"))
    p.add_argument("--freesolv", default=str(SHARED / "freesolv.csv"))
    p.add_argument("--n-mol", type=int, default=5000, help="pretraining molecules (default 5000)")
    p.add_argument("--n-conf", type=int, default=5, help="conformers per molecule (default 5, as upstream)")
    p.add_argument("--gen-confs", type=int, default=None,
                   help="conformers generated per molecule before keeping --n-conf (default: --n-conf, to save time)")
    p.add_argument("--hydrogens", choices=("keep", "drop"), default="keep",
                   help="pretraining graphs with explicit H (keep, upstream) or heavy atoms only")
    p.add_argument("--prep-workers", type=int, default=2)
    p.add_argument("--presets", nargs="+", default=["attrmask", "graphmvp", "graphmvp-g"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pretrain-minutes", type=float, default=15.0,
                   help="per preset: epochs = how many fit in this time, from the first epoch (default 15)")
    g.add_argument("--pretrain-epochs", type=int, help="per preset: this many epochs instead")
    p.add_argument("--pretrain-batch-size", type=int, default=256)
    p.add_argument("--finetune-epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the molecule sample and of pretraining")
    p.add_argument("--smoke", action="store_true",
                   help="small setting to check the pipeline: 300 molecules x 2 conformers, 2 pretraining epochs "
                        "(batch 64), 2 fine-tuning epochs, seeds 0 1 2")
    args = p.parse_args(argv)
    if args.smoke:
        args.n_mol, args.n_conf, args.pretrain_epochs, args.finetune_epochs = 300, 2, 2, 2
        args.pretrain_batch_size = 64
    args.zinc, args.freesolv = Path(args.zinc), Path(args.freesolv)
    for f in (args.zinc, args.freesolv):
        if not f.is_file():
            print(f"{f}: not found (the study reads ../shared/data)", file=sys.stderr)
            return 2
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    store = work / f"zinc_{args.n_mol}x{args.n_conf}_{args.hydrogens}.h5"
    t_prep = time.time()
    prepare_store(args, store)
    t_prep = time.time() - t_prep

    pre = {}
    for preset in args.presets:
        pre[preset] = pretrain(args, preset, store, work / "pretrain" / preset)

    from graphmvp.finetune.table import format_table, read_entry

    runs = []
    for label, preset in METHODS.items():
        if preset is not None and preset not in pre:
            continue
        init = None if preset is None else work / "pretrain" / preset
        out = work / "finetune" / label.replace(" ", "_")
        finetune(args, label, init, out)
        runs.append(out)
    best = format_table([read_entry(r, "best") for r in runs], fmt="markdown", epoch="best")
    last = format_table([read_entry(r, "last") for r in runs], fmt="markdown", epoch="last")

    from graphmvp.data.store import ConformerStore

    with ConformerStore(store) as s:
        n_mol, n_conf = len(s), int(s.num_conformers().sum())
    lines = [
        "# FreeSolv: does pretraining help?",
        "",
        f"Command: `python benchmarks/finetune_freesolv_study.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"- pretraining data: {n_mol} molecules / {n_conf} RDKit conformers from {args.zinc.name} "
        f"(seed {args.seed}, FreeSolv molecules excluded, hydrogens {args.hydrogens}); prepared in {t_prep:.0f} s",
    ]
    for preset, info in pre.items():
        lines.append(f"- {preset}: {info['epochs']} epoch(s), batch {args.pretrain_batch_size}, {info['seconds']:.0f} s, "
                     f"final loss {info['final_loss_total']:.4f}, {info['samples_per_s']:.1f} samples/s")
    lines += [
        f"- fine-tuning: FreeSolv (642 molecules), scaffold split 80/10/10, {args.finetune_epochs} epochs, seeds "
        f"{args.seeds}, GIN 5 x 300, dropout 0.2, Adam lr 1e-3, batch 256, MSE on raw labels, {args.threads} threads",
        f"- total wall time {time.time() - t0:.0f} s",
        "",
        "## Test RMSE (kcal/mol) at the best-validation epoch",
        "",
        best,
        "",
        "## Test RMSE (kcal/mol) at the last epoch",
        "",
        last,
        "",
    ]
    (work / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
