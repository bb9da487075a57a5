"""The fine-tuning model: pretrained (or random) 2D encoder, graph pooling, a prediction head.

::

    h   = molecule_model(g)              [N, D]   node representations of the 2D encoder (GIN, GraphGPS)
    z   = pool(g, h)                     [B, D]   mean / sum / max over each molecule's atoms
    out = head(z)                        [B, T]   logits (classification) or values (regression)

Dropout is the encoder's own: applied after every GIN layer, as in Hu et al.'s and GraphMVP's
fine-tuning (0.5 for classification, 0.2 for regression by default), or inside every GraphGPS
layer (after the local model, the attention and in the FFN); the MLP head applies the
same rate between its two layers. Heads (:data:`HEADS`): ``linear`` (``graph_pred_linear``, the
upstream name, so the state dict reads ``molecule_model.*`` + ``graph_pred_linear.*`` like the
upstream fine-tuning wrapper) and ``mlp`` (``graph_pred_mlp``: Linear(D, H) - ReLU - Dropout -
Linear(H, T), H = D by default).

The encoder comes from :func:`build_encoder` with ``init``: None (random initialisation, the
"no pretraining" baseline; a GIN unless another registered 2D encoder is named), a pretraining
run folder (its ``model_2d.pt``), an encoder file, or a released checkpoint name; loading goes
through :func:`graphmvp.pretrained.resolve_init` and
:func:`graphmvp.pretrained.load_encoder_file` (``torch.load(weights_only=True)``, the stored config
checked against the weights), which rebuilds whichever registered 2D encoder the file's config
names (``gin``, ``graphgps``). Architecture options the user gives explicitly (encoder, layers,
width, JK, other constructor arguments) must equal the checkpoint's, otherwise a one-line
:class:`FinetuneError` lists the differences before any training.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
import dgl

from graphmvp.finetune.errors import FinetuneError
from graphmvp.models import READOUTS, graph_readout
from graphmvp.models import build_encoder as build_registered_encoder
from graphmvp.models.descriptor_embedding import DescriptorEmbedding
from graphmvp.models.gin import GIN
from graphmvp.registry import Registry

log = logging.getLogger(__name__)


def _linear_head(in_dim: int, num_tasks: int, hidden: Optional[int], dropout: float) -> nn.Module:
    return nn.Linear(in_dim, num_tasks)


def _mlp_head(in_dim: int, num_tasks: int, hidden: Optional[int], dropout: float) -> nn.Module:
    hidden = int(hidden or in_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_tasks))


@dataclass(frozen=True)
class HeadSpec:
    """A prediction head: its attribute name in the model and its builder
    ``build(in_dim, num_tasks, hidden, dropout) -> nn.Module``."""

    attribute: str
    build: Callable[[int, int, Optional[int], float], nn.Module]


#: head name -> :class:`HeadSpec`
HEADS: Registry = Registry("head")
HEADS.register("linear")(HeadSpec("graph_pred_linear", _linear_head))
HEADS.register("mlp")(HeadSpec("graph_pred_mlp", _mlp_head))

#: ``--graph-features``: ``hu`` (the encoder's own input, Hu et al.'s features) or ``chemprop``
#: (plus :mod:`graphmvp.descriptors` in a :class:`DescriptorEmbedding` of the fine-tuning model)
GRAPH_FEATURES = ("hu", "chemprop")


def _require_gin(encoder: nn.Module, graph_features: str) -> None:
    """The atom and bond descriptor tables add to a GIN's own embeddings: other encoders are refused."""
    if not isinstance(encoder, GIN):
        raise FinetuneError(f"--graph-features {graph_features} needs a GIN encoder, not {type(encoder).__name__}")


