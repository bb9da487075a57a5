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
``kind`` (:data:`KIND_CALLERS`), and a 2D method's objective, inputs and loss come from its
declaration (:class:`~graphmvp.pretrain.tasks.Task2D` in :data:`~graphmvp.pretrain.tasks.TASKS_2D`;
one module per method in :mod:`graphmvp.pretrain.tasks`: attrmask, contextpred, ...).

Constructor arguments are declared, never matched by parameter name: an encoder's in
:data:`ENCODER_ARGS`, a cross-view objective's in :data:`CROSS_VIEW_ARGS`, a 2D objective's by
its method (``Task2D.objective_args``). A declared argument that the constructor does not take
(a parameter renamed on one side only) is a ``TypeError``, not a silently used default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import Tensor, nn

from graphmvp.data.collate import PretrainBatch
from graphmvp.models import ENCODERS, graph_readout
from graphmvp.objectives import OBJECTIVES, Metrics
from graphmvp.pretrain.config import PretrainConfig
from graphmvp.pretrain.tasks import TASKS_2D, Task2D

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


#: encoder name -> its constructor arguments from the config (``view`` "2d": gin, graphgps; "3d": schnet)
ENCODER_ARGS: dict[str, Callable[[PretrainConfig], dict[str, Any]]] = {
    "gin": lambda cfg: {"num_layers": cfg.num_layers, "emb_dim": cfg.emb_dim, "dropout": cfg.dropout, "jk": "last"},
    "graphgps": lambda cfg: {
        "num_layers": cfg.num_layers,
        "emb_dim": cfg.emb_dim,
        "dropout": cfg.dropout,
        "hidden_dim": cfg.gps_hidden_dim,
        "heads": cfg.gps_heads,
        "attn_dropout": cfg.gps_attn_dropout,
        "rwse_steps": cfg.rwse_steps,
        "rwse_norm": cfg.gps_rwse_norm,
    },
    "schnet": lambda cfg: {
        "hidden": cfg.emb_dim,
        "n_filters": cfg.schnet_filters,
        "n_interactions": cfg.schnet_interactions,
        "n_gaussians": cfg.schnet_gaussians,
        "cutoff": cfg.cutoff,
        "impl": cfg.schnet_impl,
        "edge_chunk": cfg.schnet_edge_chunk,
    },
}

#: cross-view (contrastive, generative) objective name -> its constructor arguments from the config
CROSS_VIEW_ARGS: dict[str, Callable[[PretrainConfig], dict[str, Any]]] = {
    "ebm-nce": lambda cfg: {"temperature": cfg.temperature, "normalize": cfg.normalize,
                            "num_negatives": cfg.neg_samples},
    "infonce": lambda cfg: {"temperature": cfg.temperature, "normalize": cfg.normalize},
    "vrr": lambda cfg: {"emb_dim": cfg.emb_dim, "beta": cfg.beta, "loss": cfg.rr_loss,
                        "detach_target": cfg.detach_target},
    "rr": lambda cfg: {"emb_dim": cfg.emb_dim, "loss": cfg.rr_loss, "detach_target": cfg.detach_target},
}


def _declared(table: dict[str, Callable], what: str, name: str, where: str) -> Callable:
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"{what} {name!r} has no declared constructor arguments (add it to {where})") from None


def encoder_kwargs(cfg: PretrainConfig, view: str) -> dict[str, Any]:
    """Constructor arguments of the ``view`` ("2d" | "3d") encoder named in ``cfg``
    (:data:`ENCODER_ARGS`)."""
    if view == "2d":
        name = cfg.encoder_2d
    elif view == "3d":
        name = cfg.encoder_3d
    else:
        raise ValueError(f"view={view!r}: allowed: 2d, 3d")
    return _declared(ENCODER_ARGS, "encoder", name, "graphmvp.pretrain.model.ENCODER_ARGS")(cfg)


def objective_kwargs(cfg: PretrainConfig, name: str) -> dict[str, Any]:
    """Constructor arguments of objective ``name`` in ``cfg``: a cross-view objective's from
    :data:`CROSS_VIEW_ARGS`, a 2D objective's from its method's ``objective_args``."""
    if name in TASKS_2D:
        task = TASKS_2D.get(name)
        return task.objective_args(cfg, task.resolve_options(cfg.options))
    return _declared(CROSS_VIEW_ARGS, "objective", name, "graphmvp.pretrain.model.CROSS_VIEW_ARGS")(cfg)


def _build(what: str, name: str, cls: Callable, args: dict[str, Any]) -> nn.Module:
    try:
        return cls(**args)
    except TypeError as e:
        raise TypeError(f"{what} {name!r}: {cls.__name__} does not take the declared arguments "
                        f"({', '.join(args)}): {e}") from e


def build_objective(cfg: PretrainConfig, name: str) -> nn.Module:
    """Objective ``name`` of a run, built with its declared arguments (:func:`objective_kwargs`)."""
    if name in TASKS_2D:
        return TASKS_2D.get(name).build_objective(cfg)
    return _build("objective", name, OBJECTIVES.get(name), objective_kwargs(cfg, name))


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
        self.encoder_2d = _build("encoder", cfg.encoder_2d, ENCODERS.get(cfg.encoder_2d), encoder_kwargs(cfg, "2d"))
        self.encoder_3d = (_build("encoder", cfg.encoder_3d, ENCODERS.get(cfg.encoder_3d), encoder_kwargs(cfg, "3d"))
                           if cfg.uses_3d else None)
        #: kind -> objective name
        self.names: dict[str, str] = cfg.kinds()
        self.objectives = nn.ModuleDict({kind: build_objective(cfg, name) for kind, name in self.names.items()})
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
    "CROSS_VIEW_ARGS",
    "ENCODER_ARGS",
    "ENCODER_FORMAT",
    "FEATURES",
    "GraphMVPModel",
    "KIND_CALLERS",
    "StepOutput",
    "TASKS_2D",
    "Task2D",
    "build_objective",
    "dataset_options",
    "encoder_kwargs",
    "objective_kwargs",
]
