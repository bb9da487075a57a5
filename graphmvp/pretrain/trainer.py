"""The pretraining loop: data, optimiser, checkpoints, resume, metrics, plot.

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
    (:func:`epoch_batches`: global batches of ``batch_size``) is the same on every rank and rank
    ``r`` loads only the ``r``-th contiguous piece of each global batch. The step
    (:class:`ShardedStep`) encodes the local piece, gathers the pooled representations of the
    global batch (differentiable), computes the contrastive and generative terms on the global
    batch on every rank (the same in-batch negatives and VRR noise as one process), weights the
    local 2D-task term by the rank's share of its items (``Task2D.item_count``) and
    synchronises the GIN's batch norm, so that the averaged gradient is the single-process
    gradient of the global batch. Metrics are those of the global batch. Rank 0 alone writes the
    run folder and logs; ``--resume`` loads rank 0's ``last.pt`` on rank 0 and broadcasts it.
"""

from __future__ import annotations

import csv
import ctypes
import io
import logging
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from graphmvp.data.collate import PretrainBatch, collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.demo import demo_smiles_path
from graphmvp.distributed import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistOptionError,
    DistributedError,
    all_gather_rows,
    communication,
    global_batch,
    convert_sync_batchnorm,
    distributed_context,
    raise_if_communication_error,
    rank_local_rng,
    shard_bounds,
    shard_sizes,
)
from graphmvp.io import atomic_path, write_bytes_atomic
from graphmvp.pretrain.config import ConfigError, PretrainConfig, check_inputs
from graphmvp.pretrain.model import KIND_CALLERS, GraphMVPModel, dataset_options
from graphmvp.pretrain.tasks import TASKS_2D

LOG = logging.getLogger("graphmvp.pretrain")

STATE_FORMAT = "graphmvp-pretrain-state-v1"
#: config fields that do not change the weights but may differ on ``--resume`` beyond
#: :data:`~graphmvp.pretrain.config.VOLATILE_FIELDS` (a run may move between devices)
RESUME_MAY_CHANGE = ("device",)
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


# -- small helpers ---------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the sample order of ``epoch`` (independent streams per (seed, epoch))."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0]) & ((1 << 63) - 1)


class EpochPlan(Sequence):
    """The global batches of one epoch: ``order`` int64 [n] cut into consecutive batches of
    ``batch_size`` (the last one may be shorter). ``plan[i]`` is batch ``i``, an int64 array (a
    view of ``order``): one array per epoch, not one python int per sample.

    ``shard(rank, world_size)``: the sequence of rank ``rank``'s pieces of every batch (see
    :func:`graphmvp.distributed.shard_bounds`), what that rank's DataLoader loads.
    """

    def __init__(self, order: np.ndarray, batch_size: int):
        self.order = np.asarray(order, dtype=np.int64)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"batch {i} out of range for an epoch of {n} batches")
        return self.order[i * self.batch_size : (i + 1) * self.batch_size]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpochPlan):
            return NotImplemented
        return self.batch_size == other.batch_size and np.array_equal(self.order, other.order)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EpochPlan({len(self.order)} samples, {len(self)} batches of <= {self.batch_size})"

    def shard(self, rank: int, world_size: int) -> "RankPieces":
        return RankPieces(self, rank, world_size)


