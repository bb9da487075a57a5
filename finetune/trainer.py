"""The fine-tuning loop and the run folder it writes.

:func:`finetune` runs one :class:`~graphmvp.finetune.config.FinetuneConfig` for every seed and returns the
summary (also written as ``summary.json``). Order of work: resolve and check the options, check
the output folder, load the encoder once to check it fits, read and featurise the data (or read
the cache), make every seed's split - every bad input fails here, with a one-line
:class:`FinetuneError` - then train.

Per seed ``s``: ``torch.manual_seed(s)`` (random init / head init, dropout), the split of
``s`` (deterministic splits ignore it), Adam over two parameter groups (encoder: ``lr x
encoder_lr_scale``; head: ``lr``), ``epochs`` epochs over the training part in an order drawn from
a generator seeded with ``s``; after every epoch the validation and test parts are evaluated
(eval mode). The best epoch is the first one with the best validation value of the task type's
primary metric (ROC-AUC highest; RMSE / MSE lowest); NaN never wins (a validation part without
both classes in any task gives NaN; if every epoch is NaN, the last epoch is used and a warning
recorded). Test metrics are reported at the best-validation epoch AND at the last epoch.

With ``ensemble`` N > 1 every seed trains N members (:mod:`graphmvp.finetune.ensemble`: member ``k``
seeded with ``member_seed(s, k)``, the split of ``s``), each selected at its own best-validation
epoch; the seed's numbers are those of the members' mean prediction, each member's are kept in
``per_seed[i]["members"]``. With ``extra_features`` the model's extra-feature statistics are fitted
on the seed's training part (:meth:`graphmvp.finetune.problems.MoleculeProblem.extra_statistics`).

The run folder (``out``)::

    config.json          resolved options, encoder provenance, versions, command
    summary.json         per metric: test at best-validation epoch and at the last epoch
                         (mean, std over seeds with ddof=0, values), per-seed details,
                         data set (rows, kept, skipped with reasons), split sizes, timing
    metrics.csv          one row per (seed, epoch): train loss, seconds, molecules/s, metrics
    learning_curve.png   train loss and validation/test primary metric per epoch, per seed
    skipped.tsv          rows of the data file that were left out, with reasons
    seed_<s>/split.json  the data-file rows (pairs for DTA) of each split part
    seed_<s>/best_model.pt  with save_model: the best-validation model (weights_only loadable);
                         seed_<s>/best_model_member_<k>.pt per member of an ensemble

Distributed (``torchrun``, ``docs/distributed.md``): every rank runs :func:`finetune`. Rank 0
reads (downloads, featurises, caches) the data first, the other ranks then read its cache. Each
global batch of the training order is cut into ``world_size`` contiguous pieces, rank ``r``
trains on piece ``r`` and back-propagates ``W * n_r / N * loss_r`` (``n_r`` valid labels of its
piece, ``N`` of the global batch), so DDP's averaged gradient is the single-process gradient of
the global batch; the GIN's batch norm is synchronised. Evaluation runs whole on every rank (the
same numbers everywhere); rank 0 alone writes the run folder. Dropout masks are drawn per rank
(equal results to one process hold for dropout 0).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

import graphmvp
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.data import write_skipped_tsv
from graphmvp.finetune.ensemble import average as ensemble_average
from graphmvp.finetune.ensemble import member_seed
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.losses import LOSSES
from graphmvp.finetune.metrics import compute_metrics, multitask_roc_auc
from graphmvp.finetune.model import EncoderInit, build_encoder, count_parameters
from graphmvp.finetune.problems import batch_slices, build_problem
from graphmvp.finetune.protocols import make_scheduler
from graphmvp.finetune.tasks import TASK_TYPES, TaskType
from graphmvp.distributed import (
    DEFAULT_TIMEOUT_S,
    SINGLE_PROCESS,
    DistContext,
    DistOptionError,
    convert_sync_batchnorm,
    distributed_context,
    move_to,
    raise_if_communication_error,
    rank_local_rng,
)
from graphmvp.io import atomic_path, write_bytes_atomic

log = logging.getLogger("graphmvp.finetune")

RUN_FORMAT = "graphmvp-finetune-run-v1"
MODEL_FORMAT = "graphmvp-finetune-model-v1"
SUMMARY_FILE = "summary.json"


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss, prediction or error metric: the seed failed (the message
    names seed, epoch and step or split part). The CLI exits 1 with this one line."""


