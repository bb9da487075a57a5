"""Masked-node prediction as a 2D task (objective ``attrmask``): AttrMask (Hu et al. 2020) and the
variants of the masking-design study (Yang, Thost, Ma, arXiv 2512.07064): where to mask
(``mask_dist``), what to predict (``target``), how to decode (``decoder``, ``decoder_loss``).
Formulas, defaults and deviations: ``docs/masking_study.md``.

Two input paths, one result:

* the exact AttrMask setting (uniform masking, Hu et al.'s ``int(rate * n + 1)`` count, atom-type
  target) uses the dataset's built-in AttrMask inputs (``batch.attrmask_*``), as before the study
  axes existed;
* every other setting uses the sample transform :class:`MaskedNodeInputs` (payload
  ``batch.extras["masked_nodes"]``): per-atom target classes, and either the masked atoms
  (uniform, pagerank: chosen per sample from the sample's generator) or, for learnable masking,
  the random keys from which the training step chooses them with the scorer's scores.

The step: mask the chosen atoms (type 119, chirality 0), encode the masked graph with the 2D
encoder (GIN or GraphGPS), and hand the node representations to the objective
(:class:`graphmvp.objectives.attrmask.MaskedNodePrediction`), with the scorer's scores for
learnable masking (they weight the unmasked atoms' representations).

Task options (``--opt NAME=VALUE``): ``mask_count`` ("auto" | "hu" | "ceil", see
:data:`graphmvp.data.mask_distributions.MASK_COUNTS`), ``pagerank_alpha`` (0.25),
``pagerank_damping`` (0.85), ``learnable_alpha`` (0.5), ``curriculum`` (true), ``sce_gamma`` (1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from graphmvp.data.mask_distributions import (
    AUTO_COUNT,
    MaskDistribution,
    build_mask_distribution,
    structure_guided_mask,
)
from graphmvp.data.mask_targets import MaskTarget, build_mask_target
from graphmvp.molgraph import MASK_ATOM_TYPE, MolGraph
from graphmvp.objectives.attrmask import MaskedNodePrediction
from graphmvp.pretrain.presets import HU_BASELINE
from graphmvp.pretrain.tasks.base import Task2D

NAME = "attrmask"
#: key of the transform's payload in ``batch.extras``
MASKED_NODES = "masked_nodes"


@dataclass(frozen=True)
class MaskedNodeOptions:
    """The task's options and their defaults (StructMAE's alphas, GraphMAE's gamma)."""

    mask_count: str = AUTO_COUNT
    pagerank_alpha: float = 0.25
    pagerank_damping: float = 0.85
    learnable_alpha: float = 0.5
    curriculum: bool = True
    sce_gamma: float = 1.0


# -- per-sample inputs ----------------------------------------------------------------------------
@dataclass
class MaskedNodeBatch:
    """The masked-node inputs of a batch (N atoms, B samples, M masked atoms).

    ``target`` int64 [N]: class of every atom; ``num_nodes`` int64 [B]. Dataset-chosen masks:
    ``index`` int64 [M] (sorted batch node ids). Learnable masking instead: ``noise`` /
    ``tiebreak`` float64 [N] (random keys), ``num_mask`` / ``num_boost`` int64 [B].
    """

    target: torch.Tensor
    num_nodes: torch.Tensor
    index: Optional[torch.Tensor] = None
    noise: Optional[torch.Tensor] = None
    tiebreak: Optional[torch.Tensor] = None
    num_mask: Optional[torch.Tensor] = None
    num_boost: Optional[torch.Tensor] = None


@dataclass
class MaskedNodeSample:
    """The masked-node inputs of one sample (n atoms): ``target`` int64 [n]; either ``index``
    int64 [m] (masked atoms) or the learnable-masking keys ``noise`` / ``tiebreak`` float64 [n]
    with the counts ``num_mask`` and ``num_boost``."""

    target: np.ndarray
    index: Optional[np.ndarray] = None
    noise: Optional[np.ndarray] = None
    tiebreak: Optional[np.ndarray] = None
    num_mask: int = 0
    num_boost: int = 0

    @staticmethod
    def collate(payloads: list["MaskedNodeSample"], layout) -> MaskedNodeBatch:
        batch = MaskedNodeBatch(
            target=torch.from_numpy(np.concatenate([p.target for p in payloads]).astype(np.int64, copy=False)),
            num_nodes=torch.from_numpy(np.asarray(layout.num_nodes, dtype=np.int64)),
        )
        if payloads[0].index is not None:
            counts = np.array([p.index.shape[0] for p in payloads], dtype=np.int64)
            shift = np.repeat(np.asarray(layout.node_offset, dtype=np.int64), counts)
            batch.index = torch.from_numpy(np.concatenate([p.index for p in payloads]).astype(np.int64) + shift)
        else:
            batch.noise = torch.from_numpy(np.concatenate([p.noise for p in payloads]))
            batch.tiebreak = torch.from_numpy(np.concatenate([p.tiebreak for p in payloads]))
            batch.num_mask = torch.tensor([p.num_mask for p in payloads], dtype=torch.int64)
            batch.num_boost = torch.tensor([p.num_boost for p in payloads], dtype=torch.int64)
        return batch