class RankPieces(Sequence):
    """Rank ``rank``'s contiguous piece of every batch of an :class:`EpochPlan` (its
    DataLoader's batch sampler). ``sizes(i)``: the piece sizes of batch ``i`` on every rank."""

    def __init__(self, plan: EpochPlan, rank: int, world_size: int):
        self.plan, self.rank, self.world_size = plan, int(rank), int(world_size)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> np.ndarray:
        batch = self.plan[i]
        start, stop = shard_bounds(len(batch), self.rank, self.world_size)
        return batch[start:stop]

    def sizes(self, i: int) -> list[int]:
        return shard_sizes(len(self.plan[i]), self.world_size)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, min_batch: int = 2) -> EpochPlan:
    """The :class:`EpochPlan` of ``epoch``: a seeded permutation of the samples cut into global
    batches of ``batch_size``; a last batch of fewer than ``min_batch`` samples is dropped (batch
    norm needs 2; under DDP every rank needs one, so the trainer passes ``max(2, world_size)``)."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(num_samples, generator=generator).numpy()
    tail = num_samples % batch_size
    if 0 < tail < min_batch:
        order = order[: num_samples - tail]
    return EpochPlan(order, batch_size)


def demo_store_path(out: Path) -> Path:
    """Where the bundled demo store goes when no ``store`` is given: next to the run folder."""
    return out.parent / "demo_conformers.h5"


def ensure_demo_store(path: Path) -> tuple[Path, bool]:
    """The demo store at ``path``, prepared from the bundled SMILES unless already there.

    Returns ``(path, prepared_now)``. Conformers: geom_prep's defaults for SMILES input (RDKit
    ETKDG + MMFF, 5 per molecule, explicit hydrogens kept as upstream).
    """
    if path.is_file():
        try:
            with ConformerStore(path) as store:
                if len(store) > 0 and store.has_positions:
                    return path, False
        except (OSError, ValueError):
            pass
    from graphmvp.prep.config import PrepConfig, PrepError
    from graphmvp.prep.pipeline import prepare

    LOG.info("preparing the demo store %s from %s (once; RDKit conformers, about a minute)", path, demo_smiles_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        prepare(
            PrepConfig(input=str(demo_smiles_path()), output=str(path), workers=max(1, min(2, os.cpu_count() or 1)), overwrite=True),
            command=["graphmvp-pretrain (demo store)"],
        )
    except PrepError as e:
        raise ConfigError(f"could not prepare the demo store {path}: {e}") from None
    return path, True


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: blocks from this size up are mapped per allocation and unmapped on free (glibc's default
#: threshold adapts up to 32 MiB); smaller ones are reused from the heap
MALLOC_MMAP_THRESHOLD = 64 * 2**20
#: free memory at the top of a heap beyond this is returned to the system, down to MALLOC_TOP_PAD
MALLOC_TRIM_THRESHOLD = 256 * 2**20
#: free memory a heap keeps at its top after trimming (and grows by beyond a request)
MALLOC_TOP_PAD = 64 * 2**20


def tune_malloc() -> bool:
    """Reuse freed memory within bounds (glibc only); True if applied.

    A training step allocates and frees the same tensors every time. glibc serves blocks above
    its mmap threshold (adaptive, at most 32 MiB) with fresh ``mmap`` calls and returns them on
    ``free``, and trims its heap whenever 128 KiB are free at the top, so every step page-faults
    its whole working set again: for schnetpack's SchNet at batch 256 that was ~2.6 M minor faults
    and ~40% of the CPU time of its forward + backward. Here:

    * blocks below :data:`MALLOC_MMAP_THRESHOLD` (64 MiB) come from the heap and are reused: the
      default SchNet path computes its per-edge work in chunks of 16 MiB buffers
      (``--schnet-edge-chunk``), so its whole step is served from the heap;
    * larger blocks (the whole-[E, F] tensors of the plain and fused paths: 130 MB at batch 256)
      are mapped per use and given back on free: they never stay in, nor fragment, the heap;
    * a heap keeps at most :data:`MALLOC_TRIM_THRESHOLD` (256 MiB) free at its top, trimmed
      back to :data:`MALLOC_TOP_PAD` (64 MiB).

    Before, the mmap threshold was 1 GiB and heaps were never trimmed: every freed per-edge buffer
    stayed in the process (peak RSS 14 GB for ``--schnet-impl plain``, 4.5 GB for the default at
    batch 256; figures in docs/benchmarks.md). Process-wide and not undone; other platforms are
    left alone.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all([bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)),
                bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)),
                bool(mallopt(_M_TOP_PAD, MALLOC_TOP_PAD))])


def _slug(name: str) -> str:
    return name.replace("-", "_")


def _rng_state(device: torch.device) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if device.type == "cuda":  # VRR's noise is drawn on the device
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