@dataclass
class SeedResult:
    """One trained model: run seed ``seed``, ensemble member ``member`` (0 for a single model).
    ``predictions``: its outputs (logits for classification) on valid/test at the best
    (``best_valid``, ``best_test``) and last (``last_valid``, ``last_test``) epochs."""

    seed: int
    member: int = 0
    label: str = ""
    rows: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: Optional[dict] = None
    stopped_early: Optional[int] = None  # the epoch after which patience ran out
    summary: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------ helpers


def _better(a: float, b: float, higher: bool) -> bool:
    """Is ``a`` strictly better than ``b``? NaN is never better; anything beats NaN."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if higher else a < b


def _stats(values: list[float], seeds: list[int]) -> dict:
    """Mean and population std over every seed. A seed whose value is not finite (an undefined
    metric, e.g. ROC-AUC of a test part without both classes in any task) is never left out: the
    mean and std are then NaN and ``nonfinite_seeds`` names the seeds."""
    arr = np.array(values, dtype=np.float64)
    out = {
        "mean": float(arr.mean()) if arr.size else float("nan"),
        "std": float(arr.std(ddof=0)) if arr.size else float("nan"),
        "values": [float(v) for v in arr],
    }
    bad = [int(s) for s, v in zip(seeds, arr) if not np.isfinite(v)]
    if bad:
        out.update(mean=float("nan"), std=float("nan"), nonfinite_seeds=bad)
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n").encode())


@contextmanager
def _threads(n: Optional[int]) -> Iterator[None]:
    old = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(int(n))
        yield
    finally:
        torch.set_num_threads(old)


def _versions() -> dict:
    import dgl
    import rdkit

    return {"graphmvp": graphmvp.__version__, "torch": torch.__version__, "dgl": dgl.__version__,
            "rdkit": rdkit.__version__, "numpy": np.__version__, "python": platform.python_version()}


def check_out_dir(cfg: FinetuneConfig) -> Path:
    """The output folder; refuses to overwrite a finished run unless ``overwrite``."""
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"--out {out}: exists and is not a folder")
    if (out / SUMMARY_FILE).exists() and not cfg.overwrite:
        raise FinetuneError(f"--out {out} already holds a finished run ({SUMMARY_FILE}); pass --overwrite to replace it")
    return out


class _OnDevice:
    """A model (or sub-module) called with CPU inputs, run on ``device``, answering on the CPU:
    what the problems' evaluation code (which builds CPU batches) calls on a GPU run. Module
    attributes come wrapped the same way; other attributes pass through."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self._module, self._device = module, device

    def __call__(self, *inputs: Any) -> Any:
        return move_to(self._module(*move_to(inputs, self._device)), torch.device("cpu"))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._module, name)
        return _OnDevice(attr, self._device) if isinstance(attr, torch.nn.Module) else attr


def global_slices(n: int, batch_size: int, world_size: int) -> list[slice]:
    """The global batches of a training order of ``n``: :func:`~graphmvp.finetune.problems.batch_slices`,
    and under DDP a last batch smaller than ``world_size`` merged into the one before (every rank
    needs a molecule; for 2 ranks this changes nothing)."""
    slices = batch_slices(n, batch_size)
    if world_size > 1 and len(slices) > 1 and slices[-1].stop - slices[-1].start < world_size:
        last = slices.pop()
        slices[-1] = slice(slices[-1].start, last.stop)
    return slices


# ------------------------------------------------------------------------------- one seed


