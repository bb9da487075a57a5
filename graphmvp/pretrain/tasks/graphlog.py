"""GraphLoG (Xu et al., ICML 2021) as a 2D task: the loss is :class:`graphmvp.objectives.graphlog.GraphLoG`.

Per batch: the encoder runs on the batch's 2D graph and on its masked view (the dataset's
AttrMask inputs with rate ``mask_rate`` = 0.3: ``int(0.3 n + 1)`` atoms set to type 119,
chirality 0, bonds untouched, as GraphLoG's release), both are pooled with ``model.pooling``,
and the objective gets the node and graph representations of both views. Combined with the 3D
terms the 2D graph is GraphMVP's subgraph-masked view and the original-view pass is a second
encoder pass over it (the contrastive term's pass is not shared).

Prototype schedule: the prototypes are initialised once, before the first epoch with index
``>= local_epochs`` (default 1: after one epoch of local terms only, as the release): by the
``end_epoch`` hook of the last local epoch (so that its checkpoint holds them), or by
``begin_epoch`` for ``local_epochs=0``; never again once the objective's state says they exist
(also after ``--resume``). Both hooks seed the initialisation with (dataset seed, index of the
first global epoch), so either gives the same prototypes. The initialisation encodes the store's whole
molecules (not the subgraph-masked views), ``init_batch_size`` at a time, in a seeded order per
pass (``init_molecules`` > 0: a seeded subset), with the encoder and projection in eval mode;
its cost is ``init_passes`` (5) forward passes over the data, once per run.

Preset ``graphlog``: the release's defaults (DeepGraphLearning/GraphLoG ``pretrain_graphlog.py``):
batch 512, lr 1e-3, no weight decay, 1 local + 10 global epochs = 11 epochs, GIN 5 x 300, mean
pooling, no dropout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch

from graphmvp.data.collate import batch_mol_graphs
from graphmvp.models import graph_readout
from graphmvp.objectives.graphlog import GraphLoG
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import Task2D

NAME = "graphlog"


@dataclass(frozen=True)
class GraphLoGOptions:
    """GraphLoG's options and their defaults (the release's ``pretrain_graphlog.py``)."""

    mask_rate: float = 0.3
    tau: float = 0.04
    num_prototypes: int = 50
    hierarchy: int = 3
    decay_ratio: float = 0.95
    w_node: float = 1.0
    w_graph: float = 1.0
    w_proto: float = 0.1
    node_positive: str = "counterpart"
    local_epochs: int = 1
    init_passes: int = 5
    init_batch_size: int = 512
    init_molecules: int = 0
    rpcl_rounds: int = 20


def _dataset_options(cfg, options: GraphLoGOptions) -> dict[str, Any]:
    rate = options.mask_rate
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"graphlog option mask_rate={rate!r}: must be in (0, 1]")
    return {"attrmask": True, "attrmask_rate": rate}


def _objective_args(cfg, options: GraphLoGOptions) -> dict[str, Any]:
    """Every option but ``mask_rate`` (the dataset's) is a :class:`GraphLoG` argument."""
    return {
        "emb_dim": cfg.emb_dim,
        "tau": options.tau,
        "num_prototypes": options.num_prototypes,
        "hierarchy": options.hierarchy,
        "decay_ratio": options.decay_ratio,
        "w_node": options.w_node,
        "w_graph": options.w_graph,
        "w_proto": options.w_proto,
        "node_positive": options.node_positive,
        "local_epochs": options.local_epochs,
        "init_passes": options.init_passes,
        "init_batch_size": options.init_batch_size,
        "init_molecules": options.init_molecules,
        "rpcl_rounds": options.rpcl_rounds,
    }


def _run(model, objective, batch):
    if batch.attrmask_atom is None:
        raise ValueError("the batch has no masked view: build the dataset with the graphlog task's options (attrmask=True)")
    graph = batch.graph_2d
    node_reps = model.encoder_2d(graph)
    masked_node_reps = model.encoder_2d(graph, atom=batch.attrmask_atom, bond=batch.attrmask_bond)
    graph_reps = graph_readout(graph, node_reps, model.pooling)
    masked_graph_reps = graph_readout(graph, masked_node_reps, model.pooling)
    sizes = graph.batch_num_nodes()
    node_graph = torch.repeat_interleave(torch.arange(sizes.shape[0], device=sizes.device), sizes)
    return objective(node_reps, masked_node_reps, graph_reps, masked_graph_reps, node_graph, batch.attrmask_index)


def _init_seed(dataset_seed: int, epoch: int, part: int) -> int:
    """A seed per (dataset seed, first global epoch, part): 0 subset, 1 start vectors, 2 + p pass p."""
    return int(np.random.SeedSequence([int(dataset_seed), int(epoch), 9137, int(part)]).generate_state(1)[0])


def molecule_batches(model, store, ids: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """Pooled 2D representations [b, D] of the molecules ``store[ids]``, ``batch_size`` at a
    time (whole molecules; no grad; the caller sets eval mode)."""
    device = next(model.parameters()).device
    for start in range(0, ids.shape[0], batch_size):
        g = batch_mol_graphs([store[int(i)] for i in ids[start : start + batch_size]]).to(device)
        yield graph_readout(g, model.encoder_2d(g), model.pooling)


def initialize_prototypes(model, objective, dataset, epoch: int) -> None:
    """GraphLoG's prototype initialisation over the dataset's molecules (module docstring)."""
    store = dataset.store
    seed = getattr(dataset, "seed", 0)
    ids = np.arange(len(store), dtype=np.int64)
    if 0 < objective.init_molecules < ids.shape[0]:
        ids = np.sort(np.random.default_rng(_init_seed(seed, epoch, 0)).choice(ids, objective.init_molecules, replace=False))

    def passes(p: int) -> Iterator[torch.Tensor]:
        order = np.random.default_rng(_init_seed(seed, epoch, 2 + p)).permutation(ids)
        return molecule_batches(model, store, order, objective.init_batch_size)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            objective.initialize_prototypes(passes, torch.Generator().manual_seed(_init_seed(seed, epoch, 1)))
    finally:
        model.train(was_training)


def _begin_epoch(model, objective, dataset, epoch: int) -> None:
    """Before epoch ``epoch``: initialise the prototypes if the global phase starts now and
    they do not exist yet (``local_epochs=0``, or a trainer that ran no ``end_epoch``)."""
    if not objective.prototypes_ready and epoch >= objective.local_epochs:
        initialize_prototypes(model, objective, dataset, epoch)


def _end_epoch(model, objective, dataset, epoch: int) -> None:
    """After epoch ``epoch``: initialise the prototypes when it was the last local epoch, so that
    the checkpoint of that epoch holds them."""
    if not objective.prototypes_ready and epoch + 1 >= objective.local_epochs:
        initialize_prototypes(model, objective, dataset, epoch + 1)


METHOD = Task2D(
    name=NAME,
    objective=GraphLoG,
    objective_args=_objective_args,
    options=GraphLoGOptions,
    dataset_options=_dataset_options,
    run=_run,
    begin_epoch=_begin_epoch,
    end_epoch=_end_epoch,
    # DeepGraphLearning/GraphLoG pretrain_graphlog.py defaults: batch 512, lr 1e-3, decay 0,
    # local_epochs 1 + global_epochs 10 (Xu et al., ICML 2021).
    presets={NAME: {**HU_BASELINE, "loss": (NAME,), "epochs": 11, "batch_size": 512,
                    "options": asdict(GraphLoGOptions())}},
    describe="masked-view contrast + hierarchical prototypes (GraphLoG, Xu et al. 2021)",
    in_batch=True,
)
METHODS = (METHOD,)

__all__ = ["GraphLoGOptions", "METHOD", "METHODS", "initialize_prototypes", "molecule_batches"]
