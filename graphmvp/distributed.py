"""Multi-process training (torch DDP) and device choice, shared by pretraining and fine-tuning.

Launch with ``torchrun`` and nothing else changes for the user: :func:`distributed_context`
reads the launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` /
``MASTER_PORT``), starts the process group (``gloo`` on CPU, ``nccl`` on CUDA) with a timeout and
yields a :class:`DistContext`; without a launcher (or with one process) it yields the
single-process context and the trainers run their plain code path.

The convention that makes a run with ``W`` ranks equal to one process on the same global batch
(see ``docs/distributed.md``): every global batch is cut into ``W`` contiguous pieces
(:func:`shard_bounds`), rank ``r`` computes on piece ``r`` and back-propagates a loss ``L_r``
chosen so that ``mean_r L_r`` is the single-process loss of the global batch; DDP averages the
gradients, so the update is the single-process update. The pieces that make this exact:

* :class:`SyncBatchNorm` - batch statistics over the global batch (torch's ``SyncBatchNorm``
  accepts CUDA tensors only in torch 2.2; this one runs on gloo/CPU and NCCL/CUDA alike);
* :func:`all_gather_rows` - a differentiable all-gather of per-sample rows (pooled
  representations), so in-batch negatives are those of the global batch;
* :func:`all_reduce_sum` - a differentiable sum over ranks (the building block of both);
* :func:`rank_local_rng` - random draws of rank-local computations (dropout) come from a stream
  of their own, so the shared stream (e.g. VRR's noise on the gathered batch) stays identical on
  every rank.

Collectives that fail (a peer died, or hung longer than the timeout) become one-line
:class:`DistributedError` messages via :func:`raise_if_communication_error`.
"""

from __future__ import annotations

import collections
import contextvars
import datetime
import functools
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

LOG = logging.getLogger("graphmvp.distributed")

#: default seconds a collective may wait for the other ranks before the job fails
DEFAULT_TIMEOUT_S = 600.0
#: the values of ``--device`` (besides ``cuda:N`` outside torchrun)
DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: the command that installs DGL's CUDA build for this stack (torch 2.2, CUDA 12.1)
DGL_CUDA_INSTALL = "pip install dgl==2.1.0 -f https://data.dgl.ai/wheels/torch-2.2/cu121/repo.html"


#: seconds of GIL-free wait before destroying the process group (see :func:`_hold_until_exit`)
GLOO_SETTLE_S = 0.2

# Tensors handed to recent collectives, kept alive in Python until the process group is destroyed.
# torch 2.2's ``ProcessGroupGloo`` destructor runs with the GIL held and joins its worker threads;
# a worker that is still releasing a finished collective whose tensor's Python object has already
# died must take the GIL to free it, so the two wait on each other forever (pytorch#56297, fixed
# upstream only in 2025 by pytorch#154976). It was seen here: one rank hung at exit after both had
# finished, under load. If Python still holds the tensor, the worker's release is a plain
# reference decrement and needs no GIL. Bounded: a worker picks up new work only after releasing
# its previous one, so it is never dozens of collectives behind.
_RECENT_COLLECTIVE_TENSORS: collections.deque = collections.deque(maxlen=64)


def _hold_until_exit(*tensors: Tensor) -> None:
    """Keep ``tensors`` (just passed to a collective) referenced from Python (see above)."""
    _RECENT_COLLECTIVE_TENSORS.extend(tensors)


class DistOptionError(ValueError):
    """An invalid or unusable ``--device``, or an invalid ``--dist-timeout``; one line."""


class DistributedError(RuntimeError):
    """A distributed run failed (launcher environment, a dead or hung rank); one line."""


# -- the launcher's environment ----------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchEnv:
    """What the launcher (torchrun) told this process: ``rank`` of ``world_size`` processes in
    total, ``local_rank`` of ``local_world_size`` on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"environment variable {name}={text!r}: expected an integer") from None


def launch_env(environ: Optional[Mapping[str, str]] = None) -> LaunchEnv:
    """The :class:`LaunchEnv` of ``environ`` (default ``os.environ``); single process when
    ``WORLD_SIZE`` is unset. Raises :class:`DistributedError` for inconsistent values."""
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local_rank = _env_int(environ, "LOCAL_RANK", rank if world > 1 else 0)
    local_world = _env_int(environ, "LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    if not 0 <= local_rank < max(local_world, 1):
        raise DistributedError(f"LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_world}: need 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE")
    return LaunchEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


# -- devices -----------------------------------------------------------------------------------------
def check_device_name(name: Any) -> None:
    """Raise :class:`DistOptionError` unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    text = str(name)
    if text in DEVICE_CHOICES:
        return
    if text.startswith("cuda:") and text[5:].isdigit():
        return
    raise DistOptionError(f"--device={name!r}: allowed: auto, cpu, cuda, cuda:N")