class _SeedRun:
    def __init__(self, cfg: FinetuneConfig, problem, ttype: TaskType, seed: int, pooling: str,
                 ctx: DistContext = SINGLE_PROCESS, member: int = 0):
        self.cfg, self.problem, self.ttype, self.seed, self.ctx = cfg, problem, ttype, seed, ctx
        self.member = member
        self.label = f"seed {seed}" if cfg.ensemble == 1 else f"seed {seed} member {member}"
        init_seed = member_seed(seed, member)  # initialisation, dropout, batch order; the split is the seed's
        self.init_seed = init_seed
        torch.manual_seed(init_seed)
        np.random.seed(init_seed % (2**32))
        encoder, self.init = encoder_of(cfg, quiet=True)
        model = problem.build_model(encoder, pooling)
        self.extra_statistics = problem.extra_statistics(seed)
        if self.extra_statistics is not None:
            model.set_extra_statistics(self.extra_statistics.mean, self.extra_statistics.std)
        self.model = model.to(ctx.device)
        self.predictions: dict[str, np.ndarray] = {}
        if ctx.is_distributed:  # batch statistics of the global batch
            self.model = convert_sync_batchnorm(self.model)
        self.parts = problem.parts(seed)
        self.loss_fn = LOSSES.get(ttype.loss)
        self.cache: dict = {}
        self.shift = self.scale = None
        if cfg.standardize:
            y = problem.labels(self.parts["train"]).astype(np.float64)
            mean = np.nanmean(y, axis=0)
            std = np.nanstd(y, axis=0)
            std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
            self.shift = torch.tensor(np.nan_to_num(mean), dtype=torch.float32)
            self.scale = torch.tensor(std, dtype=torch.float32)
        enc_params = list(self.model.molecule_model.parameters())
        enc_ids = {id(p) for p in enc_params}
        head_params = [p for p in self.model.parameters() if id(p) not in enc_ids]
        groups = [{"name": "head", "params": head_params, "lr": cfg.lr}]
        if cfg.freeze_encoder:
            for p in enc_params:
                p.requires_grad_(False)
        else:
            groups.insert(0, {"name": "encoder", "params": enc_params, "lr": cfg.lr * cfg.encoder_lr_scale})
        self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = len(global_slices(self.parts["train"].shape[0], cfg.batch_size, ctx.world_size))
        self.scheduler = make_scheduler(cfg.lr_schedule, self.optimizer, steps, cfg.epochs, cfg.warmup_epochs)
        self.clipped = [p for g in groups for p in g["params"]] if cfg.grad_clip else None
        self.generator = torch.Generator().manual_seed(init_seed)
        self.train_module = ctx.wrap(self.model)  # DDP under torchrun, the model itself otherwise
        self.eval_model = self.model if ctx.device.type == "cpu" else _OnDevice(self.model, ctx.device)

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_encoder:
            self.model.molecule_model.eval()

    def train_epoch(self, epoch: int) -> tuple[float, int, float]:
        """One pass over the training part: (mean loss per molecule, molecules, seconds)."""
        self._train_mode()
        ctx = self.ctx
        train = self.parts["train"]
        order = train[torch.randperm(train.shape[0], generator=self.generator).numpy()]
        total, seen = 0.0, 0
        t0 = time.perf_counter()
        for step, s in enumerate(global_slices(order.shape[0], self.cfg.batch_size, ctx.world_size)):
            inputs, y = self.problem.batch(ctx.shard(order[s]))
            if self.scale is not None:
                y = (y - self.shift) / self.scale
            if ctx.device.type != "cpu":
                inputs, y = move_to(inputs, ctx.device), y.to(ctx.device)
            with rank_local_rng(ctx, self.init_seed, epoch, step):  # dropout: a stream per rank
                out = self.train_module(*inputs)
            loss = self.loss_fn(out, y)
            share, value = self._global_loss(loss, y)
            if not math.isfinite(value):
                raise NonFiniteLoss(f"{self.label}, epoch {epoch}, step {step}: loss is {value}; "
                                    "lower --lr or check the labels")
            self.optimizer.zero_grad(set_to_none=True)
            share.backward()
            if self.clipped is not None:
                torch.nn.utils.clip_grad_norm_(self.clipped, self.cfg.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            n = int(s.stop - s.start)
            total += value * n
            seen += n
        return total / max(seen, 1), seen, time.perf_counter() - t0

    def _global_loss(self, loss: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(what this rank back-propagates, the global batch's loss). The losses are means over
        the valid (non-NaN) labels: rank r's share is ``W * n_r / N * loss_r``."""
        ctx = self.ctx
        if not ctx.is_distributed:
            return loss, float(loss.detach())
        valid = int((~torch.isnan(y)).sum())
        count, weighted = ctx.sum([valid, valid * float(loss.detach())])
        if count == 0:  # no label in the whole batch: a zero step, as for one process
            return loss * 0.0, 0.0
        return loss * (ctx.world_size * valid / count), float(weighted / count)

    @torch.no_grad()
    def evaluate(self, part: str, epoch: int) -> tuple[dict, Optional[list]]:
        """Metrics of ``part`` (and per-task ROC-AUC for classification). A NaN/inf prediction,
        or an error metric that overflows to inf, fails the seed (:class:`NonFiniteLoss`)."""
        self.model.eval()
        idx = self.parts[part]
        pred = self.problem.predict(self.eval_model, idx, max(self.cfg.batch_size, 256), self.cache, part)
        if self.scale is not None:
            pred = pred * self.scale.numpy() + self.shift.numpy()
        bad = int((~np.isfinite(pred)).sum())
        if bad:
            raise NonFiniteLoss(f"{self.label}, epoch {epoch}: {bad} of {pred.size} predictions on the {part} part "
                                "are NaN/inf (the model diverged); lower --lr or check the labels")
        self.predictions[part] = pred
        metrics, per_task = _score(self.ttype, self.problem.labels(idx), pred)
        overflow = sorted(k for k, v in metrics.items() if math.isinf(v))
        if overflow:
            raise NonFiniteLoss(f"{self.label}, epoch {epoch}: {', '.join(overflow)} on the {part} part is inf "
                                "(the model diverged); lower --lr or check the labels")
        return metrics, per_task


def _score(ttype: TaskType, y: np.ndarray, pred: np.ndarray) -> tuple[dict, Optional[list]]:
    """The task type's metrics of ``pred`` against ``y`` (and per-task ROC-AUC for classification)."""
    metrics = compute_metrics(ttype.metrics, y, pred)
    per_task = None
    if ttype.name == "classification":
        auc = multitask_roc_auc(y, pred)
        metrics["tasks_evaluated"] = auc.evaluated
        per_task = auc.per_task
    return metrics, per_task


def _train_member(cfg: FinetuneConfig, problem, ttype: TaskType, seed: int, member: int, pooling: str,
                  ctx: DistContext = SINGLE_PROCESS) -> tuple[SeedResult, _SeedRun]:
    """Train one model (run seed ``seed``, ensemble member ``member``) for every epoch; select its
    best-validation epoch; keep its predictions at the best and last epochs."""
    run = _SeedRun(cfg, problem, ttype, seed, pooling, ctx, member)
    result = SeedResult(seed, member, run.label)
    higher = ttype.higher_is_better
    best_value = float("nan")
    best_per_task = None
    eval_parts = (["train"] if cfg.eval_train else []) + ["valid", "test"]
    seconds_total = 0.0
    molecules_total = 0
    for epoch in range(1, cfg.epochs + 1):
        loss, seen, seconds = run.train_epoch(epoch)
        seconds_total += seconds
        molecules_total += seen
        row: dict[str, Any] = {"seed": seed, **({"member": member} if cfg.ensemble > 1 else {}), "epoch": epoch,
                               "train_loss": loss, "train_seconds": round(seconds, 4),
                               "train_molecules_per_s": round(seen / seconds, 2) if seconds > 0 else float("nan")}
        t0 = time.perf_counter()
        per_task_test = None
        for part in eval_parts:
            metrics, per_task = run.evaluate(part, epoch)
            if part == "test":
                per_task_test = per_task
            for k, v in metrics.items():
                row[f"{part}_{k}"] = v
        row["eval_seconds"] = round(time.perf_counter() - t0, 4)
        result.rows.append(row)
        value = row[f"valid_{ttype.metric}"]
        if result.best_epoch == 0 or _better(value, best_value, higher):
            result.best_epoch, best_value, best_per_task = epoch, value, per_task_test
            result.predictions.update(best_valid=run.predictions["valid"], best_test=run.predictions["test"])
            if cfg.save_model:
                result.best_state = {k: v.detach().to("cpu").clone() for k, v in run.model.state_dict().items()}
        if cfg.progress and ctx.is_main:
            log.info("%s epoch %d/%d  loss %.4f  valid %s %.4f  test %s %.4f  (%.1f s, %.0f mol/s)", run.label, epoch,
                     cfg.epochs, loss, ttype.metric, value, ttype.metric, row[f"test_{ttype.metric}"], seconds,
                     row["train_molecules_per_s"])
        if cfg.patience and epoch - result.best_epoch >= cfg.patience:
            result.stopped_early = epoch
            break
    result.predictions.update(last_valid=run.predictions["valid"], last_test=run.predictions["test"])
    warnings = list(run.init.warnings)
    if all(math.isnan(r[f"valid_{ttype.metric}"]) for r in result.rows):
        result.best_epoch = len(result.rows)
        best_per_task = per_task_test
        result.predictions.update(best_valid=run.predictions["valid"], best_test=run.predictions["test"])
        if cfg.save_model:
            result.best_state = {k: v.detach().to("cpu").clone() for k, v in run.model.state_dict().items()}
        warnings.append(f"validation {ttype.metric} was undefined (NaN) at every epoch; the last epoch stands in for the best")
    best_row = result.rows[result.best_epoch - 1]
    last_row = result.rows[-1]
    pick = lambda row, part: {m: row[f"{part}_{m}"] for m in ttype.metrics}  # noqa: E731
    result.summary = {
        "seed": seed,
        **({"member": member, "member_seed": run.init_seed} if cfg.ensemble > 1 else {"split": problem.describe(seed)}),
        "best_epoch": result.best_epoch,
        "valid_at_best": pick(best_row, "valid"),
        "test_at_best_valid": pick(best_row, "test"),
        "valid_at_last": pick(last_row, "valid"),
        "test_at_last_epoch": pick(last_row, "test"),
        "epochs_trained": len(result.rows),
        "stopped_early": result.stopped_early,
        "train_seconds": round(seconds_total, 3),
        "train_molecules_per_s": round(molecules_total / seconds_total, 2) if seconds_total > 0 else None,
        "warnings": warnings,
    }
    if ttype.name == "classification":
        result.summary["test_roc_auc_per_task_at_best"] = best_per_task
        result.summary["test_tasks_evaluated_at_best"] = best_row.get("test_tasks_evaluated")
    result.summary["model_parameters"] = count_parameters(run.model)
    result.summary["trainable_parameters"] = count_parameters(run.model, trainable_only=True)
    return result, run


def _model_file(seed_dir: Path, member: int, size: int) -> Path:
    return seed_dir / ("best_model.pt" if size == 1 else f"best_model_member_{member}.pt")


def _save_model(path: Path, cfg: FinetuneConfig, problem, ttype: TaskType, pooling: str, run: _SeedRun,
                result: SeedResult) -> None:
    """The best-validation model of one member, with what ``predict`` needs to featurise new
    molecules identically (graphs, extra features and their statistics) and to undo the target
    standardisation."""
    extra = None
    if cfg.extra_kind is not None:
        from graphmvp.finetune.extra_features import describe

        extra = {**describe(cfg.extra_kind), **run.extra_statistics.to_dict()}
    payload = {"format": MODEL_FORMAT, "state_dict": result.best_state, "epoch": result.best_epoch,
               "encoder_config": run.init.config, "task": cfg.task_name, "num_tasks": problem.num_tasks,
               "head": cfg.head, "head_hidden": cfg.head_hidden, "pooling": pooling,
               "task_type": ttype.name, "hydrogens": cfg.hydrogens,
               "label_names": list(getattr(getattr(problem, "dataset", None), "label_names", None) or []),
               "target_shift": None if run.shift is None else run.shift.tolist(),
               "target_scale": None if run.scale is None else run.scale.tolist(),
               "extra_features": extra, "graph_features": graph_features_record(cfg.graph_features),
               "seed": result.seed, "member": result.member, "member_seed": run.init_seed,
               "dta": run.model.record() if ttype.name == "dta" else None}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


#: summary key of each (epoch, part) an ensemble is scored at
_ENSEMBLE_KEYS = {("best", "valid"): "valid_at_best", ("best", "test"): "test_at_best_valid",
                  ("last", "valid"): "valid_at_last", ("last", "test"): "test_at_last_epoch"}


def _ensemble_summary(problem, ttype: TaskType, seed: int, members: list[SeedResult]) -> dict:
    """The seed's entry for an ensemble: the metrics of the members' mean predictions
    (:mod:`graphmvp.finetune.ensemble`) at their own best and last epochs, and every member's summary."""
    parts = problem.parts(seed)
    summary: dict[str, Any] = {"seed": seed, "split": problem.describe(seed), "ensemble": len(members),
                               "best_epoch": [m.best_epoch for m in members]}
    for (when, part), key in _ENSEMBLE_KEYS.items():
        pred = ensemble_average([m.predictions[f"{when}_{part}"] for m in members], ttype.name)
        metrics, per_task = _score(ttype, problem.labels(parts[part]), pred)
        summary[key] = {m: metrics[m] for m in ttype.metrics}
        if ttype.name == "classification" and key == "test_at_best_valid":
            summary["test_roc_auc_per_task_at_best"] = per_task
            summary["test_tasks_evaluated_at_best"] = metrics["tasks_evaluated"]
    seconds = sum(m.summary["train_seconds"] for m in members)
    summary.update({
        "epochs_trained": [m.summary["epochs_trained"] for m in members],
        "stopped_early": [m.stopped_early for m in members],
        "train_seconds": round(seconds, 3),
        "warnings": [f"member {m.member}: {w}" for m in members for w in m.summary["warnings"]],
        "model_parameters": members[0].summary["model_parameters"],
        "trainable_parameters": members[0].summary["trainable_parameters"],
        "members": [m.summary for m in members],
    })
    return summary


def _train_seed(cfg: FinetuneConfig, problem, ttype: TaskType, seed: int, pooling: str, out: Path,
                ctx: DistContext = SINGLE_PROCESS) -> tuple[list[SeedResult], dict, EncoderInit]:
    """Train the seed's model (or its ``cfg.ensemble`` members); write ``seed_<s>/``: (the
    members, the seed's summary entry, where the encoder came from)."""
    seed_dir = out / f"seed_{seed}"
    if ctx.is_main:
        seed_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(seed_dir / "split.json", problem.split_json(seed).encode())
    members = []
    for member in range(cfg.ensemble):
        result, run = _train_member(cfg, problem, ttype, seed, member, pooling, ctx)
        if cfg.save_model and result.best_state is not None and ctx.is_main:
            _save_model(_model_file(seed_dir, member, cfg.ensemble), cfg, problem, ttype, pooling, run, result)
        result.best_state = None  # written: free the memory before the next member
        members.append(result)
    summary = members[0].summary if cfg.ensemble == 1 else _ensemble_summary(problem, ttype, seed, members)
    return members, summary, run.init


# --------------------------------------------------------------------------------- the run


def finetune(config: FinetuneConfig, command: Optional[list[str]] = None, *,
             dist_timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """Run every seed of ``config``; write the run folder; return the summary dict.

    Under ``torchrun`` (``WORLD_SIZE > 1``) this is one rank of a DDP run (module docstring);
    collectives fail after ``dist_timeout`` seconds. Raises :class:`FinetuneError` for bad input
    (every rank raises the first failing rank's message), :class:`NonFiniteLoss` and
    :class:`~graphmvp.distributed.DistributedError` (another rank died or hung).
    """
    cfg = config.resolved()
    try:
        with distributed_context(cfg.device, dist_timeout) as ctx:
            try:
                return _finetune(cfg, ctx, command)
            except Exception as e:
                raise_if_communication_error(e, ctx, "fine-tuning")
                raise
    except DistOptionError as e:
        raise FinetuneError(str(e)) from None


def _agree_on_error(ctx: DistContext, error: Optional[str]) -> None:
    """Raise FinetuneError on every rank if any rank has ``error`` (the first rank's message)."""
    message = ctx.first_error(error)
    if message is not None:
        raise FinetuneError(message)


def encoder_of(cfg: FinetuneConfig, quiet: bool = False) -> tuple[torch.nn.Module, EncoderInit]:
    """The 2D encoder ``cfg`` (resolved) asks for, and where it came from (:func:`build_encoder`)."""
    return build_encoder(cfg.init, num_layers=cfg.num_layers, emb_dim=cfg.emb_dim, jk=cfg.jk, encoder=cfg.encoder,
                         encoder_options=cfg.encoder_options(), dropout=float(cfg.dropout), progress=cfg.progress,
                         hydrogens=cfg.hydrogens, quiet=quiet)


def _prepare(cfg: FinetuneConfig) -> tuple[EncoderInit, Any, str]:
    """Load the encoder once (a bad --init fails here), read the data, make every seed's split
    (a split that cannot be made fails before training too): (init, problem, pooling)."""
    _, init = encoder_of(cfg)
    problem = build_problem(cfg)
    pooling = cfg.pooling or init.config.get("pooling", "mean")
    for seed in cfg.seeds:
        problem.parts(seed)
    return init, problem, pooling


def _prepare_everywhere(cfg: FinetuneConfig, ctx: DistContext) -> tuple[EncoderInit, Any, str]:
    """:func:`_prepare` on rank 0 first (downloads, featurisation cache), then on the others."""
    if not ctx.is_distributed:
        return _prepare(cfg)
    prepared, error = None, None
    if ctx.is_main:
        try:
            check_out_dir(cfg)
            prepared = _prepare(cfg)
        except FinetuneError as e:
            error = str(e)
    _agree_on_error(ctx, error)
    if not ctx.is_main:
        try:
            prepared = _prepare(replace(cfg, progress=False))
        except FinetuneError as e:
            error = str(e)
    _agree_on_error(ctx, error)
    init, problem, pooling = prepared
    if cfg.batch_size < ctx.world_size:
        raise FinetuneError(f"--batch-size={cfg.batch_size} is the global batch; with {ctx.world_size} ranks it must "
                            f"be >= {ctx.world_size}")
    for seed in cfg.seeds:
        n = int(problem.parts(seed)["train"].shape[0])
        if n < ctx.world_size:
            raise FinetuneError(f"seed {seed}: {n} training example(s) for {ctx.world_size} ranks")
    return init, problem, pooling


def _finetune(cfg: FinetuneConfig, ctx: DistContext, command: Optional[list[str]]) -> dict:
    ttype: TaskType = TASK_TYPES.get(cfg.task_type)
    out = Path(cfg.out).expanduser() if ctx.is_distributed else check_out_dir(cfg)  # (DDP: checked by rank 0)
    started = time.time()
    with _threads(cfg.threads):
        init, problem, pooling = _prepare_everywhere(cfg, ctx)
        method = cfg.method or _method_label(cfg, init.method)
        extra = _extra_features_record(cfg, problem)
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            _clear_outputs(out)
            write_json(out / "config.json", {
                "format": RUN_FORMAT, "config": cfg.to_dict(), "task_type": ttype.__dict__, "pooling": pooling,
                "method": method, "init": init.to_dict(), "extra_features": extra, "versions": _versions(),
                "command": command or [], "threads": torch.get_num_threads(), "device": str(ctx.device),
                "world_size": ctx.world_size,
            })
            write_skipped_tsv(out / "skipped.tsv", problem.skipped)
        ctx.barrier()
        results: list[SeedResult] = []  # every trained model (members of every seed)
        per_seed: list[dict] = []
        for seed in cfg.seeds:
            members, seed_summary, init = _train_seed(cfg, problem, ttype, seed, pooling, out, ctx)
            results.extend(members)
            per_seed.append(seed_summary)
            if ctx.is_main:
                _write_metrics(out / "metrics.csv", [r for res in results for r in res.rows])
        threads = torch.get_num_threads()

    seeds = list(cfg.seeds)
    summary = {
        "format": RUN_FORMAT,
        "task": cfg.task_name,
        "task_type": ttype.name,
        "metric": ttype.metric,
        "higher_is_better": ttype.higher_is_better,
        "method": method,
        "seeds": list(cfg.seeds),
        "epochs": cfg.epochs,
        "result": {
            "test_at_best_valid": _stats([r["test_at_best_valid"][ttype.metric] for r in per_seed], seeds),
            "test_at_last_epoch": _stats([r["test_at_last_epoch"][ttype.metric] for r in per_seed], seeds),
            "valid_at_best": _stats([r["valid_at_best"][ttype.metric] for r in per_seed], seeds),
        },
        "metrics": _metric_stats(ttype, per_seed, seeds),
        "std": "population standard deviation over seeds (ddof=0)",
        "per_seed": per_seed,
        "dataset": problem.summary(),
        "split": cfg.split,
        "init": init.to_dict(),
        "pooling": pooling,
        "protocol": {"name": cfg.protocol, **{k: getattr(cfg, k) for k in (
            "split_fractions", "dropout", "head", "epochs", "batch_size", "lr", "weight_decay", "encoder_lr_scale",
            "freeze_encoder", "standardize", "lr_schedule", "warmup_epochs", "patience", "grad_clip",
            "graph_features")}},
        "extra_features": None if extra is None else {k: extra[k] for k in ("kind", "dim", "standardised")},
        "timing": {"seconds": round(time.time() - started, 2), "threads": threads, "device": str(ctx.device),
                   "world_size": ctx.world_size},
        "versions": _versions(),
    }
    if cfg.ensemble > 1:
        members = [r.summary for r in results]
        summary["ensemble"] = {
            "size": cfg.ensemble,
            "rule": "each member at its own best-validation epoch; the ensemble predicts the mean of the members' "
                    "predictions (classification: probabilities); result/metrics/per_seed are the ensemble's",
            "member_seeds": {f"seed_{r['seed']}": [m["member_seed"] for m in r["members"]] for r in per_seed},
            "members": _metric_stats(ttype, members, [m["seed"] for m in members]),
        }
    if ctx.is_main:
        _plot(out / "learning_curve.png", results, ttype, summary)
        write_json(out / SUMMARY_FILE, summary)
    ctx.barrier()
    return summary


def _metric_stats(ttype: TaskType, entries: list[dict], seeds: list[int]) -> dict:
    """Per metric: test at best valid / at last epoch and valid at best, over ``entries``."""
    return {m: {key: _stats([e[key][m] for e in entries], seeds) for key in
                ("test_at_best_valid", "test_at_last_epoch", "valid_at_best")} for m in ttype.metrics}


def _method_label(cfg: FinetuneConfig, base: str) -> str:
    """The table label: the encoder's, plus the graph and extra features and the ensemble size when used."""
    label = base if cfg.graph_features == "hu" else f"{base} + {cfg.graph_features} atom/bond features"
    label = label if cfg.extra_kind is None else f"{label} + {cfg.extra_kind}"
    return label if cfg.ensemble == 1 else f"{label} (ensemble of {cfg.ensemble})"


def _extra_features_record(cfg: FinetuneConfig, problem) -> Optional[dict]:
    """config.json's record of the extra features: kind, width, names and every seed's
    training-split statistics (None without extra features)."""
    if cfg.extra_kind is None:
        return None
    from graphmvp.finetune.extra_features import describe

    record = describe(cfg.extra_kind)
    stats = {f"seed_{s}": problem.extra_statistics(s).to_dict() for s in cfg.seeds} if record["standardised"] else None
    return {**record, "statistics": stats}


RUN_FILES = (SUMMARY_FILE, "config.json", "metrics.csv", "learning_curve.png", "skipped.tsv")
SEED_FILES = ("split.json", "best_model.pt")
#: the model files of ensemble members in ``seed_<s>/``
MEMBER_FILES = "best_model_member_*.pt"


def _clear_outputs(out: Path) -> None:
    """Remove the files an earlier run wrote to ``out`` (and nothing else)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for seed_dir in out.glob("seed_*"):
        if seed_dir.is_dir():
            for name in SEED_FILES:
                (seed_dir / name).unlink(missing_ok=True)
            for member_file in seed_dir.glob(MEMBER_FILES):
                member_file.unlink()
            try:
                seed_dir.rmdir()
            except OSError:
                pass  # holds files of the user's: leave it


def _write_metrics(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_bytes_atomic(path, buf.getvalue().encode())


def _plot(path: Path, results: list[SeedResult], ttype: TaskType, summary: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2))
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    m = ttype.metric
    for i, res in enumerate(results):
        c = colors[i % len(colors)]
        epochs = [r["epoch"] for r in res.rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in res.rows], color=c, label=res.label)
        ax_metric.plot(epochs, [r[f"valid_{m}"] for r in res.rows], color=c, linestyle="--", label=f"valid, {res.label}")
        ax_metric.plot(epochs, [r[f"test_{m}"] for r in res.rows], color=c, label=f"test, {res.label}")
        ax_metric.axvline(res.best_epoch, color=c, alpha=0.3, linewidth=1)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(f"training loss ({ttype.loss})")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(m)
    res_best = summary["result"]["test_at_best_valid"]
    ax_metric.set_title(f"{summary['task']} / {summary['method']}: test {m} at best valid "
                        f"{res_best['mean']:.3f} ({res_best['std']:.3f}); vertical = best epoch", fontsize=9)
    ax_metric.grid(alpha=0.3)
    ax_metric.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())


def graph_features_record(kind: str) -> Optional[dict]:
    """A model file's record of ``--graph-features`` (None for ``hu``, as files from before the
    option): the kind and the descriptor tables (:func:`graphmvp.descriptors.describe`)."""
    if kind == "hu":
        return None
    from graphmvp import descriptors

    return {"kind": kind, **descriptors.describe()}


def check_graph_features(record: Optional[dict], source: str) -> str:
    """The ``--graph-features`` kind of a model file's record; a one-line :class:`FinetuneError`
    when this installation computes the descriptors differently."""
    if record is None:
        return "hu"
    from graphmvp import descriptors

    if {k: record.get(k) for k in ("version", "atom", "bond")} != descriptors.describe():
        raise FinetuneError(f"{source}: its atom/bond descriptors differ from this installation's (another graphmvp "
                            "version); predict with the version it was trained with")
    return str(record["kind"])


def load_finetuned(path: str | os.PathLike):
    """Rebuild a model saved with ``save_model`` (``seed_<s>/best_model.pt``): returns
    ``(model in eval mode, payload)``: a :class:`FinetuneModel`, or a
    :class:`~graphmvp.finetune.dta.DTAModel` for a drug-target affinity task."""
    from graphmvp.finetune.model import FinetuneModel, descriptor_embedding
    from graphmvp.pretrained import encoder_from_config

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise FinetuneError(f"{path}: not a fine-tuned model file ({MODEL_FORMAT})")
    encoder = encoder_from_config({"encoder": "gin", **payload["encoder_config"]})  # files before GraphGPS: GIN
    if payload.get("task_type") == "dta":
        from graphmvp.finetune.dta import dta_model_from_record

        model = dta_model_from_record(encoder, payload.get("dta") or {}, str(path))
        model.load_state_dict(payload["state_dict"])
        return model.eval(), payload
    extra = payload.get("extra_features")
    kind = check_graph_features(payload.get("graph_features"), str(path))
    model = FinetuneModel(encoder, payload["num_tasks"], pooling=payload["pooling"], head=payload["head"],
                          head_hidden=payload.get("head_hidden"), extra_dim=int(extra["dim"]) if extra else 0,
                          descriptors=descriptor_embedding(kind, encoder, zero_init=True))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


__all__ = ["NonFiniteLoss", "RUN_FORMAT", "SUMMARY_FILE", "finetune", "load_finetuned", "write_json"]
