"""The typed configuration of one pretraining run, its presets and its validation.

A run is described by one :class:`PretrainConfig`. :func:`resolve_config` builds it from an
optional preset plus explicit overrides (explicit values win), fills the loss weights of the
terms in ``loss`` and validates everything that can be checked without touching the disk;
:func:`check_inputs` adds the checks that need the file system (store present and with 3D
positions, run folder state). Both raise :class:`ConfigError` with a one-line message, which the
command line prints and turns into exit code 2, before any work is done.

Loss terms and weights
    ``loss`` lists objective names of :data:`graphmvp.objectives.OBJECTIVES`; each objective has a
    ``kind`` and each kind its weight::

        total = alpha1 * contrastive + alpha2 * generative + alpha3 * 2D task

    At most one term per kind. A weight may only be given for a kind present in ``loss``; a
    weight left unset (``None``) resolves to 1.0 for present kinds and stays ``None`` for absent
    ones. Weights a *preset* set for a kind that the final ``loss`` no longer has are dropped.

2D-task options
    ``options`` holds the configured 2D task's own hyperparameters (``--opt NAME=VALUE``), checked
    against the names and types of its method's options dataclass (``Task2D.options``, see
    :mod:`graphmvp.pretrain.tasks`): an undeclared name is an error naming the method and listing
    its options; a preset's options and explicit ones are merged (explicit win).

Presets (:data:`PRESETS`, :mod:`graphmvp.pretrain.presets`) are the released upstream settings (see
``../shared/reference/GRAPHMVP.md``): ``graphmvp`` (EBM-NCE + VRR, T = 0.2), ``graphmvp-g``
(+ AttrMask, alpha3 = 1, T = 0.05), ``graphmvp-c`` (+ ContextPred, alpha3 = 0.1, T = 0.2), and the
2D-only baselines of Hu et al., ``attrmask`` and ``contextpred`` (``views="2d"``, no subgraph
mask: the whole molecule is the sample, once per epoch, as in Hu et al.).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from graphmvp.data.mask_distributions import MASK_DISTRIBUTIONS
from graphmvp.data.mask_targets import MASK_TARGETS, build_mask_target
from graphmvp.data.pretrain_dataset import CONFORMER_SAMPLING, VIEWS
from graphmvp.models import ENCODERS, READOUTS
from graphmvp.models.graphgps import RWSE_NORMS
from graphmvp.models.schnet import DEFAULT_SCHNET_IMPL, SCHNET_IMPLS
from graphmvp.models.schnet_tabulated import DEFAULT_EDGE_CHUNK
from graphmvp.objectives import OBJECTIVES, RECONSTRUCTION_CRITERIA
from graphmvp.objectives.decoders import DECODER_LOSSES, DECODERS
from graphmvp.pretrain.presets import PRESETS
from graphmvp.pretrain.tasks import TASKS_2D, coerce_option, task_of


class ConfigError(ValueError):
    """An invalid pretraining option; the message is one line (CLI exit code 2)."""


#: objective kind -> the config field holding its weight
ALPHA_FOR_KIND: dict[str, str] = {"contrastive": "alpha1", "generative": "alpha2", "2d": "alpha3"}
#: kinds that need the 3D view
KINDS_3D = ("contrastive", "generative")

#: fields that change how a run executes but not what it computes: they may differ between a run
#: and its ``--resume`` (``epochs`` may grow to extend a run)
VOLATILE_FIELDS = (
    "out",
    "epochs",
    "resume",
    "overwrite",
    "max_steps",
    "log_every",
    "progress",
    "num_workers",
    "threads",
    "deterministic",
    "preset",
    "malloc_tuning",
    "schnet_impl",
    "schnet_edge_chunk",
)

@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run. Defaults are GraphMVP's released settings.

    Data: ``store`` (HDF5 conformer store; None = the bundled demo store, prepared on first use
    into ``<out>/../demo_conformers.h5``), ``views`` ("2d3d" | "2d"), ``conformer_sampling``
    ("all": one sample per stored conformer | "random": one per molecule, conformer per epoch),
    ``mask_ratio`` (subgraph mask M of both views), ``attrmask_rate`` (AttrMask's 0.15; the
    mask rate of every masked-node variant, ``--mask-rate``), ``cutoff`` / ``max_neighbors`` (3D
    neighbours: radius in A, nearest kept per atom).

    Masked-node prediction (``attrmask``; the masking-design study's axes, docs/masking_study.md):
    ``mask_dist`` (where: "uniform" | "pagerank" | "learnable"), ``target`` (what: "atom" |
    "motif" | "contextual"), ``decoder`` ("linear" | "gnn" re-mask decoder), ``decoder_loss``
    ("ce" | "sce"); their further hyperparameters are task options (``--opt``). The defaults are
    Hu et al.'s AttrMask.

    Objectives: ``loss`` (objective names), ``alpha1/2/3`` (weights of the contrastive,
    generative and 2D terms), ``temperature`` (T), ``normalize``, ``neg_samples`` (K cyclic-shift
    negatives of EBM-NCE and ContextPred), ``beta`` (VRR's KL weight), ``rr_loss`` (VRR/RR
    criterion), ``detach_target``.

    Models: ``encoder_2d`` / ``encoder_3d`` (names in ``ENCODERS``), ``num_layers``, ``emb_dim``
    (also SchNet's hidden size: the compared vectors have one width, no projection head),
    ``pooling`` (2D readout; SchNet is always mean-pooled), ``dropout``, ``schnet_filters``,
    ``schnet_interactions``, ``schnet_gaussians``, ``schnet_impl`` (how SchNet runs, same weights:
    ``tabulated`` (default, interpolated filter networks, ~1e-6 relative), ``fused`` (same
    operations as ``plain``), ``plain`` (schnetpack's forward), ``fused-bf16`` (bf16 filter
    networks, ~3e-3 relative); :data:`graphmvp.models.schnet.SCHNET_IMPLS`), ``schnet_edge_chunk``
    (edges per chunk of the tabulated path's convolution, 0 = all at once: bounds its per-edge
    buffers; :func:`graphmvp.models.schnet_tabulated.edge_chunks`).
    GraphGPS only (``encoder_2d="graphgps"``;
    ``emb_dim`` is its output width): ``gps_hidden_dim`` (layer width; 192 keeps 5 layers within
    5% of the 5 x 300 GIN's parameters), ``gps_heads``, ``gps_attn_dropout`` (GraphGPS: 0.5),
    ``rwse_steps`` (random-walk encoding length, GraphGPS: 20), ``gps_rwse_norm`` (none |
    batchnorm, GraphGPS's; none by default, see :mod:`graphmvp.models.graphgps`).

    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``weight_decay`` (Adam);
    ``schnet_lr_scale`` (SchNet lr = lr x this), ``to2d_lr_scale`` (the 3D->2D generative model).

    Execution: ``out`` (run folder), ``seed``, ``num_workers`` (DataLoader processes),
    ``threads`` (torch threads; None = leave as is), ``deterministic``
    (``torch.use_deterministic_algorithms``), ``resume``, ``overwrite`` (replace a finished or
    interrupted run in ``out``), ``max_steps`` (stop after this many optimiser steps in total),
    ``log_every`` (steps between log lines), ``progress`` (tqdm bar), ``device``
    (auto: CUDA when torch and DGL both have it, else CPU; cpu; cuda; cuda:N; see
    :func:`graphmvp.distributed.resolve_device`),
    ``malloc_tuning`` (keep freed memory in the heap on glibc, much fewer page faults per step;
    see :func:`graphmvp.malloc_tuning.tune_malloc`; applied by ``graphmvp-pretrain``).
    """

    out: str = "runs/pretrain"
    store: Optional[str] = None
    preset: Optional[str] = None
    views: str = "2d3d"
    loss: tuple[str, ...] = ("ebm-nce", "vrr")
    alpha1: Optional[float] = None
    alpha2: Optional[float] = None
    alpha3: Optional[float] = None
    temperature: float = 0.2
    normalize: bool = True
    neg_samples: int = 1
    beta: float = 2.0
    rr_loss: str = "l2"
    detach_target: bool = True
    mask_ratio: float = 0.15
    attrmask_rate: float = 0.15
    mask_dist: str = "uniform"
    target: str = "atom"
    decoder: str = "linear"
    decoder_loss: str = "ce"
    conformer_sampling: str = "all"
    cutoff: float = 10.0
    max_neighbors: int = 32
    encoder_2d: str = "gin"
    encoder_3d: str = "schnet"
    num_layers: int = 5
    emb_dim: int = 300
    pooling: str = "mean"
    dropout: float = 0.0
    gps_hidden_dim: int = 192
    gps_heads: int = 4
    gps_attn_dropout: float = 0.5
    rwse_steps: int = 20
    gps_rwse_norm: str = "none"
    schnet_filters: int = 128
    schnet_interactions: int = 6
    schnet_gaussians: int = 51
    schnet_impl: str = DEFAULT_SCHNET_IMPL
    schnet_edge_chunk: int = DEFAULT_EDGE_CHUNK
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    schnet_lr_scale: float = 0.1
    to2d_lr_scale: float = 0.1
    seed: int = 0
    num_workers: int = 0
    threads: Optional[int] = None
    deterministic: bool = False
    resume: bool = False
    overwrite: bool = False
    max_steps: Optional[int] = None
    log_every: int = 10
    progress: bool = True
    device: str = "auto"
    malloc_tuning: bool = True
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.loss, str):
            self.loss = parse_loss(self.loss)
        else:
            self.loss = tuple(self.loss)
        self.options = dict(self.options or {})

    # -- derived views of the config ---------------------------------------------------------
    def kinds(self) -> dict[str, str]:
        """objective kind -> objective name, for the terms in ``loss`` (valid names only)."""
        return {OBJECTIVES.get(name).kind: name for name in self.loss if name in OBJECTIVES}

    def objective(self, kind: str) -> Optional[str]:
        """The objective name of ``kind`` in ``loss``, or None."""
        return self.kinds().get(kind)

    def weight(self, kind: str) -> float:
        """The resolved weight of ``kind`` (1.0 when unset), 0.0 for a kind not in ``loss``."""
        if self.objective(kind) is None:
            return 0.0
        value = getattr(self, ALPHA_FOR_KIND[kind])
        return 1.0 if value is None else float(value)

    @property
    def uses_3d(self) -> bool:
        return self.views == "2d3d"

    @property
    def contextpred_radii(self) -> tuple[int, int, int]:
        """(k, r1, r2) of ContextPred, derived from the GIN depth as in Hu et al.:
        k = num_layers, r1 = num_layers - 1, r2 = r1 + 3 (5, 4, 7 for 5 layers)."""
        k = int(self.num_layers)
        return k, k - 1, k - 1 + 3

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loss"] = list(self.loss)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}")
        return cls(**dict(d))

    def result_defining(self) -> dict[str, Any]:
        """The fields that determine the trained weights (compared on ``--resume``)."""
        d = self.to_dict()
        for key in VOLATILE_FIELDS:
            d.pop(key, None)
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> "PretrainConfig":
        """Check every option that needs no file access; raise :class:`ConfigError` (one line)."""
        _validate(self)
        return self

    def resolved(self) -> "PretrainConfig":
        """A validated copy with the weights of the present terms filled in (1.0 when unset)."""
        self.validate()
        c = dataclasses.replace(self)
        for kind, alpha in ALPHA_FOR_KIND.items():
            if c.objective(kind) is not None and getattr(c, alpha) is None:
                setattr(c, alpha, 1.0)
        return c