class MaskedNodeInputs:
    """Sample transform of masked-node prediction: the target classes of the sample's atoms and
    where to mask (all randomness from the sample's generator).

    Args:
        distribution: a :class:`~graphmvp.data.mask_distributions.MaskDistribution`.
        target: a :class:`~graphmvp.data.mask_targets.MaskTarget`.
    """

    name = MASKED_NODES

    def __init__(self, distribution: MaskDistribution, target: MaskTarget):
        self.distribution = distribution
        self.target = target

    def __repr__(self) -> str:
        return f"MaskedNodeInputs({self.distribution!r}, {self.target!r})"

    def __call__(self, graph: MolGraph, rng: np.random.Generator, info) -> MaskedNodeSample:
        target = self.target.labels(graph, info)
        n = graph.num_atoms
        if self.distribution.needs_scorer:
            noise, tiebreak = self.distribution.draw(n, rng)
            return MaskedNodeSample(target, noise=noise, tiebreak=tiebreak, num_mask=self.distribution.count(n),
                                    num_boost=self.distribution.boost(n, info.epoch))
        return MaskedNodeSample(target, index=self.distribution.sample(graph, rng, info.epoch))


# -- configuration -----------------------------------------------------------------------------
def _options_of(cfg) -> MaskedNodeOptions:
    """The config's options of this task (the defaults when its 2D task is another one)."""
    return METHOD.resolve_options(cfg.options) if cfg.objective("2d") == NAME else MaskedNodeOptions()


def _distribution(cfg, options: MaskedNodeOptions) -> MaskDistribution:
    alpha = {"pagerank": options.pagerank_alpha, "learnable": options.learnable_alpha}.get(cfg.mask_dist)
    return build_mask_distribution(
        cfg.mask_dist, cfg.attrmask_rate, count=options.mask_count, alpha=alpha,
        curriculum=options.curriculum, total_epochs=int(cfg.epochs), damping=options.pagerank_damping,
    )


def _builtin(cfg, options: MaskedNodeOptions) -> bool:
    return cfg.target == "atom" and cfg.mask_dist == "uniform" and _distribution(cfg, options).count_rule == "hu"


def mask_distribution(cfg) -> MaskDistribution:
    """The masking distribution a config describes (rate, count, alpha, curriculum, E)."""
    return _distribution(cfg, _options_of(cfg))


def uses_builtin_attrmask(cfg) -> bool:
    """True for exactly Hu et al.'s AttrMask (uniform, ``hu`` count, atom target): the dataset's
    built-in AttrMask inputs serve it."""
    return _builtin(cfg, _options_of(cfg))


def _dataset_options(cfg, options: MaskedNodeOptions) -> dict[str, Any]:
    if _builtin(cfg, options):
        return {"attrmask": True, "attrmask_rate": cfg.attrmask_rate}
    return {"transforms": [MaskedNodeInputs(_distribution(cfg, options), build_mask_target(cfg.target, cfg.store))]}


def _objective_args(cfg, options: MaskedNodeOptions) -> dict[str, Any]:
    """:class:`MaskedNodePrediction`'s arguments: the study's axes are config fields, the
    scaled-cosine gamma and the learnable boost are task options."""
    return {
        "emb_dim": cfg.emb_dim,
        "target": cfg.target,
        "store": cfg.store,
        "decoder": cfg.decoder,
        "decoder_loss": cfg.decoder_loss,
        "sce_gamma": options.sce_gamma,
        "mask_dist": cfg.mask_dist,
        "learnable_alpha": options.learnable_alpha,
    }


# -- the step ----------------------------------------------------------------------------------------
def learnable_mask(scores: torch.Tensor, inputs: MaskedNodeBatch, alpha: float) -> torch.Tensor:
    """StructMAE-L's masked atoms of a batch from the scorer's ``scores`` [N] and the drawn keys
    (:func:`~graphmvp.data.mask_distributions.structure_guided_mask`): sorted int64 [M]."""
    index = structure_guided_mask(
        scores.detach().double().cpu().numpy(), inputs.noise.cpu().numpy(), inputs.tiebreak.cpu().numpy(),
        inputs.num_nodes.cpu().numpy(), inputs.num_boost.cpu().numpy(), inputs.num_mask.cpu().numpy(), alpha,
    )
    return torch.from_numpy(index).to(scores.device)


