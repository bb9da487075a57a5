"""Which parts of the default fine-tuning protocol earn their place (issue 14, item 1).

Variants of a GIN without pretraining on the scaffold split of a data set (default FreeSolv):
``paper`` (``--protocol paper``), ``paper+standardize``, ``default`` (``--protocol default``), and
``default`` with one candidate reverted to (or, for the extras, switched from) its paper value
each (:data:`VARIANTS`). A candidate is kept when reverting it makes the validation and test RMSE
worse. One line per (data set, variant, seed) in ``RESULTS/ablation.jsonl`` (``--results``, default
``benchmarks/results/finetune_protocol_ablation/``, kept in git); a rerun resumes;
``RESULTS/ABLATION.md`` holds the table (test and validation RMSE at the best-validation epoch,
mean (std) over seeds, epochs trained, seconds)::

    nice -n 15 python benchmarks/finetune_protocol_ablation.py --work runs/ablation --datasets freesolv --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_vs_peers import append_result, bench_set, read_results  # noqa: E402

from graphmvp.io import write_text_atomic  # noqa: E402

#: variant -> FinetuneConfig options
VARIANTS = {
    "paper": {"protocol": "paper"},
    "paper+standardize": {"protocol": "paper", "standardize": True},
    "default": {"protocol": "default"},
    "default, batch 256": {"protocol": "default", "batch_size": 256},
    "default, raw targets": {"protocol": "default", "standardize": False},
    "default, linear head": {"protocol": "default", "head": "linear"},
    "default, constant lr": {"protocol": "default", "lr_schedule": "constant", "warmup_epochs": 0.0},
    "default, cosine lr": {"protocol": "default", "lr_schedule": "cosine"},
    "default, no early stop": {"protocol": "default", "patience": 0},
    "default + clip 1": {"protocol": "default", "grad_clip": 1.0},
    "default + wd 1e-5": {"protocol": "default", "weight_decay": 1e-5},
    "default + sum pool": {"protocol": "default", "pooling": "sum"},
    "default, mean pool": {"protocol": "default", "pooling": "mean"},
    # what chemprop's D-MPNN does differently (dropout 0, depth 3, sum-like "norm" aggregation)
    "default + dropout 0": {"protocol": "default", "dropout": 0.0},
    "default + 3 layers": {"protocol": "default", "num_layers": 3},
    # measured while the default's regression pooling was still mean
    "default, mean pool + dropout 0": {"protocol": "default", "pooling": "mean", "dropout": 0.0},
    "default, mean pool + 3 layers": {"protocol": "default", "pooling": "mean", "num_layers": 3},
}


def table(results: list[dict]) -> str:
    lines = ["| data | variant | test RMSE | valid RMSE | epochs trained | s/model | seeds |", "|---|---|---|---|---|---|---|"]
    for ds in dict.fromkeys(r["dataset"] for r in results):
        for v in VARIANTS:
            rs = [r for r in results if r["dataset"] == ds and r["method"] == v]
            if not rs:
                continue
            t = np.array([r["test"]["rmse"] for r in rs])
            va = np.array([r["valid"]["rmse"] for r in rs])
            lines.append(f"| {ds} | {v} | {t.mean():.3f} ({t.std():.3f}) | {va.mean():.3f} ({va.std():.3f}) | "
                         f"{np.mean([r['epochs'] for r in rs]):.0f} | {np.mean([r['seconds'] for r in rs]):.0f} | "
                         f"{','.join(str(r['seed']) for r in rs)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="run folders and data copies")
    p.add_argument("--results", default=str(Path(__file__).resolve().parent / "results" / "finetune_protocol_ablation"),
                   help="folder of ablation.jsonl and ABLATION.md (default: in the repository)")
    p.add_argument("--datasets", nargs="+", default=["freesolv"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "moleculenet"))
    p.add_argument("--moleculeace-data")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from graphmvp.finetune.trainer import finetune

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "ablation.jsonl"
    for name in args.datasets:
        ds = bench_set(name, args, work)
        for variant in args.variants:
            for seed in args.seeds:
                if (ds.name, variant, seed) in {(r["dataset"], r["method"], r["seed"]) for r in read_results(path)}:
                    continue
                out = work / "runs" / ds.name / f"{variant.replace(' ', '_').replace(',', '')}-s{seed}"
                t0 = time.perf_counter()
                s = finetune(ds.config(seeds=(seed,), out=str(out), overwrite=True, threads=args.threads, progress=False,
                                       **VARIANTS[variant]))
                per = s["per_seed"][0]
                rec = {"dataset": ds.name, "method": variant, "seed": seed, "valid": per["valid_at_best"],
                       "test": per["test_at_best_valid"], "epochs": per["epochs_trained"],
                       "seconds": time.perf_counter() - t0}
                append_result(path, rec)
                print(f"{ds.name} / {variant} / seed {seed}: test RMSE {rec['test']['rmse']:.3f} valid "
                      f"{rec['valid']['rmse']:.3f} ({rec['epochs']} epochs, {rec['seconds']:.0f} s)", flush=True)
                write_text_atomic(results / "ABLATION.md", table(read_results(path)))
    print(table(read_results(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