def parse_loss(text: str) -> tuple[str, ...]:
    """``"ebm-nce+vrr"`` -> ``("ebm-nce", "vrr")`` (names stripped; empty parts rejected)."""
    parts = tuple(p.strip() for p in str(text).split("+"))
    if any(not p for p in parts):
        raise ConfigError(f"--loss {text!r}: expected names joined by '+', e.g. ebm-nce+vrr")
    return parts


def _number(cfg: PretrainConfig, name: str, *, positive: bool = False, nonneg: bool = False,
            integer: bool = False, below_one: bool = False, optional: bool = False) -> None:
    value = getattr(cfg, name)
    flag = "--" + name.replace("_", "-")
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{flag}={value!r}: must be {kind}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{flag}={value!r}: must be finite")
    if positive and not value > 0:
        raise ConfigError(f"{flag}={value!r}: must be > 0")
    if nonneg and not value >= 0:
        raise ConfigError(f"{flag}={value!r}: must be >= 0")
    if below_one and not value < 1:
        raise ConfigError(f"{flag}={value!r}: must be < 1")


def _choice(cfg: PretrainConfig, name: str, allowed) -> None:
    value = getattr(cfg, name)
    allowed = list(allowed)
    if value not in allowed:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag}={value!r}: allowed: {', '.join(map(str, allowed))}")


