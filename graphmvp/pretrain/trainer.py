"""The pretraining loop: data, model and optimiser, the epochs, checks; the rest lives beside it.

The pretraining core, one concern per module:

* :mod:`graphmvp.pretrain.trainer` (this module): :func:`pretrain`, the run's setup and epoch loop;
* :mod:`graphmvp.pretrain.epoch_plan`: the seeded order of the samples, global batches, rank pieces;
* :mod:`graphmvp.pretrain.sharded_step`: one rank's step on its piece of a global batch (DDP);
* :mod:`graphmvp.pretrain.checkpoint_io`: ``last.pt``, the exported encoders, resume checks;
* :mod:`graphmvp.pretrain.reporting`: ``train.log``, ``metrics.csv``, ``loss_curves.png``;
* :mod:`graphmvp.pretrain.model`, :mod:`graphmvp.pretrain.config`: the model and the typed config.

The demo store (:class:`graphmvp.demo.DemoStore`) and glibc malloc tuning
(:mod:`graphmvp.malloc_tuning`) belong to the process that runs: the command line and the demo.

:func:`pretrain` runs one :class:`~graphmvp.pretrain.config.PretrainConfig` and returns a
:class:`RunResult`. The run folder ``out`` receives (every file written atomically: a temporary
file in the same folder, then ``os.replace``):

``config.yaml``
    the resolved configuration (store path made absolute, loss weights filled in).
``train.log``
    the run's log (appended by a resumed run): inputs, one line per ``log_every`` steps, one
    line per epoch, errors.
``metrics.csv``
    one row per epoch: ``epoch, steps, samples``, ``loss_<objective>`` for each term (unweighted,
    mean over the epoch's samples), ``loss_total`` (weighted sum), the accuracies the objectives
    report (``acc_2d_3d`` / ``acc_3d_2d`` for the contrastive term, ``acc_attrmask``,
    ``acc_contextpred``, ...), ``samples_per_s``, ``seconds`` (wall time of the epoch) and
    ``data_seconds`` (the part spent waiting for batches).
``model_2d.pt``
    the 2D encoder after the latest epoch: ``{"format": "graphmvp-encoder-v1", "state_dict": GIN
    state dict, "config": {encoder, num_layers, emb_dim, dropout, jk, num_atom_type,
    num_chirality, pooling, hydrogens, features: "hu-simple"}, "epoch", "loss"}``; tensors and
    plain python values only, so ``torch.load(path, weights_only=True)`` reads it.
``best_model_2d.pt``
    the same for the epoch with the lowest training loss (upstream's model selection: it saves
    whenever the epoch loss improves, no validation set).
``last.pt``
    the complete state after the latest epoch: both encoders and all objective heads, optimiser,
    epochs done, global step, best loss/epoch, torch/numpy/python RNG states, metrics so far
    (also ``weights_only``-loadable).
``loss_curves.png``
    loss terms and total per epoch (and accuracies), written at the end.

Reproducibility and resume
    All randomness is seeded from ``seed``: model initialisation (global torch RNG, seeded at
    start), the per-sample choices of the dataset (``(seed, epoch, idx)``), the order of samples
    in an epoch (a ``torch.Generator`` seeded from ``(seed, epoch)``) and VRR's noise (global
    torch RNG, saved in ``last.pt`` after every epoch and restored on ``resume``). A run resumed
    from ``last.pt`` therefore ends with the same weights as an uninterrupted one (bit for bit
    with ``deterministic`` on CPU and the same thread count). A trailing batch of a single sample
    is dropped (batch norm needs two). ``max_steps`` ends the run inside an epoch; that epoch is
    recorded as done, so a run cut by ``max_steps`` does not resume bit-exactly.

Errors
    A non-finite loss stops the run with :class:`NonFiniteLossError`: epoch, step, the loss terms,
    the batch's molecules (store indices and SMILES) and the last good checkpoint.

Distributed (``torchrun``; ``docs/distributed.md``)
    Under a launcher with ``WORLD_SIZE > 1`` every rank runs :func:`pretrain`; the epoch plan
    (:func:`~graphmvp.pretrain.epoch_plan.epoch_batches`: global batches of ``batch_size``) is the
    same on every rank and rank ``r`` loads only the ``r``-th contiguous piece of each global
    batch. The step (:class:`~graphmvp.pretrain.sharded_step.ShardedStep`) encodes the local piece, gathers the pooled representations of the
    global batch (differentiable), computes the contrastive and generative terms on the global
    batch on every rank (the same in-batch negatives and VRR noise as one process), weights the
    local 2D-task term by the rank's share of its items (``Task2D.item_count``) and
    synchronises the GIN's batch norm, so that the averaged gradient is the single-process
    gradient of the global batch. Metrics are those of the global batch. Rank 0 alone writes the
    run folder and logs; ``--resume`` loads rank 0's ``last.pt`` on rank 0 and broadcasts it.
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from graphmvp.data.collate import PretrainBatch, collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.distributed import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistOptionError,
    DistributedError,
    all_gather_rows,
    communication,
    convert_sync_batchnorm,
    distributed_context,
    raise_if_communication_error,
)
from graphmvp.io import write_bytes_atomic
from graphmvp.malloc_tuning import MALLOC_TRIM_THRESHOLD, applied_mmap_threshold, malloc_tuned
from graphmvp.pretrain.checkpoint_io import load_state, save_encoder, save_state, set_rng_state
from graphmvp.pretrain.config import ConfigError, PretrainConfig, check_inputs
from graphmvp.pretrain.epoch_plan import EpochPlan, RankPieces, epoch_batches, epoch_seed
from graphmvp.pretrain.model import GraphMVPModel, dataset_options
from graphmvp.pretrain.reporting import (
    LOG,
    format_number,
    loss_column,
    plot_losses,
    rank_logging,
    run_logging,
    write_metrics,
)
from graphmvp.pretrain.sharded_step import PAIR_KINDS, ShardedStep, StepValues, global_task, local_term_count
from graphmvp.pretrain.tasks import TASKS_2D

RUN_FILES = ("config.yaml", "train.log", "metrics.csv", "model_2d.pt", "best_model_2d.pt", "last.pt", "loss_curves.png")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message is one line naming where and what."""