def descriptor_embedding(graph_features: str, encoder: nn.Module, zero_init: bool) -> Optional[DescriptorEmbedding]:
    """The :class:`DescriptorEmbedding` that ``graph_features`` asks for beside ``encoder`` (None for
    ``hu``); ``zero_init`` for a pretrained encoder, whose function it then leaves unchanged at the
    start of fine-tuning."""
    if graph_features not in GRAPH_FEATURES:
        raise FinetuneError(f"--graph-features {graph_features!r}: allowed: {', '.join(GRAPH_FEATURES)}")
    if graph_features == "hu":
        return None
    _require_gin(encoder, graph_features)
    from graphmvp.descriptors import ATOM_DESCRIPTORS, BOND_DESCRIPTORS

    return DescriptorEmbedding(ATOM_DESCRIPTORS, BOND_DESCRIPTORS, encoder.emb_dim, encoder.num_layers, zero_init)


class FinetuneModel(nn.Module):
    """2D encoder + pooling + head (see the module docstring).

    Args:
        encoder: the 2D encoder, ``encoder(g) -> [N, D]`` (its ``dropout`` attribute is the
            fine-tuning dropout; its ``out_dim`` or ``emb_dim`` the width D).
        num_tasks: T, outputs per molecule.
        pooling: one of ``READOUTS``.
        head: one of ``HEADS``.
        head_hidden: hidden width of the MLP head (default: the encoder width).
        extra_dim: width E of molecule-level extra features (``--extra-features``,
            :mod:`graphmvp.finetune.extra_features`; 0 = none). They are standardised with the buffers
            ``extra_mean`` / ``extra_std`` (the training split's statistics, set with
            :meth:`set_extra_statistics`, saved in the state dict) and concatenated to the pooled
            embedding: the head's input is D + E wide.
        descriptors: ``None``, or a :class:`DescriptorEmbedding` of chemprop's atom and bond
            descriptors (``--graph-features chemprop``; GIN encoders only). Its sums are added to
            the encoder's input embedding and to each layer's edge embedding; the batched graph
            must then hold ``ndata['atom_desc']`` and ``edata['bond_desc']``. It is an attribute of
            this model, not of the encoder, whose state dict stays that of the pretrained file.

    Forward: ``g`` batched 2D DGL graph of B molecules (and, with ``extra_dim``, the raw extra
    features float [B, E]) -> float [B, T].
    """

    def __init__(self, encoder: nn.Module, num_tasks: int, pooling: str = "mean", head: str = "linear",
                 head_hidden: Optional[int] = None, extra_dim: int = 0,
                 descriptors: Optional[DescriptorEmbedding] = None):
        super().__init__()
        if pooling not in READOUTS:
            raise ValueError(f"unknown pooling {pooling!r}; allowed: {', '.join(READOUTS)}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; allowed: {', '.join(HEADS.names())}")
        if int(num_tasks) < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks!r}")
        self.molecule_model = encoder
        if descriptors is not None:
            _require_gin(encoder, "chemprop")
        self.descriptor_embedding = descriptors
        self.pooling = pooling
        self.head_name = head
        spec: HeadSpec = HEADS.get(head)
        self._head_attr = spec.attribute
        out_dim = int(getattr(encoder, "out_dim", getattr(encoder, "emb_dim")))
        self.extra_dim = int(extra_dim)
        if self.extra_dim < 0:
            raise ValueError(f"extra_dim must be >= 0, got {extra_dim!r}")
        if self.extra_dim:  # registered only when used: a model without extra features is unchanged
            self.register_buffer("extra_mean", torch.zeros(self.extra_dim))
            self.register_buffer("extra_std", torch.ones(self.extra_dim))
        setattr(self, spec.attribute, spec.build(out_dim + self.extra_dim, int(num_tasks), head_hidden,
                                                 float(getattr(encoder, "dropout", 0.0))))

    @property
    def head(self) -> nn.Module:
        return getattr(self, self._head_attr)

    def embed(self, g: dgl.DGLGraph) -> Tensor:
        """Pooled molecule representations [B, D]."""
        if self.descriptor_embedding is None:
            return graph_readout(g, self.molecule_model(g), self.pooling)
        if "atom_desc" not in g.ndata or "bond_desc" not in g.edata:
            raise ValueError("this model needs g.ndata['atom_desc'] and g.edata['bond_desc'] (--graph-features chemprop)")
        node_extra, edge_extra = self.descriptor_embedding(g.ndata["atom_desc"], g.edata["bond_desc"])
        return graph_readout(g, self.molecule_model(g, node_extra=node_extra, edge_extra=edge_extra), self.pooling)

    def set_extra_statistics(self, mean, std) -> None:
        """The standardisation of the extra features (the training split's mean and std)."""
        self.extra_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.extra_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, g: dgl.DGLGraph, extra: Optional[Tensor] = None) -> Tensor:
        z = self.embed(g)
        if self.extra_dim:
            if extra is None or extra.shape != (z.shape[0], self.extra_dim):
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"this model needs extra features [{z.shape[0]}, {self.extra_dim}], got {got}")
            z = torch.cat([z, (extra.to(z.dtype) - self.extra_mean) / self.extra_std], dim=1)
        return self.head(z)


