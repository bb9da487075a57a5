"""The order of the samples in an epoch, cut into global batches, and each rank's piece of them.

:func:`epoch_batches` gives the :class:`EpochPlan` of one epoch: a permutation of the samples
seeded from ``(seed, epoch)`` (:func:`epoch_seed`), cut into batches of ``batch_size``. Every rank
computes the same plan; :meth:`EpochPlan.shard` gives rank ``r`` its contiguous piece of each
batch (:class:`RankPieces`), what that rank's DataLoader loads.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from graphmvp.distributed import shard_bounds, shard_sizes


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



__all__ = ["EpochPlan", "RankPieces", "epoch_batches", "epoch_seed"]
