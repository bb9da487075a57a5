"""GPT-GNN (Hu et al., KDD 2020) as a 2D task: generate the next atom's type along a BFS order.

Per sample (its 2D graph ``G`` with n atoms, after GraphMVP's subgraph mask when there is one),
drawing from the sample's generator in this order:

1. a start atom ``s`` uniform in 0..n-1;
2. the BFS order from ``s`` (:func:`bfs_order`): a FIFO queue, each atom's unvisited neighbours
   appended in ascending atom id; when the queue runs dry before all atoms are visited (a
   disconnected graph: a salt, or a subgraph-masked view) the next atom is drawn uniformly from
   the unvisited ones and the search goes on from it;
3. ``min(prefixes, n - 1)`` distinct prefix lengths k uniform in 1..n-1 (sorted). For each k the
   generation step is "atom ``order[k]`` given atoms ``order[:k]``":

   * ``context="node"`` (GPT-GNN's attribute-generation node, the default): the induced
     subgraph on ``order[:k+1]`` with atoms in BFS order (graph atom i = ``order[i]``), the last
     atom's features set to the mask token (type 119, chirality 0) and its true bonds to the
     prefix kept; the head reads that atom's representation;
   * ``context="graph"``: the induced subgraph on ``order[:k]``; the head reads its pooled
     representation (``model.pooling``), so the bonds of the atom to generate are not seen.

   The label is ``order[k]``'s type index (Z - 1).

A sample with a single atom has no generation step; a batch without any has no GPT-GNN term.
Hydrogens: in a store that keeps explicit hydrogens they are atoms of the order like any other.

Options (``--opt``): ``prefixes`` (generation steps per molecule and epoch; default 1: each
step encodes its own prefix graph, about half a molecule on average, so the encoder cost per
batch is about ``prefixes / 2`` times a pass over the whole batch) and ``context``.

Preset ``gpt-gnn``: Hu et al.'s 2D protocol (``HU_BASELINE``: 100 epochs, batch 256, lr 1e-3,
whole molecules): GPT-GNN has no molecular release of its own; the molecular baseline of
GraphMVP's table was trained with the pretraining settings shared by the 2D baselines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch

from graphmvp.data.collate import batch_mol_graphs
from graphmvp.data.masking import induced_subgraph, neighbor_lists
from graphmvp.models import graph_readout
from graphmvp.molgraph import MASK_ATOM_TYPE, MolGraph
from graphmvp.objectives.gptgnn import GPTGNNAttributeGeneration
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import Task2D

NAME = "gpt-gnn"
#: where the generated atom's representation comes from
CONTEXTS = ("node", "graph")


@dataclass(frozen=True)
class GPTGNNOptions:
    """GPT-GNN's options and their defaults (module docstring)."""

    prefixes: int = 1
    context: str = "node"


def bfs_order(num_atoms: int, edge_index: np.ndarray, start: int, rng: np.random.Generator) -> np.ndarray:
    """Breadth-first order of all ``num_atoms`` atoms from ``start`` (int64 [n]).

    Unvisited neighbours are queued in ascending atom id. When the queue is empty and atoms are
    left (several connected components), the next atom is drawn uniformly from the unvisited
    ones with ``rng`` (no draw for a connected graph).
    """
    if not 0 <= start < num_atoms:
        raise ValueError(f"start atom {start} out of range for {num_atoms} atoms")
    nbrs = [sorted(a) for a in neighbor_lists(num_atoms, edge_index)]
    visited = [False] * num_atoms
    order: list[int] = []
    queue = deque([start])
    visited[start] = True
    while True:
        while queue:
            atom = queue.popleft()
            order.append(atom)
            for b in nbrs[atom]:
                if not visited[b]:
                    visited[b] = True
                    queue.append(b)
        if len(order) == num_atoms:
            return np.array(order, dtype=np.int64)
        rest = [a for a in range(num_atoms) if not visited[a]]
        jump = rest[int(rng.integers(len(rest)))]
        visited[jump] = True
        queue.append(jump)