def _validate(cfg: PretrainConfig) -> None:
    if cfg.preset is not None:
        _choice(cfg, "preset", PRESETS)
    _choice(cfg, "views", VIEWS)
    if not cfg.loss:
        raise ConfigError("--loss is empty: name at least one objective (known: " + ", ".join(OBJECTIVES.names()) + ")")
    for name in cfg.loss:
        if name not in OBJECTIVES:
            raise ConfigError(f"unknown loss {name!r} (known: {', '.join(OBJECTIVES.names())})")
    if len(set(cfg.loss)) != len(cfg.loss):
        raise ConfigError(f"--loss {'+'.join(cfg.loss)}: an objective is named twice")
    by_kind: dict[str, list[str]] = {}
    for name in cfg.loss:
        by_kind.setdefault(OBJECTIVES.get(name).kind, []).append(name)
    for kind, names in by_kind.items():
        if len(names) > 1:
            raise ConfigError(
                f"--loss {'+'.join(cfg.loss)}: two {kind} terms ({', '.join(names)}); use at most one per kind"
            )
    if cfg.views == "2d":
        for kind in KINDS_3D:
            if kind in by_kind:
                raise ConfigError(
                    f"--views 2d cannot train the {kind} objective {by_kind[kind][0]!r} (it needs the 3D view); "
                    "use --views 2d3d or a 2D objective (" + ", ".join(_names_of_kind("2d")) + ")"
                )
        if "2d" not in by_kind:
            raise ConfigError("--views 2d needs a 2D objective (" + ", ".join(_names_of_kind("2d")) + ")")
    else:
        if not any(kind in by_kind for kind in KINDS_3D):
            raise ConfigError(
                f"--views 2d3d with --loss {'+'.join(cfg.loss)}: needs a contrastive or generative term ("
                + ", ".join(_names_of_kind("contrastive") + _names_of_kind("generative"))
                + "); for 2D-only pretraining use --views 2d"
            )
    for kind, alpha in ALPHA_FOR_KIND.items():
        value = getattr(cfg, alpha)
        if value is not None and kind not in by_kind:
            raise ConfigError(
                f"--{alpha}={value!r} weights the {kind} term, but --loss {'+'.join(cfg.loss)} has none"
            )
        _number(cfg, alpha, nonneg=True, optional=True)

    _validate_options(cfg)
    _number(cfg, "temperature", positive=True)
    _number(cfg, "neg_samples", positive=True, integer=True)
    _number(cfg, "beta", nonneg=True)
    _choice(cfg, "rr_loss", RECONSTRUCTION_CRITERIA.names())
    _number(cfg, "mask_ratio", nonneg=True, below_one=True)
    if not 0 < cfg.attrmask_rate <= 1:
        raise ConfigError(f"--attrmask-rate={cfg.attrmask_rate!r}: must be in (0, 1]")
    _validate_masked_prediction(cfg)
    _choice(cfg, "conformer_sampling", CONFORMER_SAMPLING)
    _number(cfg, "cutoff", positive=True)
    _number(cfg, "max_neighbors", positive=True, integer=True)
    from graphmvp.pretrained import two_d_encoders

    two_d = two_d_encoders()
    _choice(cfg, "encoder_2d", two_d)
    _choice(cfg, "encoder_3d", [n for n in ENCODERS.names() if n not in two_d])
    _choice(cfg, "schnet_impl", SCHNET_IMPLS.names())
    _number(cfg, "schnet_edge_chunk", nonneg=True, integer=True)
    _number(cfg, "num_layers", positive=True, integer=True)
    _number(cfg, "emb_dim", positive=True, integer=True)
    _choice(cfg, "pooling", READOUTS)
    _number(cfg, "dropout", nonneg=True, below_one=True)
    _number(cfg, "gps_hidden_dim", positive=True, integer=True)
    _number(cfg, "gps_heads", positive=True, integer=True)
    _number(cfg, "gps_attn_dropout", nonneg=True, below_one=True)
    _number(cfg, "rwse_steps", positive=True, integer=True)
    _choice(cfg, "gps_rwse_norm", RWSE_NORMS)
    if cfg.gps_hidden_dim % cfg.gps_heads:
        raise ConfigError(f"--gps-heads={cfg.gps_heads!r}: must divide --gps-hidden-dim={cfg.gps_hidden_dim!r}")
    _number(cfg, "schnet_filters", positive=True, integer=True)
    _number(cfg, "schnet_interactions", positive=True, integer=True)
    _number(cfg, "schnet_gaussians", positive=True, integer=True)
    if cfg.schnet_gaussians < 2:
        raise ConfigError(f"--schnet-gaussians={cfg.schnet_gaussians!r}: must be >= 2")
    _number(cfg, "epochs", positive=True, integer=True)
    _number(cfg, "batch_size", positive=True, integer=True)
    if cfg.batch_size < 2:
        raise ConfigError(f"--batch-size={cfg.batch_size!r}: must be >= 2 (batch norm needs two samples)")
    _number(cfg, "lr", positive=True)
    _number(cfg, "weight_decay", nonneg=True)
    _number(cfg, "schnet_lr_scale", nonneg=True)
    _number(cfg, "to2d_lr_scale", nonneg=True)
    _number(cfg, "seed", nonneg=True, integer=True)
    _number(cfg, "num_workers", nonneg=True, integer=True)
    _number(cfg, "threads", positive=True, integer=True, optional=True)
    _number(cfg, "max_steps", positive=True, integer=True, optional=True)
    _number(cfg, "log_every", positive=True, integer=True)
    if not str(cfg.out).strip():
        raise ConfigError("--out is empty: give the run folder")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    from graphmvp.distributed import DistOptionError, check_device_name  # (availability: checked at run time)

    try:
        check_device_name(cfg.device)
    except DistOptionError as e:
        raise ConfigError(str(e)) from None


