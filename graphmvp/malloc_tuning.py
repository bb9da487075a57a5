"""Bounded reuse of freed memory by glibc's malloc, for the process that trains.

A process-wide setting, so the library never applies it by itself: ``graphmvp-pretrain`` (the
process owner) calls :func:`tune_malloc` when ``malloc_tuning`` is on (the default), and so do
the benchmarks; a user calling :func:`graphmvp.pretrain.pretrain` from Python may call it first.
:func:`malloc_tuned` says whether it was applied in this process (the run's log records it).
"""

from __future__ import annotations

import ctypes
import sys

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

_APPLIED = False


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
    global _APPLIED
    _APPLIED = all([bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)),
                    bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)),
                    bool(mallopt(_M_TOP_PAD, MALLOC_TOP_PAD))]) or _APPLIED
    return _APPLIED


def malloc_tuned() -> bool:
    """True once :func:`tune_malloc` has been applied in this process."""
    return _APPLIED


__all__ = ["MALLOC_MMAP_THRESHOLD", "MALLOC_TOP_PAD", "MALLOC_TRIM_THRESHOLD", "malloc_tuned", "tune_malloc"]
