"""Pretraining throughput: molecules/s of a full training step, where the time goes, and FLOP/s.

    python benchmarks/pretrain_throughput.py [--shared ../shared/data] [--threads 2] [--steps 3]
        [--repeats 3] [--schnet-impl plain fused tabulated fused-bf16] [--only graphmvp|attrmask]

Two steps are measured on CPU with ``torch.set_num_threads(threads)`` (2 by default):

* GraphMVP: 2D + 3D, EBM-NCE + VRR, batch 256, explicit hydrogens, upstream sizes (GIN 5 x 300,
  SchNet 300 hidden / 128 filters / 6 interactions / 51 Gaussians, cutoff 10 A; the released
  preset ``graphmvp``);
* AttrMask, 2D only (preset ``attrmask``, GIN 5 x 300, batch 256).

Each step is split with ``time.perf_counter`` into: ``data`` (the DataLoader producing the batch:
256 samples masked and featurised, plus collate; ``num_workers=0`` so it is on the critical
path), ``encode_2d`` (GIN + pooling of the main pass), ``encode_3d`` (SchNet + mean),
``objectives`` (the loss terms, including a 2D task's own GIN pass) and ``backward_step``
(backward + Adam). ``warmup`` steps are run first, then ``repeats`` rounds of ``steps`` steps
are measured (mean per round; the best round is reported, see below).

FLOPs: one extra step runs under ``torch.utils.flop_counter.FlopCounterMode``, stage by stage
(``encode_2d``, ``encode_3d``, ``objectives``, ``backward_step`` = the backward pass), which
counts the matrix products (mm/addmm/bmm/...) of forward and backward; each stage's FLOPs over
its time give ``fraction_of_matmul_per_stage`` (the backward stage's time includes Adam). It does NOT see DGL's sparse kernels
(the GIN's message passing ``u_add_e`` + sum runs in DGL's C++ SpMM), nor index_add / gathers /
element-wise ops (SchNet's continuous-filter products and neighbour sums, activations). Those
are added as an analytic estimate from forward hooks on the encoders (per GIN call with N nodes,
E edges, width D: ``2 E D + 2 N D``; per SchNet call with E neighbour pairs, F filters, I
interactions, G Gaussians: ``E (4 G + 8) + I E (3 F + 4 F)`` for the radial basis, distances,
filter activation, cutoff scaling, product and sum), forward x 3 for forward + backward. These
element-wise parts are memory bound; they are reported separately so the counted figure stays
exact.

Achieved FLOP/s is compared with a plain ``torch.matmul`` of 2048 x 2048 fp32 matrices measured
in the same run with the same thread count (the practical roofline of this CPU): the mean of the
start-of-run figure and the figures just before and after each set of timed steps, so that a
machine shared with other jobs degrades both sides alike. The SchNet part
is also measured alone (forward + backward of the 3D encoder on the same batch) to give the 3D
step's fraction of that roofline.

SchNet implementations (``--schnet-impl``, default ``plain fused tabulated fused-bf16``; see
:data:`graphmvp.models.schnet.SCHNET_IMPLS`): the GraphMVP step is measured once per
implementation on the SAME model (the implementations share the parameters) and the SAME
sequence of batches (one loader per implementation, same seed), in ``--repeats`` interleaved
rounds (plain, fused, ..., plain, fused, ...) so that load from other jobs hits every
implementation alike; per implementation the best round (lowest mean step) is reported, with
the median round alongside. ``graphmvp_step`` and ``graphmvp_3d_step_schnet_fwd_bwd`` are emitted
per implementation (key ``schnet_impl``), then ``graphmvp_schnet_impl_comparison`` puts them
side by side (per stage seconds, molecules/s, fraction of the matmul rate, speed-up over
``plain``). ``tabulated`` skips most of SchNet's GEMMs (it interpolates the filter networks):
its counted FLOPs are smaller, so next to its own fraction the comparison gives
``plain_equivalent_fraction_of_matmul`` (the plain path's FLOPs over this path's time, like a
"model FLOPs utilisation"; it can exceed 1). A bf16 matmul yardstick is printed too:
``fused-bf16``'s fraction is still taken of the fp32 rate (the FLOPs are the same; the bf16
rate shows what the CPU offers).

Data: ``<shared>/geom_bench1k`` (the set upstream was timed on, see
``../shared/reference/GRAPHMVP.md``): the first ``--n-mol`` (600) molecules in summary order with
their 5 lowest-energy conformers, prepared once with geom_prep into ``benchmarks/out/``
(git-ignored); when absent, the bundled demo SMILES (RDKit conformers, explicit H).

Memory: like ``graphmvp-pretrain``, the benchmark calls
:func:`graphmvp.malloc_tuning.tune_malloc` (glibc keeps freed blocks instead of unmapping them)
unless ``--no-malloc-tuning``; each step figure reports the process's minor page faults and
user/system CPU seconds per step so the effect is visible.

OpenMP: torch and DGL each bring their own libgomp (two thread pools). With the default wait
policy a pool's threads spin after each parallel region, taking a core from the other pool's
threads and from other processes; ``OMP_WAIT_POLICY=PASSIVE python benchmarks/...`` makes them
sleep instead (read when the libraries load, so it must be set in the environment). The policy
in effect is printed with the matmul figure; see docs/benchmarks.md for its effect.

Output: one JSON line per figure. The 1-minute load average is printed with the matmul figure:
on a machine shared with other jobs all times grow, and the matmul reference with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

import graphmvp  # noqa: F401
from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.demo import demo_smiles_path
from graphmvp.models.schnet import DEFAULT_SCHNET_IMPL, SCHNET_IMPLS
from graphmvp.pretrain import GraphMVPModel, dataset_options, epoch_batches, malloc_mmap_threshold, resolve_config
from graphmvp.malloc_tuning import malloc_tuned, tune_malloc

HERE = Path(__file__).resolve().parent
UPSTREAM_SAMPLES_PER_S = 34.5  # ../shared/reference/GRAPHMVP.md: 145 s per epoch of 5,000 samples, 7.3 s/step
PARTS = ("data", "encode_2d", "encode_3d", "objectives", "backward_step")


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"figure": figure, **values}), flush=True)


# -- data --------------------------------------------------------------------------------------------
def benchmark_store(shared: Path, out: Path, n_mol: int, n_conf: int) -> tuple[Path, str]:
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    out.mkdir(parents=True, exist_ok=True)
    geom = shared / "geom_bench1k" / "rdkit_folder"
    if (geom / "summary_drugs.json").is_file():
        path = out / f"geom_bench1k_first{n_mol}_c{n_conf}.h5"
        source = f"{geom} (first {n_mol} molecules in summary order, {n_conf} lowest-energy conformers)"
        if not path.is_file():
            prepare(PrepConfig(input=str(geom), output=str(path), n_conf=n_conf, n_mol=n_mol, shuffle=False,
                               workers=2))
    else:
        path = out / f"demo_c{n_conf}.h5"
        source = f"bundled demo SMILES {demo_smiles_path()} ({geom} absent)"
        if not path.is_file():
            prepare(PrepConfig(input=str(demo_smiles_path()), output=str(path), n_conf=n_conf, workers=2))
    return path, source


def batches_forever(dataset: PretrainDataset, batch_size: int, seed: int):
    """Training batches as the trainer makes them (DataLoader, num_workers=0), epoch after epoch."""
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=epoch_batches(len(dataset), batch_size, seed, epoch),
                                             collate_fn=collate, num_workers=0)
        for batch in loader:
            if batch.batch_size == batch_size:
                yield batch
        epoch += 1


# -- FLOPs -----------------------------------------------------------------------------------------
def matmul_flops_per_s(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


class SparseFlops:
    """Analytic forward FLOPs of the message-passing parts FlopCounterMode does not see."""

    def __init__(self, model: GraphMVPModel):
        self.forward_flops = 0.0
        self.handles = [model.encoder_2d.register_forward_hook(self._gin)]
        if model.encoder_3d is not None:
            self.handles.append(model.encoder_3d.register_forward_hook(self._schnet))
        self.model = model

    def _gin(self, module, args, output) -> None:
        g = args[0]
        d = module.emb_dim
        self.forward_flops += module.num_layers * (2.0 * g.num_edges() * d + 2.0 * g.num_nodes() * d)

    def _schnet(self, module, args, output) -> None:
        g = args[0]
        e = g.num_edges()
        schnet = module.schnet
        f = schnet.interactions[0].filter_network[0].out_features
        n_rbf = schnet.radial_basis.n_rbf
        self.forward_flops += e * (4.0 * n_rbf + 8.0) + len(schnet.interactions) * e * 7.0 * f

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    @property
    def train_flops(self) -> float:
        return 3.0 * self.forward_flops


def count_stage_flops(model: GraphMVPModel, optimizer, batch) -> tuple[dict[str, float], float]:
    """(stage -> FLOPs counted by FlopCounterMode, analytic sparse FLOPs) of one training step,
    for the compute stages of :data:`PARTS` (not ``data``; ``backward_step`` = backward only)."""
    from torch.utils.flop_counter import FlopCounterMode

    flops: dict[str, float] = {}

    def counted(stage: str, fn: Callable[[], Any]) -> Any:
        with FlopCounterMode(display=False) as counter:
            result = fn()
        flops[stage] = float(counter.get_total_flops())
        return result

    sparse = SparseFlops(model)
    try:
        z2d = counted("encode_2d", lambda: model.encode_2d(batch))
        z3d = counted("encode_3d", lambda: model.encode_3d(batch))
        out = counted("objectives", lambda: model.losses(batch, z2d, z3d))
        optimizer.zero_grad(set_to_none=True)
        counted("backward_step", lambda: out.total.backward())
    finally:
        sparse.close()
    optimizer.zero_grad(set_to_none=True)
    return flops, sparse.train_flops


def count_flops(fn: Callable[[], None], model: GraphMVPModel) -> tuple[float, float]:
    """(FLOPs counted by FlopCounterMode, analytic sparse FLOPs) of ``fn`` (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    sparse = SparseFlops(model)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        sparse.close()
    return float(counter.get_total_flops()), sparse.train_flops


# -- steps -------------------------------------------------------------------------------------------
def timed_step(model, optimizer, batches) -> dict[str, float]:
    t0 = time.perf_counter()
    batch = next(batches)
    t1 = time.perf_counter()
    z2d = model.encode_2d(batch)
    t2 = time.perf_counter()
    z3d = model.encode_3d(batch)
    t3 = time.perf_counter()
    out = model.losses(batch, z2d, z3d)
    t4 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out.total.backward()
    optimizer.step()
    t5 = time.perf_counter()
    if not torch.isfinite(out.total):
        raise RuntimeError("non-finite loss in the benchmark")
    return {"data": t1 - t0, "encode_2d": t2 - t1, "encode_3d": t3 - t2, "objectives": t4 - t3, "backward_step": t5 - t4}


def _make_run(cfg, store_path: Path):
    """(dataset, model, optimizer, hydrogens) of one benchmarked configuration."""
    torch.manual_seed(0)
    with ConformerStore(store_path) as store:
        hydrogens = store.hydrogens
        dataset = PretrainDataset(store, views=cfg.views, conformer_sampling=cfg.conformer_sampling,
                                  mask_ratio=cfg.mask_ratio, seed=cfg.seed, cutoff=cfg.cutoff,
                                  max_neighbors=cfg.max_neighbors, **dataset_options(cfg))
    model = GraphMVPModel(cfg).train()
    optimizer = torch.optim.Adam(model.parameter_groups(cfg.lr, cfg.schnet_lr_scale, cfg.to2d_lr_scale),
                                 lr=cfg.lr, weight_decay=cfg.weight_decay)
    return dataset, model, optimizer, hydrogens


def _set_impl(model: GraphMVPModel, impl: str | None, cfg) -> None:
    """Run SchNet by ``impl``, with the malloc threshold graphmvp-pretrain would apply for it."""
    if impl is not None:
        model.encoder_3d.impl = impl
        if malloc_tuned():
            tune_malloc(malloc_mmap_threshold(dataclasses.replace(cfg, schnet_impl=impl)))


def measure(label: str, cfg, store_path: Path, source: str, args, matmul: float,
            impls: list[str | None] | None = None) -> dict[str | None, dict[str, Any]]:
    """Time the step of ``cfg`` once per SchNet implementation in ``impls`` (None: as configured).

    Same model and same batch sequence for every implementation, ``args.repeats`` interleaved
    rounds of ``args.steps`` timed steps; returns impl -> the figures of its best round.
    """
    impls = impls or [None]
    dataset, model, optimizer, hydrogens = _make_run(cfg, store_path)
    loaders = {impl: batches_forever(dataset, cfg.batch_size, cfg.seed) for impl in impls}
    for impl in impls:
        _set_impl(model, impl, cfg)
        for _ in range(args.warmup):
            timed_step(model, optimizer, loaders[impl])
    matmul_samples = [matmul]
    rounds: dict[str | None, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for _ in range(args.repeats):
        for impl in impls:
            _set_impl(model, impl, cfg)
            matmul_samples.append(matmul_flops_per_s())
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            rows = [timed_step(model, optimizer, loaders[impl]) for _ in range(args.steps)]
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            mean = {p: sum(r[p] for r in rows) / len(rows) for p in PARTS}
            rounds[impl].append({
                "mean": mean,
                "step": sum(mean.values()),
                "user": (usage1.ru_utime - usage0.ru_utime) / args.steps,
                "system": (usage1.ru_stime - usage0.ru_stime) / args.steps,
                "faults": (usage1.ru_minflt - usage0.ru_minflt) / args.steps,
                "load": os.getloadavg()[0],
            })
    matmul_samples.append(matmul_flops_per_s())
    # the roofline as measured around the timed steps (the machine may be shared)
    matmul = sum(matmul_samples) / len(matmul_samples)

    results: dict[str | None, dict[str, Any]] = {}
    for impl in impls:
        _set_impl(model, impl, cfg)
        ordered = sorted(rounds[impl], key=lambda r: r["step"])
        best, median = ordered[0], ordered[len(ordered) // 2]
        mean, step = best["mean"], best["step"]
        # one more batch for the FLOP count (same model, not timed)
        batch = next(loaders[impl])
        stage_flops, sparse = count_stage_flops(model, optimizer, batch)
        counted = sum(stage_flops.values())
        compute = step - mean["data"]
        result = {
            "label": label,
            "schnet_impl": model.encoder_3d.impl if model.encoder_3d is not None else None,
            "data_source": source,
            "hydrogens": hydrogens,
            "batch_size": cfg.batch_size,
            "threads": torch.get_num_threads(),
            "atoms_per_batch": int(batch.graph_2d.num_nodes()),
            "edges_2d_per_batch": int(batch.graph_2d.num_edges()),
            "edges_3d_per_batch": int(batch.graph_3d.num_edges()) if batch.graph_3d is not None else 0,
            "molecules_per_s": cfg.batch_size / step,
            "step_s": step,
            "step_s_median_round": median["step"],
            "split_s": mean,
            "split_fraction": {p: mean[p] / step for p in PARTS},
            "data_fraction": mean["data"] / step,
            "data_fraction_goal_met": mean["data"] / step < 0.10,
            "flop_counted_gflop": counted / 1e9,
            "flop_counted_gflop_per_stage": {p: f / 1e9 for p, f in stage_flops.items()},
            "fraction_of_matmul_per_stage": {p: f / mean[p] / matmul for p, f in stage_flops.items()},
            "flop_sparse_analytic_gflop": sparse / 1e9,
            "achieved_gflops_counted": counted / compute / 1e9,
            "achieved_gflops_with_sparse": (counted + sparse) / compute / 1e9,
            "fraction_of_matmul_counted": counted / compute / matmul,
            "fraction_of_matmul_with_sparse": (counted + sparse) / compute / matmul,
            "matmul_gflops_reference": matmul / 1e9,
            "cpu_user_s_per_step": best["user"],
            "cpu_system_s_per_step": best["system"],
            "minor_page_faults_per_step": best["faults"],
            "load_average_1min_best_round": best["load"],
            "steps_measured": args.steps,
            "rounds": args.repeats,
            "warmup_steps": args.warmup,
        }
        if model.encoder_3d is not None:
            result["schnet"] = schnet_alone(model, batch, matmul, args)
        results[impl] = result
    return results


def schnet_alone(model: GraphMVPModel, batch, matmul: float, args) -> dict[str, Any]:
    """SchNet forward + backward on one batch, timed (best of several) and counted alone (the '3D step')."""

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        z3d = model.encode_3d(batch)
        t1 = time.perf_counter()
        z3d.square().mean().backward()
        return t1 - t0, time.perf_counter() - t1

    run()
    times = [run() for _ in range(max(3, args.steps))]
    fwd, bwd = min(times, key=sum)
    seconds = fwd + bwd
    counted, sparse = count_flops(run, model)
    model.zero_grad(set_to_none=True)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        z3d = model.encode_3d(batch)
    fwd_flops = float(counter.get_total_flops())
    del z3d
    return {
        "schnet_impl": model.encoder_3d.impl,
        "fwd_bwd_s": seconds,
        "fwd_s": fwd,
        "bwd_s": bwd,
        "edges_3d": int(batch.graph_3d.num_edges()),
        "flop_counted_gflop": counted / 1e9,
        "flop_counted_gflop_fwd": fwd_flops / 1e9,
        "flop_sparse_analytic_gflop": sparse / 1e9,
        "achieved_gflops_counted": counted / seconds / 1e9,
        "fraction_of_matmul_counted": counted / seconds / matmul,
        "fraction_of_matmul_fwd": fwd_flops / fwd / matmul,
        "fraction_of_matmul_bwd": (counted - fwd_flops) / bwd / matmul,
        "fraction_of_matmul_with_sparse": (counted + sparse) / seconds / matmul,
    }


def comparison(results: dict[str | None, dict[str, Any]]) -> dict[str, Any]:
    """The implementations side by side, with speed-ups over ``plain`` when it was measured.

    ``plain_equivalent_fraction_of_matmul``: the plain path's counted FLOPs (the model's FLOPs
    as SchNet defines them) over this implementation's compute time, as a fraction of the matmul
    rate: for implementations that skip work (``tabulated``) this is the figure comparable
    across implementations; it may exceed 1.
    """
    table = {}
    for impl, r in results.items():
        table[impl] = {
            "molecules_per_s": r["molecules_per_s"],
            "step_s": r["step_s"],
            "split_s": r["split_s"],
            "fraction_of_matmul_counted": r["fraction_of_matmul_counted"],
            "fraction_of_matmul_per_stage": r["fraction_of_matmul_per_stage"],
            "flop_counted_gflop": r["flop_counted_gflop"],
            "schnet_fwd_bwd_s": r["schnet"]["fwd_bwd_s"],
            "schnet_fwd_s": r["schnet"]["fwd_s"],
            "schnet_bwd_s": r["schnet"]["bwd_s"],
            "schnet_flop_counted_gflop": r["schnet"]["flop_counted_gflop"],
            "schnet_fraction_of_matmul_counted": r["schnet"]["fraction_of_matmul_counted"],
        }
    if "plain" in results:
        base, plain = table["plain"], results["plain"]
        for impl, row in table.items():
            r = results[impl]
            compute = r["step_s"] - r["split_s"]["data"]
            row["step_speedup_vs_plain"] = base["step_s"] / row["step_s"]
            row["schnet_speedup_vs_plain"] = base["schnet_fwd_bwd_s"] / row["schnet_fwd_bwd_s"]
            row["plain_equivalent_fraction_of_matmul"] = (
                plain["flop_counted_gflop"] * 1e9 / compute / (r["matmul_gflops_reference"] * 1e9))
            row["schnet_plain_equivalent_fraction_of_matmul"] = (
                base["schnet_flop_counted_gflop"] / row["schnet_fwd_bwd_s"] / r["matmul_gflops_reference"])
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--out", default=str(HERE / "out"), help="cache folder for prepared stores")
    p.add_argument("--n-mol", type=int, default=600)
    p.add_argument("--n-conf", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per implementation (best reported)")
    p.add_argument("--schnet-impl", dest="schnet_impls", nargs="+", choices=SCHNET_IMPLS.names(),
                   default=["plain", "fused", "tabulated", "fused-bf16"],
                   help="SchNet implementations to compare in the GraphMVP step")
    p.add_argument("--only", choices=["graphmvp", "attrmask"], help="measure one of the two steps")
    p.add_argument("--no-malloc-tuning", dest="malloc_tuning", action="store_false",
                   help="leave glibc's malloc as is (graphmvp-pretrain tunes it; see tune_malloc)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    tuned = tune_malloc() if args.malloc_tuning else False
    t0 = time.perf_counter()
    store_path, source = benchmark_store(Path(args.shared), Path(args.out), args.n_mol, args.n_conf)
    with ConformerStore(store_path) as s:
        emit("data", store=str(store_path), source=source, molecules=len(s), conformers=int(s.num_conformers().sum()),
             mean_atoms=float(s.num_atoms().mean()), hydrogens=s.hydrogens, prepare_or_open_s=time.perf_counter() - t0)

    matmul = matmul_flops_per_s()
    emit("matmul_fp32_2048", gflops=matmul / 1e9, threads=torch.get_num_threads(), malloc_tuning=tuned,
         load_average_1min=os.getloadavg()[0], cpus=os.cpu_count(),
         omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset"))
    emit("matmul_bf16_2048", gflops=matmul_flops_per_s(dtype=torch.bfloat16) / 1e9, threads=torch.get_num_threads(),
         load_average_1min=os.getloadavg()[0])

    common = dict(store=str(store_path), out=str(Path(args.out) / "unused_run"), batch_size=args.batch_size)
    if args.only in (None, "graphmvp"):
        cfg = resolve_config("graphmvp", **common)
        impls = list(dict.fromkeys(args.schnet_impls))
        results = measure("graphmvp ebm-nce+vrr 2d3d", cfg, store_path, source, args, matmul, impls)
        for r in results.values():
            emit("graphmvp_step", **{k: v for k, v in r.items() if k != "schnet"})
            emit("graphmvp_3d_step_schnet_fwd_bwd", **r["schnet"])
        emit("graphmvp_schnet_impl_comparison", **comparison(results))
        r = results.get(DEFAULT_SCHNET_IMPL, results[impls[-1]])
        emit("graphmvp_vs_upstream", schnet_impl=r["schnet_impl"], ours_molecules_per_s=r["molecules_per_s"],
             upstream_molecules_per_s=UPSTREAM_SAMPLES_PER_S, speedup=r["molecules_per_s"] / UPSTREAM_SAMPLES_PER_S,
             ours_step_s=r["step_s"], upstream_step_s=256 / UPSTREAM_SAMPLES_PER_S)
    if args.only in (None, "attrmask"):
        cfg = resolve_config("attrmask", **common)
        r = measure("attrmask 2d-only", cfg, store_path, source, args, matmul)[None]
        emit("attrmask_step", **r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