#: the masked-node prediction fields and their AttrMask values
MASKED_PREDICTION_DEFAULTS = {"mask_dist": "uniform", "target": "atom", "decoder": "linear", "decoder_loss": "ce"}


def _validate_masked_prediction(cfg: PretrainConfig) -> None:
    """The axes of masked-node prediction (``attrmask``): known names; set only with attrmask;
    learnable masking trains its scorer through the gnn decoder only."""
    _choice(cfg, "mask_dist", MASK_DISTRIBUTIONS.names())
    _choice(cfg, "target", MASK_TARGETS.names())
    _choice(cfg, "decoder", DECODERS.names())
    _choice(cfg, "decoder_loss", DECODER_LOSSES)
    changed = [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k, v in MASKED_PREDICTION_DEFAULTS.items()
               if getattr(cfg, k) != v]
    if changed and "attrmask" not in cfg.loss:
        raise ConfigError(f"{', '.join(changed)}: set masked-node prediction, but --loss {'+'.join(cfg.loss)} has no "
                          "attrmask term")
    if MASK_DISTRIBUTIONS.get(cfg.mask_dist).needs_scorer and not DECODERS.get(cfg.decoder).uses_graph:
        raise ConfigError(f"--mask-dist {cfg.mask_dist} needs --decoder gnn: its scorer is trained through the "
                          f"score-weighted unmasked atoms, which the {cfg.decoder} decoder never reads")