@dataclass
class RunResult:
    """What :func:`pretrain` produced.

    ``metrics``: the rows of ``metrics.csv`` (all epochs, including those of earlier runs of a
    resumed run). ``best_epoch`` / ``best_loss``: the epoch (1-based) of ``best_model_2d.pt``.
    ``stopped_at_max_steps``: the run ended early because of ``max_steps``.
    """

    out_dir: Path
    config: PretrainConfig
    metrics: list[dict[str, Any]]
    epochs_done: int
    global_step: int
    best_epoch: Optional[int]
    best_loss: float
    stopped_at_max_steps: bool
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def model_2d(self) -> Path:
        return self.out_dir / "model_2d.pt"

    @property
    def best_model_2d(self) -> Path:
        return self.out_dir / "best_model_2d.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"


class StoreProvider(Protocol):
    """Supplies the store of a run whose config names none (``graphmvp-pretrain`` without
    ``--store`` passes :class:`graphmvp.demo.DemoStore`). ``path(out)``: where the store is, for
    the run folder ``out`` (every rank asks); ``prepare(path)``: make it ready and return one line
    for the log (rank 0 only; the other ranks wait and then read it). Raises ConfigError on failure."""

    def path(self, out: Path) -> Path: ...

    def prepare(self, path: Path) -> str: ...


@contextmanager
def _torch_settings(threads: Optional[int], deterministic: bool) -> Iterator[None]:
    """Apply the thread count and deterministic mode for the run; restore them afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        if deterministic:
            torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


# -- the run ---------------------------------------------------------------------------------------
def _resolve_paths(cfg: PretrainConfig, store_provider: Optional[StoreProvider]) -> PretrainConfig:
    """``out`` and an explicit ``store`` made absolute; ``store`` None -> the provider's path."""
    out = Path(cfg.out).expanduser().resolve()
    store = Path(cfg.store).expanduser().resolve() if cfg.store is not None else store_provider.path(out)
    c = PretrainConfig.from_dict({**cfg.to_dict(), "out": str(out), "store": str(store)})
    return c


