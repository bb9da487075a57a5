"""Graph-level readout: pool node representations [N, D] of a (batched) graph to [B, D]."""

from __future__ import annotations

import dgl
import torch

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is used)

# readout mode -> the ``op`` of :func:`dgl.readout_nodes`
READOUTS: dict[str, str] = {"mean": "mean", "sum": "sum", "max": "max"}


def graph_readout(g: dgl.DGLGraph, h: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool node representations per graph.

    Args:
        g: DGLGraph, possibly a batch of B graphs (``dgl.batch``), N nodes in total.
        h: float [N, D] node representations in the node order of ``g``.
        mode: one of ``READOUTS`` ("mean", "sum", "max").

    Returns:
        float [B, D] (B = ``g.batch_size``; 1 for an unbatched graph).
    """
    if mode not in READOUTS:
        raise ValueError(f"unknown readout mode {mode!r}; allowed: {', '.join(READOUTS)}")
    if h.shape[0] != g.num_nodes():
        raise ValueError(
            f"node representations have {h.shape[0]} rows but the graph has {g.num_nodes()} nodes"
        )
    with g.local_scope():
        g.ndata["_readout_h"] = h
        return dgl.readout_nodes(g, "_readout_h", op=READOUTS[mode])