def _validate_options(cfg: PretrainConfig) -> None:
    if not isinstance(cfg.options, dict):
        raise ConfigError(f"options={cfg.options!r}: must be a mapping NAME -> value")
    if not cfg.options:
        return
    task = task_of(cfg) if cfg.objective("2d") in TASKS_2D else None
    if task is None:
        raise ConfigError(f"--opt {', '.join(cfg.options)}: options set the 2D task's hyperparameters, but --loss "
                          f"{'+'.join(cfg.loss)} has no 2D task")
    name = cfg.objective("2d")
    defaults = task.option_defaults()  # the names and defaults its options dataclass declares
    for key, value in cfg.options.items():
        if key not in defaults:
            known = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
            raise ConfigError(f"--opt {key}={value!r}: {name} has no option {key!r}; its options: {known}")
        try:
            coerce_option(key, defaults[key], value)
        except ValueError as e:
            raise ConfigError(f"--opt for {name}: {e}") from None


def _names_of_kind(kind: str) -> list[str]:
    return [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).kind == kind]


def resolve_config(preset: Optional[str] = None, **overrides: Any) -> PretrainConfig:
    """The validated config of ``preset`` (None: plain defaults) with ``overrides`` applied.

    ``overrides`` are field values given explicitly (e.g. the command-line flags that were
    passed); they win over the preset. Preset weights of kinds the final ``loss`` lacks are
    dropped; explicit ones are errors. Raises :class:`ConfigError`.
    """
    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset={preset!r}: allowed: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    preset_options = dict(values.get("options") or {})
    values.update(overrides)
    if "options" in overrides:  # merged: a preset's task options stay unless set explicitly
        values["options"] = {**preset_options, **dict(overrides["options"] or {})}
    if isinstance(values.get("loss"), str):
        values["loss"] = parse_loss(values["loss"])
    cfg = PretrainConfig(**values)
    if preset is not None:
        present = set(cfg.kinds())
        for kind, alpha in ALPHA_FOR_KIND.items():
            if alpha not in overrides and kind not in present:
                setattr(cfg, alpha, None)
    return cfg.resolved()


