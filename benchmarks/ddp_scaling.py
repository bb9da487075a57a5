"""DDP scaling on this machine: molecules/s of the GraphMVP training step, 1 process vs 2 ranks.

    python benchmarks/ddp_scaling.py [--store STORE] [--batch-size 256] [--warmup 2] [--steps 6]
        [--configs 1x1 1x2 2x1] [--repeats 2]

Each configuration runs the real trainer (``graphmvp-pretrain --preset graphmvp``: EBM-NCE + VRR,
GIN 5 x 300, SchNet 300/128/6/51, cutoff 10 A; upstream sizes) on the same store for
``warmup + steps`` optimiser steps and reads the time of the step lines rank 0 writes to
``train.log`` (millisecond timestamps): molecules/s = ``steps x batch / (t[warmup + steps] -
t[warmup])``, so start-up (imports, process group, model build) and the first steps are left out.
Data loading is in the step (DataLoader, ``num_workers=0``), as in a real run.

Configurations (``PxT``: P processes x T torch threads each):

* ``1x1``: one process, one thread;
* ``1x2``: one process, two threads (the single-process default on this 2-core machine);
* ``2x1``: ``torchrun --nproc_per_node=2``, gloo, one thread per rank; ``--batch-size`` is the
  global batch (each rank computes half of it).

Store: ``--store``, else the benchmark store of ``pretrain_throughput.py`` in ``benchmarks/out``
(``geom_bench1k_first600_c5.h5``) when present, else one prepared once from
``../shared/data/geom_sample`` (5 lowest-energy conformers per molecule) into ``benchmarks/out``.

Rounds: the configurations run ``--repeats`` times, interleaved and in a rotated order each round
(round 1: 1x1 1x2 2x1, round 2: 1x2 2x1 1x1, ...), so that load from other jobs hits all of them;
per configuration the best and the median round are reported.

Output: one JSON line per run, then a table. The 1-minute load average is printed before and
after each run: on a machine shared with other jobs every figure drops, and 2 threads (or 2
ranks) that must meet every step suffer more from a busy core than one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO epoch \d+ step \d+/\d+ \(global (\d+)\)")


def default_store(shared: Path, out: Path) -> tuple[Path, str]:
    """The benchmark store (see the module docstring) and a description of its source."""
    bench = out / "geom_bench1k_first600_c5.h5"
    if bench.is_file():
        return bench, f"{bench.name} (geom_bench1k, first 600 molecules, 5 conformers; pretrain_throughput.py)"
    sample = shared / "geom_sample"
    if not (sample / "summary_drugs.json").is_file():
        raise SystemExit(f"no store: pass --store, or run benchmarks/pretrain_throughput.py, or provide {sample}")
    path = out / "geom_sample_c5.h5"
    if not path.is_file():
        sys.path.insert(0, str(REPO))
        from graphmvp.prep.config import PrepConfig
        from graphmvp.prep.pipeline import prepare

        out.mkdir(parents=True, exist_ok=True)
        prepare(PrepConfig(input=str(sample), output=str(path), n_conf=5, workers=2))
    return path, f"{path.name} ({sample}, 5 lowest-energy conformers)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> float:
    return os.getloadavg()[0]


def step_times(log: Path) -> dict[int, float]:
    """global step -> wall time (s since the epoch) of its line in ``train.log``."""
    times = {}
    for line in log.read_text().splitlines():
        m = STEP_LINE.match(line)
        if m:
            times[int(m.group(2))] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return times


def run_config(config: str, store: Path, args, work: Path) -> dict:
    processes, threads = (int(x) for x in config.split("x"))
    out = work / f"run_{config}"
    flags = ["--preset", "graphmvp", "--store", str(store), "--out", str(out), "--overwrite", "--batch-size",
             str(args.batch_size), "--max-steps", str(args.warmup + args.steps), "--epochs", "1000", "--log-every", "1",
             "--no-progress", "--threads", str(threads), "--device", "cpu", "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        command = [sys.executable, "-m", "graphmvp.pretrain.cli", *flags]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                   "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "graphmvp.pretrain.cli", *flags]
    load_before = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{config} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    times = step_times(out / "train.log")
    first, last = args.warmup, args.warmup + args.steps
    if first not in times or last not in times:
        raise SystemExit(f"{config}: train.log lacks the step lines {first} and {last}")
    seconds = times[last] - times[first]
    result = {
        "figure": "ddp_scaling", "config": config, "processes": processes, "threads_per_process": threads,
        "global_batch": args.batch_size, "timed_steps": args.steps, "seconds_per_step": round(seconds / args.steps, 3),
        "molecules_per_s": round(args.steps * args.batch_size / seconds, 2), "wall_seconds_incl_startup": round(wall, 1),
        "load_1min_before": round(load_before, 2), "load_1min_after": round(load_average(), 2),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="conformer store (default: see above)")
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--out", default=str(HERE / "out"), help="cache folder for a prepared store")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (default 256, upstream's)")
    p.add_argument("--warmup", type=int, default=2, help="steps before the timed ones")
    p.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    p.add_argument("--configs", nargs="+", default=["1x1", "1x2", "2x1"], help="PxT: processes x threads each")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds (best and median reported)")
    args = p.parse_args(argv)
    for config in args.configs:
        if not re.fullmatch(r"[12]x[12]", config):
            p.error(f"--configs {config}: expected PxT with P, T in 1..2 (this is a 2-core benchmark)")
    if args.store:
        store, source = Path(args.store), args.store
    else:
        store, source = default_store(Path(args.shared), Path(args.out))
    print(json.dumps({"figure": "ddp_scaling_setup", "store": str(store), "source": source, "cpus": os.cpu_count(),
                      "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps}), flush=True)
    runs: dict[str, list[dict]] = {c: [] for c in args.configs}
    with tempfile.TemporaryDirectory(prefix="ddp_scaling_") as work:
        for round_ in range(args.repeats):
            k = round_ % len(args.configs)
            for config in args.configs[k:] + args.configs[:k]:
                runs[config].append({**run_config(config, store, args, Path(work)), "round": round_ + 1})
    summary = {}
    for config, results in runs.items():
        rates = sorted(r["molecules_per_s"] for r in results)
        summary[config] = {"best": rates[-1], "median": rates[len(rates) // 2] if len(rates) % 2 else
                           (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2,
                           "loads": [(r["load_1min_before"], r["load_1min_after"]) for r in results]}
        print(json.dumps({"figure": "ddp_scaling_summary", "config": config, "best_molecules_per_s": summary[config]["best"],
                          "median_molecules_per_s": summary[config]["median"], "rounds": len(results)}), flush=True)
    base = summary.get("1x1", next(iter(summary.values())))
    print(f"\nGraphMVP training step (preset graphmvp, upstream sizes, global batch {args.batch_size}, {args.steps} timed "
          f"steps after {args.warmup}, {args.repeats} interleaved rounds), {source}; CPU, {os.cpu_count()} cores "
          "shared with other jobs (1-minute load before/after each round shown):")
    print(f"{'config':>8} {'best mol/s':>11} {'median':>8} {'best vs 1x1':>12}  load per round")
    for config, row in summary.items():
        loads = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in row["loads"])
        print(f"{config:>8} {row['best']:>11.2f} {row['median']:>8.2f} {row['best'] / base['best']:>11.2f}x  {loads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