@dataclass
class EncoderInit:
    """Where the encoder's weights came from.

    ``init``: the ``--init`` value (None = random); ``path``: the encoder file read;
    ``config``: the encoder config (from the file, or the one built for random init);
    ``method``: a short label for tables ("no pretraining", the pretraining preset, the
    checkpoint name or file stem); ``pretrain``: the pretraining run's config when ``init`` is a
    run folder (or the file sits in one).
    """

    init: Optional[str]
    path: Optional[str]
    config: dict
    method: str
    pretrain: Optional[dict] = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"init": self.init, "path": self.path, "config": self.config, "method": self.method,
                "pretrain": self.pretrain, "warnings": self.warnings}


def _run_config(folder: Path) -> Optional[dict]:
    """The pretraining config stored in a run folder (config.yaml or config.json), if any."""
    for name in ("config.yaml", "config.json"):
        p = folder / name
        if p.is_file():
            try:
                if name.endswith(".yaml"):
                    import yaml

                    doc = yaml.safe_load(p.read_text())
                else:
                    doc = json.loads(p.read_text())
            except Exception:  # noqa: BLE001 - an unreadable side file only loses the label
                return None
            return doc if isinstance(doc, dict) else None
    return None


def method_label(init: Optional[str], path: Optional[Path], pretrain: Optional[dict]) -> str:
    """A short name for the pretraining behind ``init`` (see :class:`EncoderInit`)."""
    if init is None:
        return "no pretraining"
    if pretrain:
        if pretrain.get("preset"):
            return str(pretrain["preset"])
        loss = pretrain.get("loss")
        if loss:
            return "+".join(loss) if isinstance(loss, (list, tuple)) else str(loss)
    p = Path(os.fspath(init)).expanduser()
    if not p.exists():
        return str(init)  # a released checkpoint name
    return (p if p.is_dir() else p.parent if p.name in ("model_2d.pt", "best_model_2d.pt") else p.with_suffix("")).name


def _random_encoder(encoder: Optional[str], num_layers: Optional[int], emb_dim: Optional[int], jk: Optional[str],
                    dropout: float, hydrogens: str, options: Mapping[str, Any]) -> tuple[nn.Module, dict]:
    """A randomly initialised 2D encoder (the "no pretraining" baseline) and its config."""
    from graphmvp.pretrained import FEATURES, encoder_arguments, two_d_encoders

    name = encoder or "gin"
    if name not in two_d_encoders():
        raise FinetuneError(f"--encoder {name!r}: allowed: {', '.join(two_d_encoders())}")
    wanted = {"encoder": name, "num_layers": int(num_layers or 5), "emb_dim": int(emb_dim or 300),
              "dropout": float(dropout), **dict(options)}
    if jk is not None or name == "gin":
        wanted["jk"] = jk or "last"
    kwargs = encoder_arguments(wanted)
    ignored = sorted(set(wanted) - set(kwargs) - {"encoder"})
    if ignored:
        raise FinetuneError(f"encoder {name!r} takes no {', '.join(ignored)}")
    try:
        model = build_registered_encoder(name, **kwargs)
    except ValueError as e:
        raise FinetuneError(str(e)) from None
    described = model.config() if callable(getattr(model, "config", None)) else kwargs
    cfg = {"encoder": name, **described, "pooling": "mean", "hydrogens": hydrogens, "features": FEATURES}
    return model, cfg


