"""Recompute a block in the backward pass instead of keeping its intermediates (activation
checkpointing), the memory bound of SchNet's "plain" and "fused" paths.

A SchNet interaction at batch 256 (about 250,000 edges, 128 filters) makes several [E, F]
intermediates of 130 MB each that autograd keeps for the backward: about 4 per interaction on
the plain path (schnetpack's pre-activation, activation, cut filter and gathered ``x[idx_j]``),
3 on the fused one, so 2-3 GB over six interactions before anything else (issue 12; figures in
docs/benchmarks.md). :func:`recomputed` keeps only the block's inputs (per node [N, D], plus the
shared per-edge expansion that is kept anyway) and runs the block's forward again when its
gradients are needed, so at most one interaction's intermediates are alive at a time. The cost is
one more forward of the block per step.

The recomputed forward performs the same operations on the same inputs, so outputs and gradients
are bit-equal to the kept-intermediates computation on CPU (tested in tests/test_memory_bounds.py).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint


def recomputed(block: Callable[..., torch.Tensor], *args) -> torch.Tensor:
    """``block(*args)``, with autograd keeping only ``args`` (not the block's intermediates) and
    recomputing the block in the backward. Without grad mode (evaluation, embedding) it is a
    plain call."""
    if not torch.is_grad_enabled():
        return block(*args)
    return checkpoint(block, *args, use_reentrant=False)