def pretrain(config: PretrainConfig, *, dist_timeout: float = DEFAULT_TIMEOUT_S,
             store_provider: Optional[StoreProvider] = None) -> RunResult:
    """Run (or resume) one pretraining run; see the module docstring for what it writes.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this is one rank of a DDP run: the process group is
    started here (``gloo`` on CPU, ``nccl`` on CUDA; collectives fail after ``dist_timeout``
    seconds) unless the caller started one. Raises :class:`~graphmvp.pretrain.config.ConfigError`
    for invalid options (before any work; under DDP every rank raises the first rank's error),
    :class:`NonFiniteLossError` when the loss becomes NaN or infinite and
    :class:`~graphmvp.distributed.DistributedError` when another rank died or hung.

    A config without ``store`` needs ``store_provider`` (:class:`StoreProvider`; e.g.
    ``graphmvp.demo.DemoStore()``, what ``graphmvp-pretrain`` uses without ``--store``).
    Process-wide settings are the caller's: glibc malloc tuning
    (:func:`graphmvp.malloc_tuning.tune_malloc`) is applied by the command line, not here.
    """
    if config.store is None and store_provider is None:
        raise ConfigError("no store given: pass a conformer store (graphmvp-prep) as store=..., or "
                          "store_provider=graphmvp.demo.DemoStore() for the bundled demo molecules")
    cfg = config.resolved()
    try:
        with distributed_context(cfg.device, dist_timeout) as ctx:
            return _pretrain(cfg, ctx, store_provider)
    except DistOptionError as e:
        raise ConfigError(str(e)) from None


def _agree_on_error(ctx: DistContext, error: Optional[str]) -> None:
    """Raise ConfigError on every rank if any rank has ``error`` (the first rank's message)."""
    message = ctx.first_error(error)
    if message is not None:
        raise ConfigError(message)


def _pretrain(cfg: PretrainConfig, ctx: DistContext, store_provider: Optional[StoreProvider]) -> RunResult:
    provider = None if cfg.store is not None else store_provider
    # rank 0 checks the run folder; every rank checks the store it will read
    error = None
    try:
        check_inputs(cfg if ctx.is_main else replace(cfg, resume=False, overwrite=True))
        if ctx.is_distributed and cfg.batch_size < ctx.world_size:
            raise ConfigError(f"--batch-size={cfg.batch_size} is the global batch; with {ctx.world_size} ranks it "
                              f"must be >= {ctx.world_size} (each rank needs a sample)")
    except ConfigError as e:
        error = str(e)
    _agree_on_error(ctx, error)
    cfg = _resolve_paths(cfg, provider)
    out = Path(cfg.out)
    last = out / "last.pt"
    state = None
    error = None
    if cfg.resume and ctx.is_main:
        try:
            state = load_state(cfg, last)
        except ConfigError as e:
            error, state = str(e), None
    _agree_on_error(ctx, error)
    if cfg.resume and ctx.is_distributed:
        with communication("sending rank 0's last.pt to every rank", ctx):
            state = ctx.broadcast_object(state)

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
    ctx.barrier()
    logs = run_logging(out / "train.log", cfg.progress) if ctx.is_main else rank_logging(ctx)
    with logs, _torch_settings(cfg.threads, cfg.deterministic):
        try:
            if malloc_tuned():
                LOG.info("malloc tuning (glibc: mmap threshold %d MiB, heap trimmed above %d MiB free): applied",
                         applied_mmap_threshold() >> 20, MALLOC_TRIM_THRESHOLD >> 20)
            elif cfg.malloc_tuning:
                LOG.info("malloc tuning: not applied in this process (graphmvp-pretrain applies it on glibc; from "
                         "python call graphmvp.malloc_tuning.tune_malloc() first)")
            try:
                return _Run(cfg, provider, state, ctx).run()
            except Exception as e:
                raise_if_communication_error(e, ctx, "training")
                raise
        except (NonFiniteLossError, DistributedError) as e:
            LOG.error("%s", e)
            raise
        except KeyboardInterrupt:
            LOG.error("interrupted; last completed epoch in %s", last if last.is_file() else "(none)")
            raise