def check_inputs(cfg: PretrainConfig) -> None:
    """File-system checks before any work; raise :class:`ConfigError` (one line).

    * an explicit ``store`` must exist, be a conformer store, and hold 3D positions for
      ``views="2d3d"``; a masked-node target read from the store's label sidecar (``motif``...)
      needs that sidecar, current;
    * ``resume`` needs ``<out>/last.pt``; without ``resume`` or ``overwrite``, a folder that
      already holds a run (``last.pt``) is not touched.
    """
    if cfg.store is not None:
        path = Path(cfg.store).expanduser()
        if not path.is_file():
            raise ConfigError(f"--store {path}: no such file")
        from graphmvp.data.store import ConformerStore

        try:
            with ConformerStore(path) as store:
                store.verify()  # a flipped byte must not train on wrong data
                has_positions = store.has_positions
                n = len(store)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--store {path}: cannot read it as a conformer store ({str(e).splitlines()[0]})") from None
        if n == 0:
            raise ConfigError(f"--store {path}: holds no molecules")
        if cfg.uses_3d and not has_positions:
            raise ConfigError(
                f"--store {path} has no 3D positions (prepared without conformers), but --views 2d3d needs them; "
                "use --views 2d or prepare the store with conformers"
            )
        if "attrmask" in cfg.loss and MASK_TARGETS.get(cfg.target).needs_store:
            try:
                build_mask_target(cfg.target, path, preload=False)
            except ValueError as e:  # missing or stale sidecar: the message names the command
                raise ConfigError(f"--target {cfg.target}: {str(e).splitlines()[0]}") from None
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    last = out / "last.pt"
    if cfg.resume and not last.is_file():
        raise ConfigError(f"--resume: {last} does not exist (nothing to resume)")
    if not cfg.resume and not cfg.overwrite and last.is_file():
        raise ConfigError(f"--out {out} already holds a run ({last.name}); pass --resume to continue it or --overwrite to replace it")


def malloc_mmap_threshold(cfg: PretrainConfig) -> int:
    """The glibc mmap threshold that :func:`graphmvp.malloc_tuning.tune_malloc` should apply for
    this run: blocks below it are reused from the heap, larger ones mapped per use.

    The default SchNet path (edge-chunked, 16 MiB buffers) and 2D-only runs keep theirs in the
    heap (:data:`~graphmvp.malloc_tuning.MALLOC_MMAP_THRESHOLD`, 64 MiB); the whole-edge paths
    (plain, fused, fused-bf16) map anything above
    :data:`~graphmvp.malloc_tuning.WHOLE_EDGE_MMAP_THRESHOLD` (32 MiB), so that their [E, F]
    tensors never stay in, nor fragment, the heap.
    """
    from graphmvp.malloc_tuning import MALLOC_MMAP_THRESHOLD, WHOLE_EDGE_MMAP_THRESHOLD

    if cfg.uses_3d and cfg.encoder_3d == "schnet" and not SCHNET_IMPLS.get(cfg.schnet_impl).edge_chunked:
        return WHOLE_EDGE_MMAP_THRESHOLD
    return MALLOC_MMAP_THRESHOLD


__all__ = [
    "ALPHA_FOR_KIND",
    "ConfigError",
    "PRESETS",
    "PretrainConfig",
    "VOLATILE_FIELDS",
    "check_inputs",
    "malloc_mmap_threshold",
    "parse_loss",
    "resolve_config",
]