def dgl_cuda_available() -> bool:
    """Can DGL put graphs on a CUDA device (a CUDA build of DGL and a visible GPU)?

    Asks DGL's runtime whether CUDA device 0 exists: microseconds, no CUDA context is created;
    PyPI's CPU-only DGL answers False.
    """
    try:
        from dgl._ffi.runtime_ctypes import DGLContext

        return bool(DGLContext(2, 0).exist)  # 2 = kDLGPU
    except Exception:  # an unusual DGL build: treat as CPU-only
        return False


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The torch device of ``--device name`` for this process.

    ``auto``: CUDA when torch sees a GPU *and* DGL has CUDA support, else CPU. ``cuda``: that, or
    a :class:`DistOptionError` saying what is missing (how to install DGL's CUDA build). Under a
    launcher (``distributed``) each rank uses ``cuda:LOCAL_RANK``; an explicit ``cuda:N`` is then
    an error.
    """
    check_device_name(name)
    name = str(name)
    if name == "cpu":
        return torch.device("cpu")
    torch_cuda = torch.cuda.is_available()
    usable = torch_cuda and dgl_cuda_available()
    if name == "auto":
        return torch.device("cuda", local_rank) if usable else torch.device("cpu")
    if not torch_cuda:
        raise DistOptionError(f"--device={name}: torch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu or auto")
    if not usable:
        raise DistOptionError(
            f"--device={name}: the installed DGL has no CUDA support (PyPI's dgl is CPU-only); install DGL's CUDA "
            f"build: {DGL_CUDA_INSTALL} (see docs/distributed.md)"
        )
    if name == "cuda":
        index = local_rank
    else:
        index = int(name[5:])
        if distributed:
            raise DistOptionError(f"--device={name}: under torchrun every rank uses cuda:LOCAL_RANK; pass --device cuda")
    if index >= torch.cuda.device_count():
        raise DistOptionError(f"--device={name}: cuda:{index} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return torch.device("cuda", index)


def move_to(obj: Any, device: torch.device) -> Any:
    """``obj`` on ``device``: tensors, DGL graphs, anything with ``.to(device)`` (e.g. a
    :class:`~graphmvp.data.collate.PretrainBatch`), tuples and lists of them recursively."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(move_to(o, device) for o in obj)
    if callable(getattr(obj, "to", None)):
        return obj.to(device)
    return obj


# -- the process group ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    ``rank`` / ``world_size`` / ``local_rank`` from the launcher; ``device`` the torch device of
    this rank; ``backend`` "gloo" | "nccl" (None for a single process); ``timeout_s`` of every
    collective. Single process: rank 0 of 1, no collectives (every helper is then a no-op).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files, logs and shows progress bars."""
        return self.rank == 0

    def describe(self) -> str:
        if not self.is_distributed:
            return f"single process on {self.device}"
        return f"rank {self.rank} of {self.world_size} ({self.backend}, {self.device}, timeout {self.timeout_s:g} s)"

    # -- collectives (no-ops for one process) ------------------------------------------------------
    def barrier(self) -> None:
        """Wait for every rank (e.g. around files rank 0 writes)."""
        if self.is_distributed:
            with communication("barrier", self):
                dist.barrier()

    def sum(self, values: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
        """Element-wise sum over ranks of a small vector, as float64 numpy (metrics, counts)."""
        local = torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(-1))
        if not self.is_distributed:
            return local.numpy()
        buffer = local.to(self.device)
        with communication("all_reduce", self):
            dist.all_reduce(buffer)
        _hold_until_exit(buffer)
        return buffer.cpu().numpy()

    def gather(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Every rank's copy of a small vector: float64 [world_size, len(values)] (rank order)."""
        local = torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(1, -1))
        if not self.is_distributed:
            return local.numpy()
        buffer = local.to(self.device)
        out = [torch.empty_like(buffer) for _ in range(self.world_size)]
        with communication("all_gather", self):
            dist.all_gather(out, buffer)
        _hold_until_exit(buffer, *out)
        return torch.cat(out).cpu().numpy()

    def all_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (pickled; small python values such as an error message), rank order."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with communication("all_gather_object", self):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for small python values)."""
        if not self.is_distributed:
            return obj
        box = [obj]
        with communication("broadcast", self):
            dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` (itself for one
        process). Buffers are not re-broadcast every step: :class:`SyncBatchNorm` and computations
        on gathered data keep them identical on every rank."""
        if not self.is_distributed:
            return module
        with communication("DistributedDataParallel setup (broadcast of rank 0's weights)", self):
            return nn.parallel.DistributedDataParallel(
                module,
                device_ids=None,
                broadcast_buffers=False,
                find_unused_parameters=find_unused_parameters,
            )

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's contiguous piece of one global batch (see :func:`shard_bounds`)."""
        start, stop = shard_bounds(len(indices), self.rank, self.world_size)
        return indices[start:stop]

    def shard_sizes(self, batch_size: int) -> list[int]:
        """The piece sizes of a global batch of ``batch_size``, rank order."""
        return shard_sizes(batch_size, self.world_size)

    def first_error(self, error: Optional[str]) -> Optional[str]:
        """The message of the first rank whose ``error`` is not None (prefixed ``rank r:`` unless
        rank 0), the same on every rank; None if no rank has one. Lets every rank raise together
        when one of them found bad input (one all-gather; ``error`` itself for one process)."""
        errors = self.all_objects(error)
        first = next(((r, e) for r, e in enumerate(errors) if e is not None), None)
        if first is None:
            return None
        rank, message = first
        return message if rank == 0 else f"rank {rank}: {message}"


SINGLE_PROCESS = DistContext()


def _backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def distributed_context(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[DistContext]:
    """The :class:`DistContext` of this process for the duration of a run.

    With ``WORLD_SIZE > 1`` in the environment: resolves the device (``cuda:LOCAL_RANK`` on
    CUDA), starts the process group (``gloo`` / ``nccl``) with ``timeout_s`` unless the caller
    started one already, and destroys it at exit if it started it. Otherwise the single-process
    context on the resolved device. Raises :class:`DistOptionError` (bad device or timeout) and :class:`DistributedError`.
    """
    if not (isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool) and math.isfinite(timeout_s)
            and timeout_s > 0):
        raise DistOptionError(f"--dist-timeout={timeout_s!r}: must be a positive number of seconds")
    env = launch_env()
    already = dist.is_available() and dist.is_initialized()
    if env.world_size == 1 and not already:
        yield DistContext(device=resolve_device(device), timeout_s=float(timeout_s))
        return
    if not dist.is_available():
        raise DistributedError(f"WORLD_SIZE={env.world_size}, but this torch build has no torch.distributed")
    if already:
        env = LaunchEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=env.local_rank,
                        local_world_size=env.local_world_size)
    resolved = resolve_device(device, env.local_rank, distributed=True)
    backend = _backend_for(resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
        # NCCL: abort the collective (and the process) when the timeout expires instead of hanging
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    ctx = DistContext(rank=env.rank, world_size=env.world_size, local_rank=env.local_rank, device=resolved,
                      backend=backend, timeout_s=float(timeout_s))
    if already:
        if dist.get_backend() != backend:
            raise DistributedError(f"the process group uses {dist.get_backend()}, but --device {resolved} needs {backend}")
        yield ctx
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DistributedError(f"WORLD_SIZE={env.world_size} but {name} is not set: launch with torchrun "
                                   "(see docs/distributed.md)")
    try:
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(seconds=float(timeout_s)))
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"rank {env.rank}/{env.world_size}: could not start the {backend} process group: "
                               f"{_first_line(e)}") from None
    try:
        yield ctx
        # leave together: a rank that tears down while another still talks to the store that
        # rank 0 hosts can leave that rank hanging at exit
        dist.barrier()
        # collectives run inside torch (all_gather_object, broadcast_object_list) make tensors we
        # cannot hold: give the gloo workers GIL-free time to release them (_hold_until_exit).
        # Not on the error path: there the launcher is about to stop this rank, and the caller's
        # one-line message must get out first.
        time.sleep(GLOO_SETTLE_S)
    finally:
        dist.destroy_process_group()
        _RECENT_COLLECTIVE_TENSORS.clear()


def record_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped in torch's ``@record`` when it runs under torchrun (``TORCHELASTIC_RUN_ID``
    set): an unexpected exception's traceback then reaches the launcher's error summary. Outside
    torchrun ``fn`` runs as is (``@record`` would also enable ``faulthandler``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "TORCHELASTIC_RUN_ID" not in os.environ:
            return fn(*args, **kwargs)
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(fn)(*args, **kwargs)

    return wrapper


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def is_communication_error(e: BaseException) -> bool:
    """Does ``e`` come from a failed collective (peer gone, timeout)?"""
    if isinstance(e, DistributedError):
        return True
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    if isinstance(e, RuntimeError):
        text = str(e).lower()
        return any(word in text for word in ("gloo", "nccl", "connection reset", "connection closed", "broken pipe"))
    return False


def raise_if_communication_error(e: BaseException, ctx: DistContext, where: str) -> None:
    """Re-raise a failed collective as a one-line :class:`DistributedError`; otherwise return."""
    if isinstance(e, DistributedError) or not (ctx.is_distributed and is_communication_error(e)):
        return
    raise DistributedError(
        f"{where}: lost contact with another rank (it died, or waited longer than "
        f"--dist-timeout {ctx.timeout_s:g} s); the other ranks' messages name the cause. {_first_line(e)}"
    ) from e


@contextmanager
def communication(where: str, ctx: DistContext) -> Iterator[None]:
    """Turn a failed collective inside the block into a :class:`DistributedError` naming ``where``."""
    try:
        yield
    except Exception as e:
        raise_if_communication_error(e, ctx, where)
        raise


# -- sharding -------------------------------------------------------------------------------------------
def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous piece of ``n`` items cut into
    ``world_size`` pieces; the first ``n % world_size`` pieces have one item more
    (``numpy.array_split``'s rule)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world_size {world_size}: need 0 <= rank < world_size")
    base, extra = divmod(int(n), world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_sizes(n: int, world_size: int) -> list[int]:
    """The sizes of the ``world_size`` pieces of ``n`` items (:func:`shard_bounds`), rank order."""
    return [b - a for a, b in (shard_bounds(n, r, world_size) for r in range(world_size))]


# -- differentiable collectives ------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """out = sum over ranks of x; grad_x = sum over ranks of grad_out (every rank uses the sum)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        _hold_until_exit(out)
        # a fresh output: autograd attaches its graph to the returned object, which must not be
        # the held one (holding it would keep whole steps' graphs alive)
        return out.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        _hold_until_exit(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable sum over ranks of ``x`` (any shape; identity for one process).

    The gradient is right for the convention of this module: each rank back-propagates its own
    loss, the objective is the sum (DDP: mean) of those losses, so the gradient flowing into
    rank ``r``'s ``x`` is the sum over ranks of the gradients at the reduced output.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (sizes known); backward: sum the gradients, keep own rows."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: tuple[int, ...], rank: int) -> Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        width = max(sizes)
        padded = x.new_zeros((width, *x.shape[1:]))
        padded[: x.shape[0]] = x
        padded = padded.contiguous()
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        _hold_until_exit(padded, *parts)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        _hold_until_exit(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def all_gather_rows(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """Differentiable all-gather of per-sample rows: every rank's ``x`` [n_r, ...] concatenated in
    rank order -> [sum(sizes), ...]. ``sizes``: n_r of every rank (known from the epoch plan; the
    pieces may differ in length). Identity for one process.

    Backward: the gradient of the gathered tensor summed over ranks, this rank's rows kept (the
    convention of :func:`all_reduce_sum`).
    """
    sizes = tuple(int(s) for s in sizes)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    rank = dist.get_rank()
    if len(sizes) != dist.get_world_size() or x.shape[0] != sizes[rank]:
        raise ValueError(f"all_gather_rows: rank {rank} has {x.shape[0]} rows, sizes {list(sizes)} "
                         f"(world size {dist.get_world_size()})")
    return _GatherRows.apply(x, sizes, rank)


#: rows per rank of the global batch being computed (set by :func:`global_batch`)
_PIECE_SIZES: contextvars.ContextVar[Optional[tuple[int, ...]]] = contextvars.ContextVar("graphmvp_piece_sizes",
                                                                                         default=None)


@contextmanager
def global_batch(sizes: Sequence[int]) -> Iterator[None]:
    """Within this block :func:`gather_pieces` concatenates every rank's rows; ``sizes``: the
    samples of each rank's piece of the global batch, rank order (a DDP training step)."""
    token = _PIECE_SIZES.set(tuple(int(s) for s in sizes))
    try:
        yield
    finally:
        _PIECE_SIZES.reset(token)


def gather_pieces(x: Tensor) -> Tensor:
    """Per-sample rows of this rank's piece [n_r, ...] -> those of the global batch [N, ...]
    inside :func:`global_batch` (differentiable, :func:`all_gather_rows`); ``x`` itself outside
    one (one process, or code run outside a training step). For 2D tasks whose loss compares the
    samples of a batch (``Task2D.global_loss``)."""
    sizes = _PIECE_SIZES.get()
    return x if sizes is None else all_gather_rows(x, sizes)


# -- synchronised batch norm ---------------------------------------------------------------------------
class SyncBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are those of the global batch (all ranks).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm1d`` (checkpoints are
    interchangeable). In training mode with a process group of more than one rank: mean and
    (biased) variance over the rows of every rank, two passes (sum, then sum of squared
    deviations), each a differentiable :func:`all_reduce_sum`, so autograd gives the gradient of
    the global statistics; running statistics updated as ``nn.BatchNorm1d`` does (unbiased
    variance, ``momentum`` or the cumulative average when None). Evaluation mode, or one
    process: exactly ``nn.BatchNorm1d``. Input [N, C] or [N, C, L]; a rank may hold N = 0 rows.

    Deviation from torch's ``SyncBatchNorm``: runs on CPU/gloo too and normalises with the
    two-pass float32 statistics instead of the fused CUDA kernels (equal within float rounding).
    """

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        if input.dim() not in (2, 3):
            raise ValueError(f"SyncBatchNorm expects [N, C] or [N, C, L], got shape {tuple(input.shape)}")
        dims = [0] if input.dim() == 2 else [0, 2]
        shape = [1, -1] if input.dim() == 2 else [1, -1, 1]
        local_count = input.numel() // input.shape[1]
        stats = torch.cat([input.sum(dim=dims), input.new_tensor([float(local_count)])])
        stats = all_reduce_sum(stats)
        count = stats[-1].detach()
        if float(count) < 2:
            raise ValueError(f"SyncBatchNorm: the global batch has {int(count)} row(s); batch norm needs 2")
        mean = stats[:-1] / count
        centred = input - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dim=dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = float(count)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.detach() * (n / (n - 1)), alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm1d`` below it replaced by a :class:`SyncBatchNorm`
    sharing its parameters and buffers (so optimisers and state dicts are unaffected)."""
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                             device=None, dtype=None)
        if module.affine:
            sync.weight = module.weight
            sync.bias = module.bias
        if module.track_running_stats:
            sync.running_mean = module.running_mean
            sync.running_var = module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


# -- random streams -------------------------------------------------------------------------------------
def stream_seed(*keys: int) -> int:
    """A 63-bit seed for the stream named by ``keys`` (independent streams per key tuple)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]) & ((1 << 63) - 1)


#: the first key of :func:`rank_local_rng`'s streams (keeps them apart from other seeds' streams)
_LOCAL_STREAM = 0x6C6F63616C


@contextmanager
def rank_local_rng(ctx: DistContext, *keys: int) -> Iterator[None]:
    """Run rank-local computations (encoders on this rank's samples: dropout) on a random stream
    of their own, seeded by ``(keys..., rank)`` (e.g. seed, step, phase), and give the global
    stream back unchanged afterwards, so that draws on the gathered batch (VRR's noise) are the
    same on every rank and equal to a single process's. A no-op for one process (its draws stay
    where they were)."""
    if not ctx.is_distributed:
        yield
        return
    devices = [ctx.device.index] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(stream_seed(_LOCAL_STREAM, *keys, ctx.rank))
        yield


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEVICE_CHOICES",
    "DGL_CUDA_INSTALL",
    "DistOptionError",
    "DistContext",
    "DistributedError",
    "LaunchEnv",
    "SINGLE_PROCESS",
    "SyncBatchNorm",
    "all_gather_rows",
    "all_reduce_sum",
    "gather_pieces",
    "global_batch",
    "check_device_name",
    "communication",
    "convert_sync_batchnorm",
    "dgl_cuda_available",
    "distributed_context",
    "is_communication_error",
    "launch_env",
    "move_to",
    "raise_if_communication_error",
    "rank_local_rng",
    "record_errors",
    "resolve_device",
    "shard_bounds",
    "shard_sizes",
    "stream_seed",
]