def _run(model, objective, batch):
    graph = batch.graph_2d
    inputs: Optional[MaskedNodeBatch] = batch.extras.get(MASKED_NODES)
    if inputs is None:
        if batch.attrmask_atom is None:
            raise ValueError("the batch has no masked-node inputs: build the dataset with the attrmask task's "
                             "dataset_options (attrmask=True or its masked_nodes transform)")
        node_reps = model.encoder_2d(graph, atom=batch.attrmask_atom, bond=batch.attrmask_bond)
        return objective(node_reps, batch.attrmask_index, batch.attrmask_label, graph=graph, bond=batch.attrmask_bond)
    scores = None
    if objective.scorer is not None:
        if inputs.noise is None:
            raise ValueError("the objective masks with a learned scorer, but the batch's masked_nodes inputs come from "
                             "a fixed distribution (dataset and model built from different configs?)")
        scores = objective.scorer(graph)
        index = learnable_mask(scores, inputs, objective.learnable_alpha)
    else:
        if inputs.index is None:
            raise ValueError("the batch's masked_nodes inputs are for learnable masking, but the objective has no scorer")
        index = inputs.index
    atom = graph.ndata["atom"].clone()
    atom[index, 0] = MASK_ATOM_TYPE
    atom[index, 1] = 0
    node_reps = model.encoder_2d(graph, atom=atom)
    return objective(node_reps, index, inputs.target[index], graph=graph, node_weight=scores)


def _masked_atoms(batch) -> int:
    """The loss is a mean over the masked atoms."""
    inputs = batch.extras.get(MASKED_NODES)
    if inputs is None:  # Hu et al.'s setting: the dataset's built-in AttrMask inputs
        return int(batch.attrmask_index.numel())
    if inputs.index is not None:
        return int(inputs.index.numel())
    return int(inputs.num_mask.sum())  # learnable masking: the step picks num_mask atoms per sample


# -- presets -------------------------------------------------------------------------------------
_STRUCTMAE = {**HU_BASELINE, "loss": (NAME,), "attrmask_rate": 0.5, "decoder": "gnn", "decoder_loss": "sce"}
_PRESETS: dict[str, dict[str, Any]] = {
    # Hu et al. 2020 (pretrain-gnns): 15% of the atoms, linear head, cross-entropy; whole molecules
    NAME: {**HU_BASELINE, "loss": (NAME,)},
    # StructMAE (Liu et al., "Where to Mask: Structure-Guided Masking for Graph Masked Autoencoders",
    # IJCAI 2024), the defaults of its chem pretraining scripts: mask rate 0.5, alpha 0.25 (PageRank)
    # or 0.5 (learnable scorer), curriculum, GraphMAE's re-mask GIN decoder with the scaled cosine
    # error (gamma = alpha_l = 1), 5 x 300 GIN, batch 256, 100 epochs, Adam lr 1e-3, no weight decay.
    "structmae-p": {**_STRUCTMAE, "mask_dist": "pagerank",
                    "options": {"pagerank_alpha": 0.25, "curriculum": True, "sce_gamma": 1.0}},
    "structmae-l": {**_STRUCTMAE, "mask_dist": "learnable",
                    "options": {"learnable_alpha": 0.5, "curriculum": True, "sce_gamma": 1.0}},
    # GraphMAE (Hou et al., KDD 2022), chem/pretraining.py defaults: mask rate 0.25 (Hu et al.'s
    # int(rate * n + 1) atoms), re-mask decoder (one GIN layer), SCE on the one-hot atom type with
    # alpha_l = 1, 5 x 300 GIN, batch 256, 100 epochs, lr 1e-3.
    "graphmae": {**HU_BASELINE, "loss": (NAME,), "attrmask_rate": 0.25, "decoder": "gnn",
                 "decoder_loss": "sce", "options": {"sce_gamma": 1.0}},
    # The masking-design study's motif target (Yang, Thost, Ma, arXiv 2512.07064) under AttrMask's
    # protocol: uniform masking at 0.15, linear head, cross-entropy over the motif vocabulary. The
    # study's own masking rate and head are not public [unconfirmed]; these are Hu et al.'s.
    "motif-mae": {**HU_BASELINE, "loss": (NAME,), "target": "motif"},
}

METHOD = Task2D(
    name=NAME,
    objective=MaskedNodePrediction,
    objective_args=_objective_args,
    options=MaskedNodeOptions,
    dataset_options=_dataset_options,
    run=_run,
    presets=_PRESETS,
    describe="masked-node prediction: AttrMask (Hu et al. 2020) and the masking-design study's variants",
    item_count=_masked_atoms,
)
METHODS = (METHOD,)

__all__ = [
    "MASKED_NODES",
    "MaskedNodeBatch",
    "MaskedNodeInputs",
    "MaskedNodeOptions",
    "MaskedNodeSample",
    "METHOD",
    "METHODS",
    "learnable_mask",
    "mask_distribution",
    "uses_builtin_attrmask",
]
