"""Bounded reuse of freed memory by glibc's malloc, for the process that trains.

A process-wide setting, so the library never applies it by itself: ``graphmvp-pretrain`` (the
process owner) calls :func:`tune_malloc` when ``malloc_tuning`` is on (the default), and so do
the benchmarks; a user calling :func:`graphmvp.pretrain.pretrain` from Python may call it first.
:func:`malloc_tuned` says whether it was applied in this process (the run's log records it).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Optional

# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: blocks from this size up are mapped per allocation and unmapped on free (glibc's default
#: threshold adapts up to 32 MiB); smaller ones are reused from the heap
MALLOC_MMAP_THRESHOLD = 64 * 2**20
#: the threshold for training paths that allocate whole-edge [E, F] tensors (SchNet's plain, fused
#: and fused-bf16 paths): glibc's own adaptive maximum, so that fused-bf16's [E, 128] bf16
#: tensors (62 MiB at batch 256) are mapped per use instead of fragmenting the heap
WHOLE_EDGE_MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of a heap beyond this is returned to the system, down to MALLOC_TOP_PAD
MALLOC_TRIM_THRESHOLD = 256 * 2**20
#: free memory a heap keeps at its top after trimming (and grows by beyond a request)
MALLOC_TOP_PAD = 64 * 2**20

_APPLIED: Optional[int] = None  # the mmap threshold applied in this process


def tune_malloc(mmap_threshold: int = MALLOC_MMAP_THRESHOLD) -> bool:
    """Reuse freed memory within bounds (glibc only); True if applied.

    A training step allocates and frees the same tensors every time. glibc serves blocks above
    its mmap threshold (adaptive, at most 32 MiB) with fresh ``mmap`` calls and returns them on
    ``free``, and trims its heap whenever 128 KiB are free at the top, so every step page-faults
    its whole working set again: for schnetpack's SchNet at batch 256 that was ~2.6 M minor faults
    and ~40% of the CPU time of its forward + backward. Here:

    * blocks below ``mmap_threshold`` (:data:`MALLOC_MMAP_THRESHOLD`, 64 MiB) come from the heap
      and are reused: the default SchNet path computes its per-edge work in chunks of 16 MiB
      buffers (``--schnet-edge-chunk``), so its whole step is served from the heap;
    * larger blocks are mapped per use and given back on free: they never stay in, nor fragment,
      the heap. The paths with whole-edge tensors (plain, fused: [E, F] float32, 124 MiB at batch
      256; fused-bf16: 62 MiB) are trained with :data:`WHOLE_EDGE_MMAP_THRESHOLD` (32 MiB), see
      :func:`graphmvp.pretrain.config.malloc_mmap_threshold`: under 64 MiB fused-bf16 peaked above
      5 GB, 2x the default path;
    * a heap keeps at most :data:`MALLOC_TRIM_THRESHOLD` (256 MiB) free at its top, trimmed
      back to :data:`MALLOC_TOP_PAD` (64 MiB).

    Before, the mmap threshold was 1 GiB and heaps were never trimmed: every freed per-edge buffer
    stayed in the process (peak RSS 14 GB for ``--schnet-impl plain``, 4.5 GB for the default at
    batch 256; figures in docs/benchmarks.md). Process-wide and not undone; other platforms are
    left alone.
    """
    if not 0 < mmap_threshold <= 2**30:
        raise ValueError(f"mmap_threshold must be in (0, 1 GiB], got {mmap_threshold}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    global _APPLIED
    if all([bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))),
            bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)),
            bool(mallopt(_M_TOP_PAD, MALLOC_TOP_PAD))]):
        _APPLIED = int(mmap_threshold)
    return _APPLIED is not None


def malloc_tuned() -> bool:
    """True once :func:`tune_malloc` has been applied in this process."""
    return _APPLIED is not None


def applied_mmap_threshold() -> Optional[int]:
    """The mmap threshold (bytes) of the last :func:`tune_malloc` applied here, None before."""
    return _APPLIED


__all__ = ["MALLOC_MMAP_THRESHOLD", "MALLOC_TOP_PAD", "MALLOC_TRIM_THRESHOLD", "WHOLE_EDGE_MMAP_THRESHOLD",
           "applied_mmap_threshold", "malloc_tuned", "tune_malloc"]