class _DropStepLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "step_line", False)


@contextmanager
def _run_logging(log_path: Path, progress: bool) -> Iterator[None]:
    """Log to ``train.log`` (everything) and stdout (step lines only without a progress bar)."""
    file_handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    if progress:
        console.addFilter(_DropStepLines())
    old_level, old_propagate = LOG.level, LOG.propagate
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    LOG.addHandler(file_handler)
    LOG.addHandler(console)
    try:
        yield
    finally:
        LOG.removeHandler(file_handler)
        LOG.removeHandler(console)
        file_handler.close()
        LOG.setLevel(old_level)
        LOG.propagate = old_propagate


@contextmanager
def _rank_logging(ctx: DistContext) -> Iterator[None]:
    """Ranks other than 0 write no file: their errors go to stderr, prefixed with the rank."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    console.setFormatter(logging.Formatter(f"[rank {ctx.rank}/{ctx.world_size}] %(message)s"))
    old_level, old_propagate = LOG.level, LOG.propagate
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    LOG.addHandler(console)
    try:
        yield
    finally:
        LOG.removeHandler(console)
        LOG.setLevel(old_level)
        LOG.propagate = old_propagate


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


def _format_number(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


# -- the run ---------------------------------------------------------------------------------------
def _resolve_paths(cfg: PretrainConfig) -> PretrainConfig:
    """``out`` and an explicit ``store`` made absolute; ``store`` None -> the demo store path."""
    out = Path(cfg.out).expanduser().resolve()
    store = Path(cfg.store).expanduser().resolve() if cfg.store is not None else demo_store_path(out)
    c = PretrainConfig.from_dict({**cfg.to_dict(), "out": str(out), "store": str(store)})
    return c


def _check_resumable(cfg: PretrainConfig, state: dict[str, Any], last: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"--resume: {last} is not a graphmvp pretraining state ({STATE_FORMAT})")
    saved = PretrainConfig.from_dict(state["config"]).result_defining()
    now = cfg.result_defining()
    for key in RESUME_MAY_CHANGE:
        saved.pop(key, None)
        now.pop(key, None)
    diff = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in now if saved.get(k) != now.get(k)]
    if diff:
        raise ConfigError(f"--resume: options differ from the run in {last.parent}: " + "; ".join(diff))


def pretrain(config: PretrainConfig, *, dist_timeout: float = DEFAULT_TIMEOUT_S) -> RunResult:
    """Run (or resume) one pretraining run; see the module docstring for what it writes.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this is one rank of a DDP run: the process group is
    started here (``gloo`` on CPU, ``nccl`` on CUDA; collectives fail after ``dist_timeout``
    seconds) unless the caller started one. Raises :class:`~graphmvp.pretrain.config.ConfigError`
    for invalid options (before any work; under DDP every rank raises the first rank's error),
    :class:`NonFiniteLossError` when the loss becomes NaN or infinite and
    :class:`~graphmvp.distributed.DistributedError` when another rank died or hung.
    """
    cfg = config.resolved()
    try:
        with distributed_context(cfg.device, dist_timeout) as ctx:
            return _pretrain(cfg, ctx)
    except DistOptionError as e:
        raise ConfigError(str(e)) from None


def _agree_on_error(ctx: DistContext, error: Optional[str]) -> None:
    """Raise ConfigError on every rank if any rank has ``error`` (the first rank's message)."""
    message = ctx.first_error(error)
    if message is not None:
        raise ConfigError(message)


def _pretrain(cfg: PretrainConfig, ctx: DistContext) -> RunResult:
    explicit_store = cfg.store is not None
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
    cfg = _resolve_paths(cfg)
    out = Path(cfg.out)
    last = out / "last.pt"
    state = None
    error = None
    if cfg.resume and ctx.is_main:
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
            _check_resumable(cfg, state, last)
        except ConfigError as e:
            error, state = str(e), None
        except Exception as e:  # a truncated or foreign file
            error = f"--resume: cannot read {last} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    _agree_on_error(ctx, error)
    if cfg.resume and ctx.is_distributed:
        with communication("sending rank 0's last.pt to every rank", ctx):
            state = ctx.broadcast_object(state)

    malloc_tuned = tune_malloc() if cfg.malloc_tuning else False
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
    ctx.barrier()
    logs = _run_logging(out / "train.log", cfg.progress) if ctx.is_main else _rank_logging(ctx)
    with logs, _torch_settings(cfg.threads, cfg.deterministic):
        try:
            if cfg.malloc_tuning:
                LOG.info("malloc tuning (glibc: mmap threshold %d MiB, heap trimmed above %d MiB free): %s",
                         MALLOC_MMAP_THRESHOLD >> 20, MALLOC_TRIM_THRESHOLD >> 20,
                         "applied" if malloc_tuned else "not available on this platform")
            try:
                return _Run(cfg, explicit_store, state, ctx).run()
            except Exception as e:
                raise_if_communication_error(e, ctx, "training")
                raise
        except (NonFiniteLossError, DistributedError) as e:
            LOG.error("%s", e)
            raise
        except KeyboardInterrupt:
            LOG.error("interrupted; last completed epoch in %s", last if last.is_file() else "(none)")
            raise


# -- one step on a shard of the global batch (DDP) -------------------------------------------------
#: objective kinds computed from the pooled representations of both views: under DDP they are
#: gathered over ranks and these terms are computed on the global batch, on every rank
PAIR_KINDS = ("contrastive", "generative")

def local_term_count(name: str) -> Callable[[PretrainBatch], int]:
    """How many items the 2D task ``name``'s loss is a mean over in a batch
    (:attr:`graphmvp.pretrain.tasks.Task2D.item_count`; the sample count when it has none).
    Under DDP rank ``r`` back-propagates ``W * n_r / N * loss_r`` (``N`` the global count)."""
    task = TASKS_2D.get(name)
    return task.item_count if task.item_count is not None else _samples


def _samples(batch: PretrainBatch) -> int:
    return batch.batch_size


@dataclass
class StepValues:
    """One optimiser step's losses as a single process computes them on the global batch.

    ``loss``: the tensor this process back-propagates (the global loss for one process; under
    DDP the rank's share, see :class:`ShardedStep`). ``total`` / ``terms`` / ``metrics``: python
    numbers of the global batch (``terms`` unweighted, ``total`` their weighted sum).
    ``samples``: samples in the global batch.
    """

    loss: Tensor
    total: float
    terms: dict[str, float]
    metrics: dict[str, float]
    samples: int


def _global_task(name: str) -> bool:
    """True for a 2D task whose loss is that of the gathered global batch (``Task2D.global_loss``)."""
    return name in TASKS_2D and TASKS_2D.get(name).global_loss


class ShardedStep(nn.Module):
    """The GraphMVP step of one rank on its piece of the global batch (what DDP wraps).

    ``forward(batch, sizes, counts, step) -> (loss, report)``, with ``batch`` this rank's piece,
    ``sizes`` the piece sizes of every rank, ``counts`` 2D-task name -> (this rank's items, global
    items) and ``step`` the global step (seeds the rank-local random stream):

    1. both encoders on the local piece (rank-local random stream: dropout);
    2. pooled 2D and 3D representations gathered in rank order (:func:`all_gather_rows`, one
       collective): the global batch's [B, D], identical on every rank;
    3. contrastive and generative terms on the gathered batch on every rank: in-batch negatives
       are the global batch's cyclic shifts and VRR's noise comes from the global torch stream,
       which every rank holds in the same state - the single-process values; each rank
       back-propagates them whole (the gather's backward sums the ranks' gradients);
    4. the 2D task on the local piece, back-propagated as ``W * n_r / N * loss_r``; its reported
       value and metrics are the item-weighted means over ranks (one all-reduce). A task with
       ``global_loss`` (GraphCL, JOAO) instead gathers its per-sample rows
       (:func:`~graphmvp.distributed.gather_pieces` inside
       :func:`~graphmvp.distributed.global_batch`) and is treated as in 3.

    With DDP's gradient averaging the update equals the single-process update (batch norm of
    the encoders synchronised, :class:`~graphmvp.distributed.SyncBatchNorm`). Deviation:
    the other tasks that compare samples (ContextPred, Infomax, GraphLoG) compare within each
    rank's piece; their losses are still weighted by the global item counts.
    ``report``: ``{"total": float, "terms": {name: float}, "metrics": {name: float}}``.
    """

    def __init__(self, model: GraphMVPModel, ctx: DistContext, seed: int):
        super().__init__()
        self.model = model
        self.ctx = ctx
        self.seed = int(seed)

    def _gather(self, z2d: Optional[Tensor], z3d: Optional[Tensor], sizes: Sequence[int]):
        if z2d is not None and z3d is not None:
            both = all_gather_rows(torch.cat([z2d, z3d], dim=1), sizes)
            return both[:, : z2d.shape[1]], both[:, z2d.shape[1] :]
        return (None if z2d is None else all_gather_rows(z2d, sizes)), (None if z3d is None else all_gather_rows(z3d, sizes))

    def forward(self, batch: PretrainBatch, sizes: Sequence[int], counts: dict[str, tuple[int, int]], step: int):
        model, ctx = self.model, self.ctx
        with rank_local_rng(ctx, self.seed, step, 0):
            z2d = model.encode_2d(batch)
            z3d = model.encode_3d(batch)
        z2d, z3d = self._gather(z2d, z3d, sizes)
        loss: Optional[Tensor] = None
        terms: dict[str, float] = {}
        metrics: dict[str, float] = {}
        local: list[tuple[str, Tensor, int, int, dict[str, float]]] = []
        for kind, objective in model.objectives.items():
            name = model.names[kind]
            if kind in PAIR_KINDS or _global_task(name):
                if kind in PAIR_KINDS:  # VRR's noise: the shared stream, the same on every rank
                    value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                else:  # encodes this rank's piece (dropout: rank-local), compares the gathered rows
                    with global_batch(sizes), rank_local_rng(ctx, self.seed, step, 1):
                        value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                metrics.update(parts)
                if value is None:
                    continue
                terms[name] = float(value.detach())
                share = value
            else:
                mine, total = counts[name]
                if total == 0:  # no rank has an item for this term
                    continue
                with rank_local_rng(ctx, self.seed, step, 1):
                    value, parts = KIND_CALLERS[kind](model, objective, batch, z2d, z3d)
                local.append((name, value.detach(), mine, total, parts))
                share = value * (ctx.world_size * mine / total)
            weighted = model.weights[kind] * share
            loss = weighted if loss is None else loss + weighted
        if local:  # item-weighted sums over ranks: [n_r * loss_r, n_r * metric_r ...] per term
            keys = [(name, sorted(parts)) for name, _, _, _, parts in local]
            vector = []
            for name, value, mine, total, parts in local:
                vector.append(mine * float(value))
                vector.extend(mine * float(parts[k]) for k in sorted(parts))
            sums = iter(ctx.sum(vector))
            for (name, metric_keys), (_, _, _, total, _) in zip(keys, local):
                terms[name] = float(next(sums)) / total
                for k in metric_keys:
                    metrics[k] = float(next(sums)) / total
        kind_of = {n: k for k, n in model.names.items()}
        report = {"total": sum(model.weights[kind_of[n]] * v for n, v in terms.items()), "terms": terms, "metrics": metrics}
        return loss, report


class _Run:
    """The state of one run (used by :func:`pretrain`)."""

    def __init__(self, cfg: PretrainConfig, explicit_store: bool, state: Optional[dict[str, Any]], ctx: DistContext):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.explicit_store = explicit_store
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
        if self.explicit_store:
            LOG.info("store %s", path)
        else:
            error = None
            if ctx.is_main:  # one rank prepares the demo store; the others wait, then read it
                try:
                    path, prepared = ensure_demo_store(path)
                    how = "prepared it now" if prepared else "reusing the existing file"
                    LOG.info("no --store given: bundled demo molecules %s -> demo store %s (%s)", demo_smiles_path().name,
                             path, how)
                except ConfigError as e:
                    error = str(e)
            _agree_on_error(ctx, error)
            if not path.is_file():
                raise ConfigError(f"rank {ctx.rank}: the demo store {path} prepared by rank 0 is not visible on this "
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
                if kind not in PAIR_KINDS and not _global_task(name):
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
        _set_rng_state(state["rng"], self.device)
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
            self._plot()
        ctx.barrier()
        seconds = time.perf_counter() - t_start
        LOG.info("done: %d epoch(s), %d steps, best epoch %s (loss %s), %.1f s; 2D encoder: %s",
                 self.epochs_done, self.global_step, self.best_epoch, _format_number(self.best_loss), seconds,
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
                values = {f"loss_{_slug(n)}": v for n, v in out.terms.items()}
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
                    parts = " ".join(f"{k[5:]}={_format_number(v)}" for k, v in values.items())
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
            key = f"loss_{_slug(name)}"
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
        losses = " ".join(f"{k[5:]}={_format_number(row[k])}" for k in row if k.startswith("loss_"))
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
        export = self.model.export_encoder_2d(self.hydrogens, epoch=epoch, loss=float(loss))
        atomic_torch_save(export, self.out / "model_2d.pt")
        if improved:
            atomic_torch_save(export, self.out / "best_model_2d.pt")
        self._write_metrics()
        state = {
            "format": STATE_FORMAT,
            "config": self.cfg.to_dict(),
            "hydrogens": self.hydrogens,
            "model": {k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "stopped_at_max_steps": self.stopped,
            "metrics": [dict(row) for row in self.metrics],
            "rng": _rng_state(self.device),
            "world_size": self.ctx.world_size,
        }
        atomic_torch_save(state, self.out / "last.pt")

    def _columns(self) -> list[str]:
        seen: list[str] = []
        for row in self.metrics:
            for key in row:
                if key not in seen:
                    seen.append(key)
        head = ["epoch", "steps", "samples"] + [k for k in seen if k.startswith("loss_") and k != "loss_total"]
        tail = ["samples_per_s", "seconds", "data_seconds"]
        accs = sorted(k for k in seen if k.startswith("acc_"))
        return head + ["loss_total"] + accs + tail

    def _write_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns(), restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.metrics:
            writer.writerow(row)
        write_bytes_atomic(self.out / "metrics.csv", buffer.getvalue().encode(), fsync=True)

    def _plot(self) -> None:
        if not self.metrics:
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        epochs = [row["epoch"] for row in self.metrics]
        loss_keys = [k for k in self._columns() if k.startswith("loss_")]
        acc_keys = [k for k in self._columns() if k.startswith("acc_")]
        ncols = 2 if acc_keys else 1
        fig = Figure(figsize=(6 * ncols, 4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, squeeze=False)
        ax = axes[0][0]
        for key in loss_keys:
            ax.plot(epochs, [row.get(key, float("nan")) for row in self.metrics], marker="o",
                    linewidth=2.5 if key == "loss_total" else 1.5, label=key[5:])
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (epoch mean)")
        ax.set_title("losses (total = weighted sum)")
        ax.legend()
        ax.grid(alpha=0.3)
        if acc_keys:
            ax = axes[0][1]
            for key in acc_keys:
                ax.plot(epochs, [row.get(key, float("nan")) for row in self.metrics], marker="o", label=key[4:])
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy")
            ax.set_title("accuracies")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        write_bytes_atomic(self.out / "loss_curves.png", buffer.getvalue(), fsync=True)


__all__ = [
    "EpochPlan",
    "NonFiniteLossError",
    "PAIR_KINDS",
    "RankPieces",
    "RunResult",
    "atomic_torch_save",
    "demo_store_path",
    "ensure_demo_store",
    "epoch_batches",
    "epoch_seed",
    "ShardedStep",
    "StepValues",
    "local_term_count",
    "pretrain",
    "tune_malloc",
]