class _Run:
    """The state of one run (used by :func:`pretrain`)."""

    def __init__(self, cfg: PretrainConfig, provider: Optional[StoreProvider], state: Optional[dict[str, Any]],
                 ctx: DistContext):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.provider = provider
        self.state = state
        self.ctx = ctx
        self.device = ctx.device
        self.metrics: list[dict[str, Any]] = []
        self.epochs_done = 0
        self.global_step = 0
        self.best_loss = math.inf
        self.best_epoch: Optional[int] = None
        self.stopped = False

    # -- setup ----------------------------------------------------------------------------------
    def _open_data(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        path = Path(cfg.store)
        if self.provider is None:
            LOG.info("store %s", path)
        else:
            error = None
            if ctx.is_main:  # one rank prepares the store; the others wait, then read it
                try:
                    LOG.info("%s", self.provider.prepare(path))
                except ConfigError as e:
                    error = str(e)
            _agree_on_error(ctx, error)
            if not path.is_file():
                raise ConfigError(f"rank {ctx.rank}: the store {path} prepared by rank 0 is not visible on this "
                                  "machine; pass --store with a store present on every machine")
        with ConformerStore(path) as store:
            self.hydrogens = store.hydrogens
            LOG.info(
                "store: %d molecules, %d conformers, hydrogens %s", len(store), int(store.num_conformers().sum()), self.hydrogens
            )
            try:
                self.dataset = PretrainDataset(
                    store,
                    views=cfg.views,
                    conformer_sampling=cfg.conformer_sampling,
                    mask_ratio=cfg.mask_ratio,
                    seed=cfg.seed,
                    cutoff=cfg.cutoff,
                    max_neighbors=cfg.max_neighbors,
                    **dataset_options(cfg),
                )
            except ValueError as e:  # e.g. a molecule without conformers for views 2d3d
                raise ConfigError(f"--store {path}: {str(e).splitlines()[0]}") from None
        if len(self.dataset) < 2:
            raise ConfigError(f"--store {path}: {len(self.dataset)} sample(s); pretraining needs at least 2")
        n_batches = len(self._plan(0))
        LOG.info("dataset: %d samples (%s, conformer sampling %s, mask ratio %g), %d batches of <= %d per epoch",
                 len(self.dataset), cfg.views, cfg.conformer_sampling, cfg.mask_ratio, n_batches, cfg.batch_size)
        if ctx.is_distributed:
            LOG.info("distributed: %d ranks (%s); each global batch of %d is cut into %d contiguous pieces, rank r "
                     "loads piece r; --lr applies to the global batch", ctx.world_size, ctx.backend, cfg.batch_size,
                     ctx.world_size)

    def _plan(self, epoch: int) -> EpochPlan:
        """The global batches of ``epoch`` (the same on every rank)."""
        return epoch_batches(len(self.dataset), self.cfg.batch_size, self.cfg.seed, epoch,
                             min_batch=max(2, self.ctx.world_size))

    def _build(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.model = GraphMVPModel(cfg).to(self.device)
        self.sharded: Optional[nn.Module] = None
        if ctx.is_distributed:
            # modules that see only this rank's samples normalise with the global batch's statistics;
            # the pair objectives see the gathered global batch and keep plain batch norm
            self.model.encoder_2d = convert_sync_batchnorm(self.model.encoder_2d)
            if self.model.encoder_3d is not None:
                self.model.encoder_3d = convert_sync_batchnorm(self.model.encoder_3d)
            for kind in list(self.model.objectives):
                name = self.model.names[kind]
                if kind not in PAIR_KINDS and not global_task(name):
                    self.model.objectives[kind] = convert_sync_batchnorm(self.model.objectives[kind])
                    if TASKS_2D.get(name).in_batch:
                        LOG.warning("2D task %s compares the samples of a batch with each other: under DDP it "
                                    "compares within each rank's piece of the global batch", name)
            # a 2D task may leave its parameters out of a step (ContextPred without a context pair
            # in the whole batch): DDP must then look for unused parameters; the pair objectives
            # and the encoders use every parameter in every step
            has_task = any(kind not in PAIR_KINDS for kind in self.model.names)
            self.sharded = ctx.wrap(ShardedStep(self.model, ctx, cfg.seed), find_unused_parameters=has_task)
        groups = self.model.parameter_groups(cfg.lr, cfg.schnet_lr_scale, cfg.to2d_lr_scale)
        self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        for g in groups:
            LOG.info("param group %-7s %9d parameters, lr %g", g["name"], sum(p.numel() for p in g["params"]), g["lr"])
        terms = " + ".join(f"{self.model.weights[k]:g}*{n}" for k, n in self.model.names.items())
        LOG.info("loss = %s", terms)

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs_done = int(state["epochs_done"])
        self.global_step = int(state["global_step"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = state["best_epoch"]
        self.metrics = [dict(row) for row in state["metrics"]]
        set_rng_state(state["rng"], self.device)
        LOG.info("resumed from %s: %d epoch(s) done, global step %d", self.out / "last.pt", self.epochs_done, self.global_step)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, ctx = self.cfg, self.ctx
        t_start = time.perf_counter()
        argv = " ".join(sys.argv) if sys.argv else ""
        LOG.info("graphmvp-pretrain %s run in %s (%s) on %s", "resuming" if cfg.resume else "starting", self.out, argv,
                 ctx.describe() if not ctx.is_distributed else f"{ctx.world_size} ranks ({ctx.backend}, {ctx.device.type})")
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._open_data()
        self._build()
        if ctx.is_main:
            write_bytes_atomic(self.out / "config.yaml", cfg.to_yaml().encode(), fsync=True)
        if self.state is not None:
            self._restore(self.state)
            self.state = None
        if self.epochs_done >= cfg.epochs:
            LOG.info("nothing to do: %d of %d epochs already done", self.epochs_done, cfg.epochs)
        for epoch in range(self.epochs_done, cfg.epochs):
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                self.stopped = True
                break
            self._epoch(epoch)
            if self.stopped:
                break
        if ctx.is_main:
            plot_losses(self.out / "loss_curves.png", self.metrics)
        ctx.barrier()
        seconds = time.perf_counter() - t_start
        LOG.info("done: %d epoch(s), %d steps, best epoch %s (loss %s), %.1f s; 2D encoder: %s",
                 self.epochs_done, self.global_step, self.best_epoch, format_number(self.best_loss), seconds,
                 self.out / "model_2d.pt")
        return RunResult(
            out_dir=self.out,
            config=cfg,
            metrics=list(self.metrics),
            epochs_done=self.epochs_done,
            global_step=self.global_step,
            best_epoch=self.best_epoch,
            best_loss=self.best_loss,
            stopped_at_max_steps=self.stopped,
            seconds=seconds,
            files={name: self.out / name for name in RUN_FILES if (self.out / name).exists()},
        )

    def _step(self, batch: PretrainBatch, pieces: RankPieces, step: int, epoch: int) -> Optional[StepValues]:
        """Forward pass of one global batch; None when it gives no loss term at all."""
        if self.sharded is None:  # one process: the model's own forward
            out = self.model(batch)
            if out.total is None:
                return None
            terms = {n: float(t.detach()) for n, t in out.terms.items()}
            return StepValues(out.total, float(out.total.detach()), terms, dict(out.metrics), batch.batch_size)
        ctx = self.ctx
        sizes = pieces.sizes(step)
        names = [n for k, n in self.model.names.items() if k not in PAIR_KINDS]
        counts: dict[str, tuple[int, int]] = {}
        if names:  # every rank's item count of each 2D term (needed before the loss is formed)
            table = ctx.gather([local_term_count(n)(batch) for n in names])
            for j, name in enumerate(names):
                per_rank = table[:, j].astype(np.int64)
                total = int(per_rank.sum())
                empty = np.flatnonzero(per_rank == 0)
                if total > 0 and empty.size:
                    raise DistributedError(
                        f"epoch {epoch + 1} step {step + 1}: rank {int(empty[0])}'s piece of the global batch has no "
                        f"{name} item while other pieces do; under DDP every rank needs one (use a larger --batch-size "
                        "or fewer ranks)"
                    )
                counts[name] = (int(per_rank[ctx.rank]), total)
            if not any(k in PAIR_KINDS for k in self.model.names) and all(t == 0 for _, t in counts.values()):
                return None
        loss, report = self.sharded(batch, sizes, counts, self.global_step)
        return StepValues(loss, report["total"], report["terms"], report["metrics"], sum(sizes))

    def _epoch(self, epoch: int) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.dataset.set_epoch(epoch)
        begin_epoch = getattr(self.model, "begin_epoch", None)
        if callable(begin_epoch):  # the 2D task's hook (e.g. hand restored state to the transforms)
            begin_epoch(self.dataset, epoch)
        plan = self._plan(epoch)
        pieces = plan.shard(ctx.rank, ctx.world_size)
        loader = DataLoader(
            self.dataset,
            batch_sampler=pieces if ctx.is_distributed else plan,
            collate_fn=collate,
            num_workers=cfg.num_workers,
            generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch) ^ 1),
        )
        self.model.train()
        sums: dict[str, float] = {}
        metric_sums: dict[str, float] = {}
        metric_counts: dict[str, int] = {}
        n_samples = steps = skipped = 0
        data_seconds = 0.0
        t0 = time.perf_counter()
        bar = tqdm(total=len(plan), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (cfg.progress and ctx.is_main), dynamic_ncols=True, leave=False, file=sys.stderr)
        iterator = iter(loader)
        try:
            for step in range(len(plan)):
                t_wait = time.perf_counter()
                batch = next(iterator)
                data_seconds += time.perf_counter() - t_wait
                if self.device.type != "cpu":
                    batch = batch.to(self.device)
                out = self._step(batch, pieces, step, epoch)
                if out is None:
                    skipped += 1
                    bar.update(1)
                    continue
                self._check_finite(out, batch, pieces, epoch, step)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                self.optimizer.step()
                self.global_step += 1
                steps += 1
                size = out.samples
                n_samples += size
                values = {loss_column(n): v for n, v in out.terms.items()}
                values["loss_total"] = out.total
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value * size
                for key, value in out.metrics.items():
                    if key.startswith("acc_"):
                        metric_sums[key] = metric_sums.get(key, 0.0) + float(value) * size
                        metric_counts[key] = metric_counts.get(key, 0) + size
                rate = n_samples / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix({**{k[5:]: f"{v:.3f}" for k, v in values.items()}, "mol/s": f"{rate:.1f}"}, refresh=False)
                bar.update(1)
                if self.global_step % cfg.log_every == 0:
                    parts = " ".join(f"{k[5:]}={format_number(v)}" for k, v in values.items())
                    LOG.info("epoch %d step %d/%d (global %d): %s | %.1f mol/s", epoch + 1, step + 1, len(plan),
                             self.global_step, parts, rate, extra={"step_line": True})
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    self.stopped = True
                    break
        finally:
            bar.close()
            del iterator
        end_epoch = getattr(self.model, "end_epoch", None)
        if callable(end_epoch):  # e.g. JOAO's augmentation weights; every rank calls it
            end_epoch(self.dataset, epoch)
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "steps": steps, "samples": n_samples}
        for name in self.model.names.values():
            key = loss_column(name)
            row[key] = sums[key] / n_samples if key in sums and n_samples else float("nan")
        row["loss_total"] = sums["loss_total"] / n_samples if n_samples else float("nan")
        for key in sorted(metric_sums):
            row[key] = metric_sums[key] / metric_counts[key]
        row["samples_per_s"] = n_samples / seconds if seconds > 0 else float("nan")
        row["seconds"] = seconds
        row["data_seconds"] = data_seconds
        self.metrics.append(row)
        self.epochs_done = epoch + 1
        if skipped:
            LOG.warning("epoch %d: %d batch(es) gave no loss term (no ContextPred pair) and were skipped", epoch + 1, skipped)
        improved = math.isfinite(row["loss_total"]) and row["loss_total"] < self.best_loss
        if improved:
            self.best_loss = row["loss_total"]
            self.best_epoch = epoch + 1
        if ctx.is_main:
            self._save(epoch + 1, row["loss_total"], improved)
        ctx.barrier()  # the checkpoint of this epoch is complete before any rank goes on
        accs = " ".join(f"{k}={row[k]:.3f}" for k in row if k.startswith("acc_"))
        losses = " ".join(f"{k[5:]}={format_number(row[k])}" for k in row if k.startswith("loss_"))
        LOG.info("epoch %d/%d: %s %s | %d steps, %.1f samples/s, %.1f s (data %.1f s)%s%s", epoch + 1, cfg.epochs, losses,
                 accs, steps, row["samples_per_s"], seconds, data_seconds, " | new best" if improved else "",
                 " | stopped at --max-steps" if self.stopped else "")

    # -- checks and outputs ---------------------------------------------------------------------
    def _smiles(self, mol_index: int) -> str:
        store = self.dataset.store
        if callable(getattr(store, "smiles", None)):
            return store.smiles(mol_index)
        return store[mol_index].smiles

    def _check_finite(self, out: StepValues, batch: PretrainBatch, pieces: RankPieces, epoch: int, step: int) -> None:
        """Stop on a non-finite loss of the global batch (every rank sees the same value)."""
        if math.isfinite(out.total):
            return
        terms = ", ".join(f"{n}={v}" for n, v in out.terms.items())
        if self.ctx.is_distributed:  # the molecules of the whole global batch, in batch order
            with torch.no_grad():
                ids = all_gather_rows(batch.mol_index.view(-1, 1).to(self.device), pieces.sizes(step)).view(-1).tolist()
        else:
            ids = batch.mol_index.tolist()
        described = [f"{i}:{self._smiles(i)}" for i in ids]
        shown = " ".join(described[:8]) + (f" ... (+{len(described) - 8} more, see train.log)" if len(described) > 8 else "")
        last = self.out / "last.pt"
        checkpoint = str(last) if last.is_file() else "none (no epoch finished yet)"
        LOG.error("non-finite loss: all molecules of the batch (store index:SMILES): %s", " ".join(described))
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1} step {step + 1} (global step {self.global_step + 1}): {terms}; "
            f"batch molecules (store index:SMILES) {shown}; last good checkpoint: {checkpoint}"
        )
    def _save(self, epoch: int, loss: float, improved: bool) -> None:
        save_encoder(self.model.export_encoder_2d(self.hydrogens, epoch=epoch, loss=float(loss)), self.out, improved)
        write_metrics(self.out / "metrics.csv", self.metrics)
        save_state(self.out, cfg=self.cfg, hydrogens=self.hydrogens, model=self.model, optimizer=self.optimizer,
                   epochs_done=self.epochs_done, global_step=self.global_step, best_loss=self.best_loss,
                   best_epoch=self.best_epoch, stopped=self.stopped, metrics=self.metrics, device=self.device,
                   world_size=self.ctx.world_size)



__all__ = [
    "EpochPlan",
    "NonFiniteLossError",
    "RUN_FILES",
    "RankPieces",
    "RunResult",
    "StoreProvider",
    "epoch_batches",
    "epoch_seed",
    "pretrain",
]
