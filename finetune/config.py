"""The configuration of a fine-tuning run, its defaults and validation.

:class:`FinetuneConfig` holds every choice that moves the numbers; fields left ``None`` are filled
by :meth:`FinetuneConfig.resolved` from the task's registry entry (columns, task type) and its
task type's protocol defaults (:data:`graphmvp.finetune.tasks.TASK_TYPES`: dropout 0.5 classification /
0.2 regression and DTA, 100 epochs (DTA 200), lr 1e-3 (DTA 5e-4), batch size 256). Everything is
checked before any data is read or any weight is loaded; problems raise :class:`FinetuneError`
with a one-line message naming the option.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.extra_features import NO_EXTRA_FEATURES
from graphmvp.finetune.model import GRAPH_FEATURES, HEADS
from graphmvp.finetune.splits import SPLITS
from graphmvp.finetune.tasks import TASK_TYPES, TaskSpec, get_task
from graphmvp.distributed import DistOptionError, check_device_name
from graphmvp.models import JK_MODES, READOUTS
from graphmvp.models.graphgps import RWSE_NORMS

#: the split name of DTA tasks (DeepDTA setting-1 folds, validation = a random part of the training folds)
DTA_SPLIT = "deepdta_folds"


@dataclass
class FinetuneConfig:
    """Options of one fine-tuning run (several seeds).

    Data: ``task`` (registry name) and/or ``data_file`` (own CSV / CSV.gz / SDF, or a DeepDTA
    folder for DTA tasks), ``chem_dataset`` (Hu et al.'s unpacked bundle), ``data_urls`` (URLs
    replacing the registry's), ``smiles_col``, ``label_cols``, ``task_type``, ``hydrogens``
    ("drop": the atoms of the SMILES, upstream's downstream graphs; "keep": explicit hydrogens
    added; "pretrained": as the ``init`` encoder was pretrained, "drop" without one; None: the
    protocol's), ``use_cache``.

    Split: ``split`` (scaffold | random_scaffold | balanced_scaffold | random | column; default
    scaffold, or column when ``split_col`` is given), ``split_col``, ``split_fractions``,
    ``split_seed`` (None: each run seed splits with its own value; ignored by deterministic
    splits), ``dta_valid_fraction``, ``dta_drug_batch`` (:data:`graphmvp.finetune.dta.DRUG_BATCHES`:
    a DTA training batch encodes each distinct drug once, ``unique``, or once per pair as
    upstream, ``per-pair``).

    Model: ``init`` (None = random init; run folder, encoder file or released name), ``method``
    (label in tables; default from the init), ``encoder`` (registered 2D encoder, gin |
    graphgps; None: the checkpoint's, gin for random init), ``gps_hidden_dim`` / ``gps_heads`` /
    ``gps_attn_dropout`` / ``gps_rwse_norm`` (GraphGPS constructor options; None: the checkpoint's, else the
    encoder's defaults), ``num_layers`` / ``emb_dim`` / ``jk`` (None: the
    checkpoint's; 5 / 300 / last for random init), ``pooling`` (None: the checkpoint's, else
    mean), ``dropout``, ``head`` (linear | mlp), ``head_hidden``, ``protein_encoder``,
    ``protein_length``, ``extra_features`` (a :data:`graphmvp.finetune.extra_features.EXTRA_FEATURES`
    name: morgan | rdkit2d, concatenated to the pooled embedding, molecule tasks only; ``"none"``;
    None: the protocol's; :attr:`extra_kind` is the kind or None),
    ``graph_features`` (:data:`graphmvp.finetune.model.GRAPH_FEATURES`: ``hu``, Hu et al.'s atom
    and bond features alone, what the encoders were pretrained on; ``chemprop``, plus chemprop's
    atom and bond descriptors in embedding tables of their own; GIN and molecule tasks only).

    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``weight_decay`` (Adam), ``encoder_lr_scale``
    (encoder lr = lr x this), ``freeze_encoder`` (linear probe: encoder frozen and in eval mode),
    ``standardize`` (regression: train on targets standardised with the training split's mean
    and std; metrics in original units), ``lr_schedule`` (:data:`graphmvp.finetune.protocols.SCHEDULES`),
    ``warmup_epochs``, ``patience`` (stop after this many epochs without a better validation
    value; 0 = never), ``grad_clip`` (max gradient norm; 0 = none).

    ``protocol`` (:data:`graphmvp.finetune.protocols.PROTOCOLS`: ``default`` or ``paper``) fills every
    option above (and ``head``) left ``None``; the task type then fills dropout, epochs, lr and
    batch size.

    Run: ``seeds``, ``ensemble`` (models trained per seed, their predictions averaged;
    :mod:`graphmvp.finetune.ensemble`), ``out``, ``overwrite``, ``threads``, ``eval_train`` (also evaluate the
    training split every epoch), ``save_model`` (write the best-validation model per seed),
    ``progress`` (log a line per epoch), ``device`` (auto: CUDA when torch and DGL both have
    it, else CPU; cpu; cuda; cuda:N; see :func:`graphmvp.distributed.resolve_device`).
    """

    task: Optional[str] = None
    data_file: Optional[str] = None
    chem_dataset: Optional[str] = None
    data_urls: tuple[str, ...] = ()
    smiles_col: Optional[str] = None
    label_cols: Optional[tuple[str, ...]] = None
    task_type: Optional[str] = None
    hydrogens: Optional[str] = None
    use_cache: bool = True
    split: Optional[str] = None
    split_col: Optional[str] = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: Optional[int] = None
    dta_valid_fraction: float = 0.2
    init: Optional[str] = None
    method: Optional[str] = None
    encoder: Optional[str] = None
    gps_hidden_dim: Optional[int] = None
    gps_heads: Optional[int] = None
    gps_attn_dropout: Optional[float] = None
    gps_rwse_norm: Optional[str] = None
    num_layers: Optional[int] = None
    emb_dim: Optional[int] = None
    jk: Optional[str] = None
    pooling: Optional[str] = None
    dropout: Optional[float] = None
    head: Optional[str] = None
    head_hidden: Optional[int] = None
    protein_encoder: str = "graphdta"
    protein_length: int = 1000
    dta_drug_batch: str = "unique"
    extra_features: Optional[str] = None
    graph_features: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    encoder_lr_scale: Optional[float] = None
    freeze_encoder: bool = False
    standardize: Optional[bool] = None
    lr_schedule: Optional[str] = None
    warmup_epochs: Optional[float] = None
    patience: Optional[int] = None
    grad_clip: Optional[float] = None
    protocol: str = "default"
    seeds: tuple[int, ...] = (0,)
    ensemble: int = 1
    out: Optional[str] = None
    overwrite: bool = False
    threads: Optional[int] = None
    eval_train: bool = False
    save_model: bool = False
    progress: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.label_cols, str):
            self.label_cols = tuple(c.strip() for c in self.label_cols.split(",") if c.strip()) or None
        elif self.label_cols is not None:
            self.label_cols = tuple(self.label_cols)
        if isinstance(self.data_urls, str):
            self.data_urls = (self.data_urls,)
        self.data_urls = tuple(self.data_urls or ())
        if isinstance(self.seeds, int):
            self.seeds = (self.seeds,)
        self.seeds = tuple(self.seeds)
        self.split_fractions = tuple(self.split_fractions)  # type: ignore[assignment]

    # -- derived -----------------------------------------------------------------------------
    @property
    def extra_kind(self) -> Optional[str]:
        """The extra features' kind, or None when there are none (``extra_features`` "none", or
        unset before :meth:`resolved`)."""
        return None if self.extra_features in (None, NO_EXTRA_FEATURES) else self.extra_features

    def spec(self) -> Optional[TaskSpec]:
        return get_task(self.task) if self.task is not None else None

    @property
    def task_name(self) -> str:
        """The task's name, or the data file's stem for own data."""
        if self.task is not None:
            return self.task
        name = Path(str(self.data_file)).name
        for suffix in (".gz", ".csv", ".tsv", ".sdf", ".txt"):
            name = name.removesuffix(suffix)
        return name or "data"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise FinetuneError(f"unknown fine-tuning option(s): {', '.join(unknown)}")
        return cls(**dict(d))

    def encoder_options(self) -> dict[str, Any]:
        """The given GraphGPS options under the encoder's constructor names (for
        :func:`graphmvp.finetune.model.build_encoder`)."""
        given = {"hidden_dim": self.gps_hidden_dim, "heads": self.gps_heads, "attn_dropout": self.gps_attn_dropout,
                 "rwse_norm": self.gps_rwse_norm}
        return {k: v for k, v in given.items() if v is not None}

    # -- resolution ---------------------------------------------------------------------------
    def resolved(self) -> "FinetuneConfig":
        """A validated copy with every default filled in (raises :class:`FinetuneError`)."""
        c = dataclasses.replace(self)
        if c.task is None and c.data_file is None:
            raise FinetuneError("give --task NAME (a registered task) or --data-file FILE (your own data)")
        try:
            spec = c.spec()
        except ValueError as e:
            raise FinetuneError(str(e)) from None
        if spec is not None:
            if c.task_type is not None and c.task_type != spec.task_type:
                raise FinetuneError(f"--task-type {c.task_type} contradicts task {spec.name!r}, which is {spec.task_type}")
            c.task_type = spec.task_type
            c.task = spec.name  # an alias (lipo) becomes the registered name
            # columns not given stay None: they come from the task's layout that the data
            # file's header fits (graphmvp.finetune.problems.resolve_columns), recorded in the summary
        else:
            if c.task_type is None:
                raise FinetuneError("--task-type is required for own data; allowed: classification, regression")
            if c.task_type not in TASK_TYPES or c.task_type == "dta":
                raise FinetuneError(f"--task-type {c.task_type!r}: allowed for own data: classification, regression "
                                    "(DTA needs --task davis|kiba)")
            if c.label_cols is None:
                raise FinetuneError("--label-cols is required for own data (comma-separated column names)")
            suffix = str(c.data_file).lower()
            if c.smiles_col is None and not (suffix.endswith(".sdf") or suffix.endswith(".sdf.gz")):
                raise FinetuneError("--smiles-col is required for a CSV file")
        ttype = TASK_TYPES.get(c.task_type)
        if c.chem_dataset is not None and c.data_file is not None:
            raise FinetuneError("--chem-dataset and --data-file exclude each other")
        if c.chem_dataset is not None and spec is None:
            raise FinetuneError("--chem-dataset needs --task (which data set of the bundle)")

        # split
        if c.task_type == "dta":
            if c.split not in (None, DTA_SPLIT):
                raise FinetuneError(f"--split {c.split}: DTA tasks use DeepDTA's folds (validation = a seeded "
                                    f"{c.dta_valid_fraction:.0%} of the training folds)")
            if c.split_col is not None:
                raise FinetuneError("--split-col does not apply to DTA tasks")
            c.split = DTA_SPLIT
            if not 0 < c.dta_valid_fraction < 1:
                raise FinetuneError(f"--dta-valid-fraction={c.dta_valid_fraction!r}: must be in (0, 1)")
        else:
            if c.split is None:
                c.split = "column" if c.split_col is not None else "scaffold"
            if c.split not in SPLITS:
                raise FinetuneError(f"--split {c.split!r}: allowed: {', '.join(SPLITS.names())}")
            if c.split == "column" and c.split_col is None:
                raise FinetuneError("--split column needs --split-col NAME")
            if c.split_col is not None and c.split != "column":
                raise FinetuneError(f"--split-col {c.split_col!r} is only used with --split column, not {c.split}")
            fr = c.split_fractions
            if len(fr) != 3 or any(not isinstance(x, (int, float)) or not 0 <= x <= 1 for x in fr) or abs(sum(fr) - 1) > 1e-6:
                raise FinetuneError(f"--split-fractions {list(fr)}: three numbers in [0, 1] summing to 1")

        # protocol defaults: the protocol's values, then the task type's, for every option left unset
        from graphmvp.finetune.protocols import PROTOCOLS, SCHEDULES

        if c.protocol not in PROTOCOLS:
            raise FinetuneError(f"--protocol {c.protocol!r}: allowed: {', '.join(PROTOCOLS.names())}")
        protocol_values = PROTOCOLS.get(c.protocol).defaults(c.task_type)
        if c.task_type == "classification":
            protocol_values["standardize"] = False
        for name, value in protocol_values.items():
            if getattr(c, name) is None:
                setattr(c, name, value)
        c.dropout = ttype.dropout if c.dropout is None else c.dropout
        c.epochs = ttype.epochs if c.epochs is None else c.epochs
        c.lr = ttype.lr if c.lr is None else c.lr
        c.batch_size = ttype.batch_size if c.batch_size is None else c.batch_size
        _int(c, "epochs", 1)
        _int(c, "batch_size", 2)
        _float(c, "lr", positive=True)
        _float(c, "weight_decay")
        _float(c, "encoder_lr_scale")
        _float(c, "warmup_epochs")
        _float(c, "grad_clip")
        _int(c, "patience", 0)
        if c.lr_schedule not in SCHEDULES:
            raise FinetuneError(f"--lr-schedule {c.lr_schedule!r}: allowed: {', '.join(SCHEDULES.names())}")
        if not 0 <= float(c.dropout) < 1:
            raise FinetuneError(f"--dropout={c.dropout!r}: must be in [0, 1)")
        if c.encoder is not None:
            from graphmvp.pretrained import two_d_encoders

            if c.encoder not in two_d_encoders():
                raise FinetuneError(f"--encoder {c.encoder!r}: allowed: {', '.join(two_d_encoders())}")
        if c.gps_attn_dropout is not None and not (isinstance(c.gps_attn_dropout, (int, float))
                                                   and 0 <= c.gps_attn_dropout < 1):
            raise FinetuneError(f"--gps-attn-dropout={c.gps_attn_dropout!r}: must be in [0, 1)")
        if c.gps_rwse_norm is not None and c.gps_rwse_norm not in RWSE_NORMS:
            raise FinetuneError(f"--gps-rwse-norm {c.gps_rwse_norm!r}: allowed: {', '.join(RWSE_NORMS)}")
        for name in ("num_layers", "emb_dim", "head_hidden", "threads", "split_seed", "gps_hidden_dim", "gps_heads"):
            if getattr(c, name) is not None:
                _int(c, name, 0 if name == "split_seed" else 1)
        _int(c, "protein_length", 8)
        if c.jk is not None and c.jk not in JK_MODES:
            raise FinetuneError(f"--jk {c.jk!r}: allowed: {', '.join(JK_MODES)}")
        if c.pooling is not None and c.pooling not in READOUTS:
            raise FinetuneError(f"--pooling {c.pooling!r}: allowed: {', '.join(READOUTS)}")
        if c.head not in HEADS:
            raise FinetuneError(f"--head {c.head!r}: allowed: {', '.join(HEADS.names())}")
        from graphmvp.finetune.dta import DRUG_BATCHES, PROTEIN_ENCODERS

        if c.protein_encoder not in PROTEIN_ENCODERS:
            raise FinetuneError(f"--protein-encoder {c.protein_encoder!r}: allowed: {', '.join(PROTEIN_ENCODERS.names())}")
        if c.dta_drug_batch not in DRUG_BATCHES:
            raise FinetuneError(f"--dta-drug-batch {c.dta_drug_batch!r}: allowed: {', '.join(DRUG_BATCHES)}")
        if c.hydrogens not in HYDROGENS:
            raise FinetuneError(f"--hydrogens {c.hydrogens!r}: allowed: {', '.join(HYDROGENS)}")
        if c.hydrogens == "pretrained":
            c.hydrogens = pretrained_hydrogens(c.init, c.progress)
        if c.standardize and c.task_type == "classification":
            raise FinetuneError("--standardize applies to regression targets, not to classification")
        if not c.seeds:
            raise FinetuneError("--seeds is empty: give at least one seed")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in c.seeds):
            raise FinetuneError(f"--seeds {list(c.seeds)}: non-negative integers")
        if len(set(c.seeds)) != len(c.seeds):
            raise FinetuneError(f"--seeds {list(c.seeds)}: a seed is repeated")
        _int(c, "ensemble", 1)
        if c.extra_kind is not None:
            from graphmvp.finetune.extra_features import get_featurizer

            get_featurizer(c.extra_kind)
            if c.task_type == "dta":
                raise FinetuneError("--extra-features applies to molecule tasks, not to DTA")
        if c.graph_features not in GRAPH_FEATURES:
            raise FinetuneError(f"--graph-features {c.graph_features!r}: allowed: {', '.join(GRAPH_FEATURES)}")
        if c.graph_features != "hu" and c.task_type == "dta":
            raise FinetuneError(f"--graph-features {c.graph_features} applies to molecule tasks, not to DTA")
        if c.freeze_encoder and c.encoder_lr_scale != 1.0:
            raise FinetuneError("--freeze-encoder and --encoder-lr-scale exclude each other")
        if c.out is None:
            if c.init is None:
                init = "scratch" if c.encoder in (None, "gin") else f"scratch-{c.encoder}"
            else:
                init = _slug(Path(str(c.init)).name.removesuffix(".pt"))
            c.out = str(Path("runs") / "finetune" / f"{_slug(c.task_name)}-{init}")
        if not str(c.out).strip():
            raise FinetuneError("--out is empty")
        try:
            check_device_name(c.device)
        except DistOptionError as e:
            raise FinetuneError(str(e)) from None
        return c


#: ``--hydrogens`` values ("pretrained" resolves to the encoder's own setting)
HYDROGENS = ("drop", "keep", "pretrained")


def pretrained_hydrogens(init: Optional[str], progress: bool = True) -> str:
    """How the graphs of ``init``'s pretraining were built ("keep": explicit hydrogens as atoms,
    as in the released checkpoints; "drop"); "drop" without ``init`` or a recorded setting."""
    if init is None:
        return "drop"
    from graphmvp.finetune.model import build_encoder

    _, info = build_encoder(init, progress=progress, quiet=True)
    return str(info.config.get("hydrogens") or "drop")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "run"


def _int(c: FinetuneConfig, name: str, minimum: int) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise FinetuneError(f"--{name.replace('_', '-')}={v!r}: must be an integer >= {minimum}")


def _float(c: FinetuneConfig, name: str, positive: bool = False) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise FinetuneError(f"--{name.replace('_', '-')}={v!r}: must be a {'positive' if positive else 'non-negative'} number")


__all__ = ["DTA_SPLIT", "FinetuneConfig", "HYDROGENS", "pretrained_hydrogens"]
