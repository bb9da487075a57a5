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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from graphmvp.data.collate import PretrainBatch, collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.demo import demo_smiles_path
from graphmvp.io import atomic_path, write_bytes_atomic
from graphmvp.pretrain.config import ConfigError, PretrainConfig, check_inputs
from graphmvp.pretrain.model import GraphMVPModel, StepOutput, dataset_options

LOG = logging.getLogger("graphmvp.pretrain")

STATE_FORMAT = "graphmvp-pretrain-state-v1"
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


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (lists of sample indices) of ``epoch``: a seeded permutation cut into
    ``batch_size`` pieces; a last piece of a single sample is dropped (batch norm needs 2)."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(num_samples, generator=generator).tolist()
    batches = [order[i : i + batch_size] for i in range(0, num_samples, batch_size)]
    if batches and len(batches[-1]) < 2:
        batches.pop()
    return batches


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
    from geom_prep.config import PrepConfig, PrepError
    from geom_prep.pipeline import prepare

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
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep freed memory in the process heap (glibc only); True if applied.

    A training step allocates and frees the same large tensors every time (SchNet's per-edge
    filters: 3D edges x filters x 4 bytes, ~130 MB each at upstream sizes and batch 256). glibc
    serves blocks above its mmap threshold (at most 32 MB by default) with fresh ``mmap`` calls
    and returns them on ``free``, so every step page-faults its whole working set again: on the
    2-core benchmark machine that was ~2.6 M minor faults and ~40% of the CPU time of SchNet's
    forward + backward. Raising the mmap threshold to 1 GiB and disabling heap trimming keeps
    that memory mapped (~10x fewer faults, ~20% less CPU per 3D step; see
    ``benchmarks/pretrain_throughput.py``). The cost: the process keeps its peak heap size until
    it exits. Process-wide and not undone; other platforms are left alone.
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
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))


def _slug(name: str) -> str:
    return name.replace("-", "_")


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
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
    diff = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in now if saved.get(k) != now.get(k)]
    if diff:
        raise ConfigError(f"--resume: options differ from the run in {last.parent}: " + "; ".join(diff))


def pretrain(config: PretrainConfig) -> RunResult:
    """Run (or resume) one pretraining run; see the module docstring for what it writes.

    Raises :class:`~graphmvp.pretrain.config.ConfigError` for invalid options (before any work)
    and :class:`NonFiniteLossError` when the loss becomes NaN or infinite.
    """
    cfg = config.resolved()
    explicit_store = cfg.store is not None
    check_inputs(cfg)
    cfg = _resolve_paths(cfg)
    out = Path(cfg.out)
    last = out / "last.pt"
    state = None
    if cfg.resume:
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise ConfigError(f"--resume: cannot read {last} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        _check_resumable(cfg, state, last)

    malloc_tuned = tune_malloc() if cfg.malloc_tuning else False
    out.mkdir(parents=True, exist_ok=True)
    if cfg.overwrite:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    with _run_logging(out / "train.log", cfg.progress), _torch_settings(cfg.threads, cfg.deterministic):
        try:
            if cfg.malloc_tuning:
                LOG.info("malloc tuning (glibc: mmap threshold 1 GiB, no heap trimming): %s",
                         "applied" if malloc_tuned else "not available on this platform")
            return _Run(cfg, explicit_store, state).run()
        except NonFiniteLossError as e:
            LOG.error("%s", e)
            raise
        except KeyboardInterrupt:
            LOG.error("interrupted; last completed epoch in %s", last if last.is_file() else "(none)")
            raise


class _Run:
    """The state of one run (used by :func:`pretrain`)."""

    def __init__(self, cfg: PretrainConfig, explicit_store: bool, state: Optional[dict[str, Any]]):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.explicit_store = explicit_store
        self.state = state
        self.device = torch.device(cfg.device)
        self.metrics: list[dict[str, Any]] = []
        self.epochs_done = 0
        self.global_step = 0
        self.best_loss = math.inf
        self.best_epoch: Optional[int] = None
        self.stopped = False

    # -- setup ----------------------------------------------------------------------------------
    def _open_data(self) -> None:
        cfg = self.cfg
        path = Path(cfg.store)
        if self.explicit_store:
            LOG.info("store %s", path)
        else:
            path, prepared = ensure_demo_store(path)
            how = "prepared it now" if prepared else "reusing the existing file"
            LOG.info("no --store given: bundled demo molecules %s -> demo store %s (%s)", demo_smiles_path().name, path, how)
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
        n_batches = len(epoch_batches(len(self.dataset), cfg.batch_size, cfg.seed, 0))
        LOG.info("dataset: %d samples (%s, conformer sampling %s, mask ratio %g), %d batches of <= %d per epoch",
                 len(self.dataset), cfg.views, cfg.conformer_sampling, cfg.mask_ratio, n_batches, cfg.batch_size)

    def _build(self) -> None:
        cfg = self.cfg
        self.model = GraphMVPModel(cfg).to(self.device)
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
        _set_rng_state(state["rng"])
        LOG.info("resumed from %s: %d epoch(s) done, global step %d", self.out / "last.pt", self.epochs_done, self.global_step)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        argv = " ".join(sys.argv) if sys.argv else ""
        LOG.info("graphmvp-pretrain %s run in %s (%s)", "resuming" if cfg.resume else "starting", self.out, argv)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._open_data()
        self._build()
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
        self._plot()
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

    def _epoch(self, epoch: int) -> None:
        cfg = self.cfg
        self.dataset.set_epoch(epoch)
        batches = epoch_batches(len(self.dataset), cfg.batch_size, cfg.seed, epoch)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
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
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not cfg.progress, dynamic_ncols=True, leave=False, file=sys.stderr)
        iterator = iter(loader)
        try:
            for step in range(len(batches)):
                t_wait = time.perf_counter()
                batch = next(iterator)
                data_seconds += time.perf_counter() - t_wait
                if self.device.type != "cpu":
                    batch = batch.to(self.device)
                out = self.model(batch)
                if out.total is None:
                    skipped += 1
                    bar.update(1)
                    continue
                self._check_finite(out, batch, epoch, step)
                self.optimizer.zero_grad(set_to_none=True)
                out.total.backward()
                self.optimizer.step()
                self.global_step += 1
                steps += 1
                size = batch.batch_size
                n_samples += size
                values = {f"loss_{_slug(n)}": float(t.detach()) for n, t in out.terms.items()}
                values["loss_total"] = float(out.total.detach())
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
                    LOG.info("epoch %d step %d/%d (global %d): %s | %.1f mol/s", epoch + 1, step + 1, len(batches),
                             self.global_step, parts, rate, extra={"step_line": True})
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    self.stopped = True
                    break
        finally:
            bar.close()
            del iterator
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
        self._save(epoch + 1, row["loss_total"], improved)
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

    def _check_finite(self, out: StepOutput, batch: PretrainBatch, epoch: int, step: int) -> None:
        if bool(torch.isfinite(out.total.detach())):
            return
        terms = ", ".join(f"{n}={float(t.detach())}" for n, t in out.terms.items())
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
            "rng": _rng_state(),
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
    "NonFiniteLossError",
    "RunResult",
    "atomic_torch_save",
    "demo_store_path",
    "ensure_demo_store",
    "epoch_batches",
    "epoch_seed",
    "pretrain",
    "tune_malloc",
]
