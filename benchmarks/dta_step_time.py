"""Training-step time of the drug-target affinity model on Davis or KIBA, per drug batch layout.

One step = build the batch (``DTAEncoded.batch``), forward, MSE, backward, Adam step, for the
table's model: GIN 5 x 300 (dropout 0.2) on the drugs, GraphDTA's protein CNN, batch 256. The
pairs are drawn at random from the training folds, as an epoch's shuffled batches are. Each
layout of :data:`graphmvp.finetune.dta.DRUG_BATCHES` is timed over the same batches after one
warm-up step; the median step is reported with the distinct drugs and proteins per batch, and an
epoch estimate for the training part (80% of the training folds). The protein CNN is also timed
alone, as the model computes it (letter-wise) and as ``nn.Conv1d`` on the embedded sequence.

    python benchmarks/dta_step_time.py [--data ../shared/data/dta/davis] [--threads 1] [--steps 8]
        [--batch-size 256] [--json out.json]

The fp32 matmul yardstick (``finetune_throughput.py``) printed before and after tells a busy
machine from a slow program.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from finetune_throughput import matmul_gflops  # noqa: E402

import graphmvp  # noqa: E402,F401
from graphmvp.finetune.dta import DRUG_BATCHES, DTAModel, GraphDTAProteinCNN, encode_dta, load_deepdta  # noqa: E402
from graphmvp.models import GIN  # noqa: E402


def measure(folder: Path, threads: int, steps: int, batch_size: int, label_transform: str) -> dict:
    torch.set_num_threads(threads)
    before = matmul_gflops(threads)
    data = load_deepdta(folder, label_transform, name=folder.name)
    enc = encode_dta(data)
    train_pairs = np.unique(np.concatenate(data.train_folds))
    rng = np.random.default_rng(0)
    batches = [rng.choice(train_pairs, batch_size, replace=False) for _ in range(steps + 1)]
    result = {"data": str(folder), "drugs": len(data.drug_ids), "proteins": len(data.protein_ids),
              "train_fold_pairs": int(train_pairs.shape[0]), "threads": threads, "batch_size": batch_size,
              "distinct_drugs_per_batch": float(np.mean([np.unique(data.pair_drug[b]).size for b in batches])),
              "distinct_proteins_per_batch": float(np.mean([np.unique(data.pair_protein[b]).size for b in batches])),
              "layouts": {}}
    steps_per_epoch = int(np.ceil(0.8 * train_pairs.shape[0] / batch_size))
    for layout in DRUG_BATCHES:
        torch.manual_seed(0)
        model = DTAModel(GIN(num_layers=5, emb_dim=300, dropout=0.2)).train()
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        times = []
        for b in batches:
            t0 = time.perf_counter()
            inputs, y = enc.batch(data, b, layout)
            loss = torch.nn.functional.mse_loss(model(*inputs), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        step = statistics.median(times[1:])
        result["layouts"][layout] = {"step_seconds_median": round(step, 3), "steps_timed": steps,
                                     "epoch_seconds_estimate": round(step * steps_per_epoch, 1),
                                     "steps_per_epoch": steps_per_epoch}
    result["protein_cnn"] = protein_cnn_time(enc.protein_tokens, data.pair_protein, batches)
    result["matmul_gflops"] = {"before": round(before, 1), "after": round(matmul_gflops(threads), 1)}
    return result


def protein_cnn_time(protein_tokens: np.ndarray, pair_protein: np.ndarray, batches: list[np.ndarray]) -> dict:
    """Forward + backward of GraphDTA's protein CNN alone on each batch's distinct proteins: the
    letter-wise computation the model uses against ``nn.Conv1d`` on the embedded sequence (median
    seconds; the first batch is the warm-up)."""
    torch.manual_seed(0)
    cnn = GraphDTAProteinCNN()
    out = {}
    for name, forward in (("letters", cnn), ("conv1d", cnn.conv1d_forward)):
        times = []
        for b in batches:
            tokens = torch.from_numpy(protein_tokens[np.unique(pair_protein[b])])
            t0 = time.perf_counter()
            cnn.zero_grad(set_to_none=True)
            forward(tokens).sum().backward()
            times.append(time.perf_counter() - t0)
        out[name] = round(statistics.median(times[1:]), 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "dta" / "davis"),
                   help="a DeepDTA data folder (default ../shared/data/dta/davis)")
    p.add_argument("--label-transform", default=None, help="pkd or none (default: pkd for a folder named davis)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=8, help="timed steps per layout, after one warm-up")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    folder = Path(args.data)
    if not folder.is_dir():
        print(f"{folder}: not a DeepDTA folder (expected ../shared/data/dta/davis)", file=sys.stderr)
        return 2
    transform = args.label_transform or ("pkd" if folder.name.lower() == "davis" else "none")
    r = measure(folder, args.threads, args.steps, args.batch_size, transform)
    print(f"{folder.name}: {r['drugs']} drugs, {r['proteins']} proteins, {r['train_fold_pairs']} training-fold pairs; "
          f"batch {r['batch_size']}: {r['distinct_drugs_per_batch']:.1f} distinct drugs, "
          f"{r['distinct_proteins_per_batch']:.1f} distinct proteins; {r['threads']} thread(s)")
    for layout, x in r["layouts"].items():
        print(f"  drugs {layout:>8}: {x['step_seconds_median']:.3f} s per step, about "
              f"{x['epoch_seconds_estimate']:.0f} s per epoch ({x['steps_per_epoch']} steps)")
    cnn = r["protein_cnn"]
    print(f"  protein CNN alone (forward + backward, the distinct proteins): {cnn['letters']:.3f} s letter-wise, "
          f"{cnn['conv1d']:.3f} s as nn.Conv1d")
    print(f"  fp32 matmul yardstick: {r['matmul_gflops']['before']:.0f} GFLOP/s before, {r['matmul_gflops']['after']:.0f} after")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
