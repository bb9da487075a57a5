"""Fine-tuning throughput of the GraphMVP GIN (5 layers x 300) on a FreeSolv-size data set.

Measures, with a fixed number of torch threads (default 2):

* training: molecules per second of a full fine-tuning step (batch the graphs, forward, masked
  loss, backward, Adam step) over the scaffold-split training part of FreeSolv (513 molecules),
  for several batch sizes; the first epoch is a warm-up and not counted; the median epoch is
  reported, and the share of the time spent building batched graphs;
* evaluation: molecules per second of eval-mode prediction over all 642 molecules (graphs
  batched once, as the trainer caches them);
* an fp32 matmul yardstick before and after, to tell a busy machine from a slow program.

    python benchmarks/finetune_throughput.py [--data ../shared/data/freesolv.csv] [--threads 2 1]
        [--batch-sizes 32 256] [--epochs 6] [--json out.json]

On a machine whose cores are busy with other work, 2 torch threads can be several times SLOWER
than 1: every parallel elementwise op waits at a barrier for a descheduled thread. Measured on the
shared 2-core machine with one core taken by another job: 1 thread ~600-820 mol/s training,
2 threads ~210 mol/s. The fp32 matmul yardstick printed with the numbers tells how busy the
machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import graphmvp  # noqa: F401
from graphmvp.finetune.data import TableOptions, load_dataset
from graphmvp.finetune.losses import masked_mse
from graphmvp.finetune.model import FinetuneModel
from graphmvp.finetune.problems import batch_slices
from graphmvp.finetune.splits import make_split
from graphmvp.models import GIN

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """fp32 matmul speed right now (GFLOP/s): a yardstick for how busy the machine is."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def measure(data: Path, threads: int, batch_sizes: list[int], epochs: int) -> dict:
    torch.set_num_threads(threads)
    before = matmul_gflops(threads)
    ds = load_dataset(data, TableOptions("smiles", ("expt",), "regression"), name="freesolv")
    split = make_split("scaffold", ds.smiles)
    train = split.train
    results = {"molecules": len(ds), "train_molecules": int(train.shape[0]), "threads": threads,
               "atoms_per_molecule": float(np.mean([g.num_atoms for g in ds.graphs])), "train": {}, "eval": {}}
    for bs in batch_sizes:
        torch.manual_seed(0)
        model = FinetuneModel(GIN(num_layers=5, emb_dim=300, dropout=0.2), 1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        epoch_s, batch_s = [], []
        for epoch in range(epochs + 1):
            model.train()
            order = train[torch.randperm(train.shape[0], generator=gen).numpy()]
            t0 = time.perf_counter()
            tb = 0.0
            for s in batch_slices(order.shape[0], bs):
                b0 = time.perf_counter()
                g, y = ds.batch(order[s])
                tb += time.perf_counter() - b0
                loss = masked_mse(model(g), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch > 0:
                epoch_s.append(time.perf_counter() - t0)
                batch_s.append(tb)
        med = statistics.median(epoch_s)
        results["train"][str(bs)] = {
            "molecules_per_s": round(train.shape[0] / med, 1),
            "epoch_seconds_median": round(med, 4),
            "epoch_seconds_all": [round(x, 4) for x in epoch_s],
            "batching_share": round(statistics.median(batch_s) / med, 3),
        }
        # evaluation over the whole set, graphs batched once
        model.eval()
        idx = np.arange(len(ds))
        batches = [ds.batch(idx[s])[0] for s in batch_slices(len(idx), max(bs, 256))]
        times = []
        with torch.no_grad():
            for _ in range(epochs + 1):
                t0 = time.perf_counter()
                for g in batches:
                    model(g)
                times.append(time.perf_counter() - t0)
        med_eval = statistics.median(times[1:])
        results["eval"][str(bs)] = {"molecules_per_s": round(len(ds) / med_eval, 1), "seconds_median": round(med_eval, 4)}
    results["matmul_gflops"] = {"before": round(before, 1), "after": round(matmul_gflops(threads), 1)}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "python": platform.python_version()}
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "freesolv.csv"))
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch thread counts to measure (default 2 1)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    p.add_argument("--epochs", type=int, default=6, help="timed epochs per batch size (after one warm-up)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        print(f"{data}: FreeSolv file not found (expected ../shared/data/freesolv.csv)", file=sys.stderr)
        return 2
    all_results = []
    for threads in args.threads:
        res = measure(data, threads, args.batch_sizes, args.epochs)
        all_results.append(res)
        print(f"GIN 5 x 300 fine-tuning on FreeSolv ({res['molecules']} molecules, {res['atoms_per_molecule']:.1f} "
              f"heavy atoms each; training part {res['train_molecules']}), {res['threads']} thread(s)")
        for bs, r in res["train"].items():
            e = res["eval"][bs]
            print(f"  batch {bs:>4}: train {r['molecules_per_s']:>8.1f} mol/s (epoch {r['epoch_seconds_median']:.3f} s, "
                  f"{100 * r['batching_share']:.0f}% building graphs); eval {e['molecules_per_s']:>8.1f} mol/s")
        print(f"  fp32 matmul yardstick: {res['matmul_gflops']['before']:.0f} GFLOP/s before, "
              f"{res['matmul_gflops']['after']:.0f} after (an idle 2-core EPYC gives ~200 with 2 threads)")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