def build_encoder(init: Optional[str], *, num_layers: Optional[int] = None, emb_dim: Optional[int] = None,
                  jk: Optional[str] = None, dropout: float = 0.0, progress: bool = True,
                  hydrogens: str = "drop", quiet: bool = False, encoder: Optional[str] = None,
                  encoder_options: Optional[Mapping[str, Any]] = None) -> tuple[nn.Module, EncoderInit]:
    """The 2D encoder for fine-tuning, and where it came from.

    ``encoder``: the registered 2D encoder (None = the checkpoint's; "gin" for random init).
    ``num_layers`` / ``emb_dim`` / ``jk``: None = the checkpoint's (5 / 300 / "last" for a random
    GIN); a given value must equal the checkpoint's. ``encoder_options``: further constructor
    arguments (e.g. GraphGPS's ``hidden_dim``, ``heads``): used for random init, required to
    equal the checkpoint's otherwise. ``dropout`` is set on the encoder whatever the checkpoint
    was pretrained with. ``hydrogens``: how the downstream graphs are built; a checkpoint
    pretrained the other way gets a warning (not an error: upstream fine-tunes hydrogen-free
    graphs on an encoder pretrained with hydrogens). Raises :class:`FinetuneError` (one line)
    for an unresolvable ``init``, an unreadable file or a mismatch. ``quiet``: record warnings
    in the returned :class:`EncoderInit` without logging them.
    """
    if not 0 <= float(dropout) < 1:
        raise FinetuneError(f"--dropout={dropout!r}: must be in [0, 1)")
    options = dict(encoder_options or {})
    if init is None:
        model, cfg = _random_encoder(encoder, num_layers, emb_dim, jk, float(dropout), hydrogens, options)
        label = "no pretraining" if cfg["encoder"] == "gin" else f"no pretraining ({cfg['encoder']})"
        return model, EncoderInit(None, None, cfg, label)

    from graphmvp.pretrained import CheckpointError, load_encoder_file, resolve_init

    given = {"encoder": encoder, "num_layers": num_layers, "emb_dim": emb_dim, "jk": jk, **options}
    expect = {k: v for k, v in given.items() if v is not None}
    try:
        path = resolve_init(init, progress=progress)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError; download errors too
        raise FinetuneError(f"--init {init}: {_first_line(e)}") from None
    except RuntimeError as e:  # graphmvp.download.DownloadProblem
        raise FinetuneError(f"--init {init}: {e}") from None
    try:
        model, cfg = load_encoder_file(path, expect=expect or None)
    except CheckpointError as e:
        raise FinetuneError(f"--init {init}: checkpoint does not fit: {_first_line(e)}") from None
    model.dropout = float(dropout)
    model.train()
    folder = Path(path).parent
    pretrain = _run_config(folder)
    info = EncoderInit(str(init), str(path), dict(cfg), method_label(str(init), Path(path), pretrain), pretrain)
    if cfg.get("hydrogens") != hydrogens:
        if cfg.get("hydrogens") == "keep":
            msg = ("the encoder was pretrained on graphs with explicit hydrogens (hydrogens=keep); the downstream "
                   "graphs have none (the upstream setting, GraphMVP issue #14; --hydrogens keep adds them)")
        else:
            msg = (f"the encoder was pretrained on graphs with hydrogens={cfg.get('hydrogens')}, the downstream graphs "
                   f"use hydrogens={hydrogens}")
        info.warnings.append(msg)
        if not quiet:
            log.warning("%s", msg)
    return model, info


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "EncoderInit",
    "FinetuneModel",
    "HEADS",
    "HeadSpec",
    "build_encoder",
    "count_parameters",
    "method_label",
]