@dataclass
class GenerationSteps:
    """The GPT-GNN inputs of one sample (P generation steps).

    ``graphs``: P prefix graphs (see the module docstring); ``target`` [P] int64: index in each
    graph of the masked atom to generate (``context="node"``) or None (``context="graph"``);
    ``label`` [P] int64: its true type index; ``order`` [n] int64: the BFS order (graph atom ids
    of the sample), ``lengths`` [P] int64: the prefix lengths k.
    """

    graphs: list[MolGraph]
    target: Optional[np.ndarray]
    label: np.ndarray
    order: np.ndarray
    lengths: np.ndarray

    @staticmethod
    def collate(payloads: list["GenerationSteps"], layout) -> "GenerationBatch":
        graphs = [g for p in payloads for g in p.graphs]
        sample = np.repeat(np.arange(len(payloads), dtype=np.int64), [len(p.graphs) for p in payloads])
        if not graphs:
            return GenerationBatch(graph=None, target=None, label=torch.zeros(0, dtype=torch.int64),
                                   sample=torch.from_numpy(sample))
        graph = batch_mol_graphs(graphs)
        target = None
        if payloads[0].target is not None:
            sizes = np.array([g.num_atoms for g in graphs], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            local = np.concatenate([p.target for p in payloads]).astype(np.int64)
            target = torch.from_numpy(local + starts)
        label = torch.from_numpy(np.concatenate([p.label for p in payloads]).astype(np.int64))
        return GenerationBatch(graph=graph, target=target, label=label, sample=torch.from_numpy(sample))


@dataclass
class GenerationBatch:
    """Batch form: ``graph`` (batched prefix graphs, P graphs; None without any step),
    ``target`` [P] int64 node ids in ``graph`` of the atoms to generate (None for
    ``context="graph"``), ``label`` [P] int64, ``sample`` [P] int64 (position in the batch of
    each step's sample)."""

    graph: Any
    target: Optional[torch.Tensor]
    label: torch.Tensor
    sample: torch.Tensor


class NextAtomSteps:
    """Sample transform: the GPT-GNN generation steps of a sample (module docstring)."""

    name = NAME

    def __init__(self, prefixes: int = 1, context: str = "node"):
        if isinstance(prefixes, bool) or not isinstance(prefixes, int) or prefixes < 1:
            raise ValueError(f"gpt-gnn option prefixes={prefixes!r}: must be an integer >= 1")
        if context not in CONTEXTS:
            raise ValueError(f"gpt-gnn option context={context!r}: allowed: {', '.join(CONTEXTS)}")
        self.prefixes = prefixes
        self.context = context

    def __repr__(self) -> str:
        return f"NextAtomSteps(prefixes={self.prefixes}, context={self.context!r})"

    def __call__(self, graph: MolGraph, rng: np.random.Generator, info: Any = None) -> GenerationSteps:
        n = graph.num_atoms
        node = self.context == "node"
        if n < 2:
            empty = np.zeros(0, dtype=np.int64)
            return GenerationSteps([], empty if node else None, empty, np.arange(n, dtype=np.int64), empty)
        start = int(rng.integers(n))
        order = bfs_order(n, graph.edge_index, start, rng)
        lengths = np.sort(rng.choice(n - 1, size=min(self.prefixes, n - 1), replace=False) + 1).astype(np.int64)
        graphs = []
        for k in lengths.tolist():
            if node:
                sub = induced_subgraph(graph, order[: k + 1])
                atom = sub.atom_features.copy()
                atom[k, 0] = MASK_ATOM_TYPE
                atom[k, 1] = 0
                graphs.append(sub.with_atom_features(atom))
            else:
                graphs.append(induced_subgraph(graph, order[:k]))
        label = graph.atom_features[order[lengths], 0].astype(np.int64)
        return GenerationSteps(graphs, lengths.copy() if node else None, label, order, lengths)


def _dataset_options(cfg, options: GPTGNNOptions) -> dict[str, Any]:
    return {"transforms": [NextAtomSteps(prefixes=options.prefixes, context=options.context)]}


def _objective_args(cfg, options: GPTGNNOptions) -> dict[str, Any]:
    """The head over the encoder's width (its class count, 119 atom types, is the objective's);
    the options shape the transform's steps only."""
    return {"emb_dim": cfg.emb_dim}


def _run(model, objective, batch):
    steps: GenerationBatch = batch.extras.get(NAME)
    if steps is None:
        raise ValueError("the batch has no GPT-GNN inputs: build the dataset with the gpt-gnn task's transforms")
    if steps.graph is None:
        return None, {}
    node_reps = model.encoder_2d(steps.graph)
    if steps.target is not None:
        reps = node_reps[steps.target]
    else:
        reps = graph_readout(steps.graph, node_reps, model.pooling)
    return objective(reps, steps.label)


METHOD = Task2D(
    name=NAME,
    objective=GPTGNNAttributeGeneration,
    objective_args=_objective_args,
    options=GPTGNNOptions,
    dataset_options=_dataset_options,
    run=_run,
    # GPT-GNN has no molecular release; Hu et al.'s 2D-baseline protocol (100 epochs, batch 256,
    # lr 1e-3), as for the other 2D baselines of GraphMVP's table (Liu et al. 2022, Table 1).
    presets={NAME: {**HU_BASELINE, "loss": (NAME,), "options": asdict(GPTGNNOptions())}},
    describe="next atom type along a BFS order (GPT-GNN, Hu et al. 2020)",
    item_count=lambda batch: int(batch.extras[NAME].label.numel()),  # a mean over the generated atoms
)
METHODS = (METHOD,)

__all__ = ["CONTEXTS", "GPTGNNOptions", "GenerationBatch", "GenerationSteps", "METHOD", "METHODS", "NextAtomSteps",
           "bfs_order"]
