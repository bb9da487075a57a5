"""The pretraining module: 2D encoder, 3D encoder, objectives, and the total loss of a batch.

Per batch (``B`` samples, ``N`` atoms; the graphs of :class:`graphmvp.data.collate.PretrainBatch`)::

    z2d = pool(encoder_2d(graph_2d))             [B, D]   GIN node reps [N, D], pooled (mean)
    z3d = mean(encoder_3d(graph_3d))             [B, D]   SchNet atom reps [N, D], mean over atoms
    total = alpha1 * contrastive(z2d, z3d)       (EBM-NCE | InfoNCE)
          + alpha2 * generative(z2d, z3d)        (VRR | RR; to_3d and to_2d models)
          + alpha3 * task_2d(batch)              (AttrMask | ContextPred)

The compared vectors are the pooled encoder outputs themselves (no projection head), so SchNet's
hidden size is the GIN's ``emb_dim``. Encoders come from :data:`graphmvp.models.ENCODERS`,
objectives from :data:`graphmvp.objectives.OBJECTIVES`; how an objective is called depends on its
``kind`` (:data:`KIND_CALLERS`), and a 2D task's inputs and loss come from its
:class:`~graphmvp.pretrain.tasks.Task2D` in :data:`~graphmvp.pretrain.tasks.TASKS_2D` (one module
per task in :mod:`graphmvp.pretrain.tasks`: attrmask, contextpred, ...).

Constructor arguments of encoders and objectives are taken by name from the config
(:func:`encoder_kwargs`, :func:`objective_kwargs`): each registered class receives the values
its signature asks for; a 2D objective also receives the task options
(:func:`~graphmvp.pretrain.tasks.task_options`) its signature names.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import Tensor, nn

from graphmvp.data.collate import PretrainBatch
from graphmvp.models import ENCODERS, build_encoder, graph_readout
from graphmvp.objectives import OBJECTIVES, Metrics
from graphmvp.pretrain.config import PretrainConfig
from graphmvp.pretrain.tasks import TASKS_2D, Task2D, task_options

#: the format tag of the exported 2D encoder file (``model_2d.pt``)
ENCODER_FORMAT = "graphmvp-encoder-v1"
#: the 2D featurisation the encoders are trained on (graphmvp.features)
FEATURES = "hu-simple"


@dataclass
class StepOutput:
    """The losses of one batch.

    ``total``: scalar tensor to back-propagate (None when the batch gave no term at all, e.g. a
    ContextPred-only batch without context pairs). ``terms``: objective name -> its unweighted
    scalar loss. ``metrics``: detached python numbers (accuracies, VRR parts).
    """

    total: Optional[Tensor]
    terms: dict[str, Tensor] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=dict)


def _accepted(cls: Callable, pool: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``pool`` that ``cls``'s constructor accepts by name."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(pool)
    return {k: v for k, v in pool.items() if k in params}


def encoder_kwargs(cfg: PretrainConfig, view: str) -> dict[str, Any]:
    """Constructor arguments of the ``view`` ("2d" | "3d") encoder named in ``cfg``."""
    if view == "2d":
        pool = {"num_layers": cfg.num_layers, "emb_dim": cfg.emb_dim, "dropout": cfg.dropout, "jk": "last",
                "hidden_dim": cfg.gps_hidden_dim, "heads": cfg.gps_heads, "attn_dropout": cfg.gps_attn_dropout,
                "rwse_steps": cfg.rwse_steps, "rwse_norm": cfg.gps_rwse_norm}
        name = cfg.encoder_2d
    elif view == "3d":
        pool = {
            "hidden": cfg.emb_dim,
            "n_filters": cfg.schnet_filters,
            "n_interactions": cfg.schnet_interactions,
            "n_gaussians": cfg.schnet_gaussians,
            "cutoff": cfg.cutoff,
            "impl": cfg.schnet_impl,
            "edge_chunk": cfg.schnet_edge_chunk,
        }
        name = cfg.encoder_3d
    else:
        raise ValueError(f"view={view!r}: allowed: 2d, 3d")
    return _accepted(ENCODERS.get(name), pool)


def objective_kwargs(cfg: PretrainConfig, name: str) -> dict[str, Any]:
    """Constructor arguments of objective ``name`` from ``cfg`` (by its kind and signature)."""
    cls = OBJECTIVES.get(name)
    k, r1, r2 = cfg.contextpred_radii
    pools: dict[str, dict[str, Any]] = {
        "contrastive": {"temperature": cfg.temperature, "normalize": cfg.normalize, "num_negatives": cfg.neg_samples},
        "generative": {"emb_dim": cfg.emb_dim, "beta": cfg.beta, "loss": cfg.rr_loss, "detach_target": cfg.detach_target},
        "2d": {"emb_dim": cfg.emb_dim, "dropout": cfg.dropout, "context_layers": r2 - r1, "num_negatives": cfg.neg_samples,
               "mask_dist": cfg.mask_dist, "target": cfg.target, "decoder": cfg.decoder,
               "decoder_loss": cfg.decoder_loss, "store": cfg.store, **task_options(cfg)},
    }
    return _accepted(cls, pools[cls.kind])


# -- how each kind of objective is called ------------------------------------------------------
def _call_pair(model: "GraphMVPModel", objective: nn.Module, batch: PretrainBatch, z2d: Tensor, z3d: Tensor):
    return objective(z2d, z3d)


def _call_task(model: "GraphMVPModel", objective: nn.Module, batch: PretrainBatch, z2d, z3d):
    return TASKS_2D.get(model.names["2d"]).run(model, objective, batch)


#: objective kind -> ``caller(model, objective, batch, z2d, z3d) -> (loss | None, metrics)``
KIND_CALLERS: dict[str, Callable] = {"contrastive": _call_pair, "generative": _call_pair, "2d": _call_task}


def dataset_options(cfg: PretrainConfig) -> dict[str, Any]:
    """Extra :class:`PretrainDataset` arguments the configured 2D task needs ({} if none)."""
    name = cfg.objective("2d")
    return {} if name is None else TASKS_2D.get(name).dataset_arguments(cfg)


class GraphMVPModel(nn.Module):
    """Encoders and objective heads of one pretraining run (see the module docstring).

    Sub-modules: ``encoder_2d`` (GIN), ``encoder_3d`` (SchNet; None for ``views="2d"``),
    ``objectives`` (``nn.ModuleDict`` keyed by kind: "contrastive", "generative", "2d").
    ``forward(batch) -> StepOutput``; the parts are :meth:`encode_2d`, :meth:`encode_3d` and
    :meth:`losses` (used separately by the throughput benchmark).
    """

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        cfg = cfg.resolved()
        self.pooling = cfg.pooling
        self.encoder_2d = build_encoder(cfg.encoder_2d, **encoder_kwargs(cfg, "2d"))
        self.encoder_3d = build_encoder(cfg.encoder_3d, **encoder_kwargs(cfg, "3d")) if cfg.uses_3d else None
        #: kind -> objective name
        self.names: dict[str, str] = cfg.kinds()
        self.objectives = nn.ModuleDict(
            {kind: OBJECTIVES.get(name)(**objective_kwargs(cfg, name)) for kind, name in self.names.items()}
        )
        #: kind -> weight in the total
        self.weights: dict[str, float] = {kind: cfg.weight(kind) for kind in self.names}
        self._needs_pooled = any(kind in self.names for kind in ("contrastive", "generative"))

    # -- the parts of a step --------------------------------------------------------------------
    def encode_2d(self, batch: PretrainBatch) -> Optional[Tensor]:
        """Pooled 2D representations [B, D], or None when no objective compares views."""
        if not self._needs_pooled:
            return None
        node_reps = self.encoder_2d(batch.graph_2d)
        return graph_readout(batch.graph_2d, node_reps, self.pooling)

    def encode_3d(self, batch: PretrainBatch) -> Optional[Tensor]:
        """Mean-pooled 3D representations [B, D], or None without a 3D encoder."""
        if self.encoder_3d is None:
            return None
        if batch.graph_3d is None:
            raise ValueError("the batch has no 3D graph, but the model has a 3D encoder (views='2d3d')")
        node_reps = self.encoder_3d(batch.graph_3d)
        return graph_readout(batch.graph_3d, node_reps, "mean")

    def losses(self, batch: PretrainBatch, z2d: Optional[Tensor], z3d: Optional[Tensor]) -> StepOutput:
        """Each objective's loss and the weighted total."""
        out = StepOutput(total=None)
        for kind, objective in self.objectives.items():
            loss, metrics = KIND_CALLERS[kind](self, objective, batch, z2d, z3d)
            out.metrics.update(metrics)
            if loss is None:
                continue
            name = self.names[kind]
            out.terms[name] = loss
            weighted = self.weights[kind] * loss
            out.total = weighted if out.total is None else out.total + weighted
        return out

    def forward(self, batch: PretrainBatch) -> StepOutput:
        return self.losses(batch, self.encode_2d(batch), self.encode_3d(batch))

    def begin_epoch(self, dataset: Any, epoch: int) -> None:
        """Called by the trainer before the steps of ``epoch`` (0-based), after
        ``dataset.set_epoch``: runs the 2D task's ``begin_epoch`` hook, if it has one."""
        self._epoch_hook("begin_epoch", dataset, epoch)

    def end_epoch(self, dataset: Any, epoch: int) -> None:
        """Called by the trainer after the steps of ``epoch`` (0-based): runs the 2D task's
        ``end_epoch`` hook, if it has one (e.g. JOAO's augmentation-distribution update)."""
        self._epoch_hook("end_epoch", dataset, epoch)

    def _epoch_hook(self, hook: str, dataset: Any, epoch: int) -> None:
        name = self.names.get("2d")
        task = TASKS_2D.get(name) if name is not None else None
        function = getattr(task, hook, None) if task is not None else None
        if function is not None:
            function(self, self.objectives["2d"], dataset, int(epoch))

    # -- optimisation -----------------------------------------------------------------------------
    def parameter_groups(self, lr: float, schnet_lr_scale: float, to2d_lr_scale: float) -> list[dict[str, Any]]:
        """Adam parameter groups: "gin" (lr), "schnet" (lr x schnet_lr_scale), "to_2d" (the
        generative 3D->2D model, lr x to2d_lr_scale) and "heads" (everything else, lr)."""
        generative = self.objectives["generative"] if "generative" in self.objectives else None
        to_2d = getattr(generative, "to_2d", None)
        to_2d_ids = {id(p) for p in to_2d.parameters()} if to_2d is not None else set()
        groups: dict[str, list[nn.Parameter]] = {"gin": [], "schnet": [], "to_2d": [], "heads": []}
        for name, p in self.named_parameters():
            if name.startswith("encoder_2d."):
                groups["gin"].append(p)
            elif name.startswith("encoder_3d."):
                groups["schnet"].append(p)
            elif id(p) in to_2d_ids:
                groups["to_2d"].append(p)
            else:
                groups["heads"].append(p)
        scale = {"gin": 1.0, "schnet": schnet_lr_scale, "to_2d": to2d_lr_scale, "heads": 1.0}
        return [{"name": k, "params": v, "lr": lr * scale[k]} for k, v in groups.items() if v]

    # -- export -----------------------------------------------------------------------------------
    def encoder_2d_config(self, hydrogens: str) -> dict[str, Any]:
        """The plain-python description of the 2D encoder that fine-tuning rebuilds it from."""
        encoder = self.encoder_2d  # every 2D encoder describes itself with config() (constructor arguments)
        config: dict[str, Any] = {"encoder": _registered_name(encoder), **encoder.config()}
        config["pooling"] = self.pooling
        config["hydrogens"] = str(hydrogens)
        config["features"] = FEATURES
        return config

    def export_encoder_2d(self, hydrogens: str, **extra: Any) -> dict[str, Any]:
        """``{"format", "state_dict", "config", **extra}`` with CPU tensor copies and plain python
        values only (loadable with ``torch.load(weights_only=True)``)."""
        state = {k: v.detach().to("cpu").clone() for k, v in self.encoder_2d.state_dict().items()}
        return {"format": ENCODER_FORMAT, "state_dict": state, "config": self.encoder_2d_config(hydrogens), **extra}


def _registered_name(module: nn.Module) -> str:
    for name in ENCODERS.names():
        if type(module) is ENCODERS.get(name):
            return name
    return type(module).__name__


__all__ = [
    "ENCODER_FORMAT",
    "FEATURES",
    "GraphMVPModel",
    "KIND_CALLERS",
    "StepOutput",
    "TASKS_2D",
    "Task2D",
    "dataset_options",
    "encoder_kwargs",
    "objective_kwargs",
]
