"""Pretrained 2D encoders in one line: load a released name, a file or a run folder; embed SMILES.

>>> import graphmvp
>>> model, config = graphmvp.load_pretrained("graphmvp-bench1k")      # a released checkpoint
>>> z = graphmvp.embed(["CCO", "c1ccccc1O"], model)                     # float32 [2, 300]

Encoder files (``model_2d.pt`` of a pretraining run, released checkpoints, converted upstream
weights) hold ``{"format": "graphmvp-encoder-v1", "state_dict": <encoder state dict>, "config":
{...}}`` plus optional extras (``epoch``, ``loss``, ``converted_from``). ``config`` says how to
rebuild and feed the encoder: four fields for every encoder, and the constructor arguments of the
encoder (``build_encoder(encoder, **arguments)`` rebuilds it; what ``encoder.config()`` returns):

=================  ==========================================================================
``encoder``        registered 2D encoder name (``"gin"``, ``"graphgps"``)
``pooling``        graph readout used in pretraining ("mean", "sum", "max")
``hydrogens``      "keep": molecules are fed with explicit hydrogens as atoms (GEOM-style
                   pretraining graphs); "drop": heavy atoms only (graphs from SMILES)
``features``       featurisation, "hu-simple" (:mod:`graphmvp.features`)
``num_layers``     layers (both encoders)
``emb_dim``        output width D (both encoders)
``jk``             GIN: jumping knowledge ("last", "concat", "max", "sum")
``hidden_dim``     GraphGPS: layer width; ``heads``: attention heads; ``rwse_steps``:
                   random-walk encoding length
``dropout``        optional (default 0), like ``attn_dropout`` (GraphGPS, default 0.5) and the
                   table sizes ``num_atom_type`` / ``num_chirality`` (default 120 / 3)
=================  ==========================================================================

Every other constructor argument of the encoder is required. Keys the encoder does not take are
ignored.

Safety: files are read with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling), and
the config is checked against the weights' shapes and against this package's featurisation
before any ``load_state_dict``: a mismatch is a :class:`CheckpointMismatch` naming each
disagreeing field, not a shape error deep in PyTorch.
"""

from __future__ import annotations

import inspect
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
from graphmvp.io import atomic_path
from graphmvp.models import ENCODERS, JK_MODES, READOUTS, build_encoder, graph_readout

__all__ = [
    "ENCODER_FORMAT",
    "FEATURES",
    "HYDROGEN_MODES",
    "INVALID_POLICIES",
    "CheckpointError",
    "CheckpointMismatch",
    "check_encoder_config",
    "embed",
    "encoder_arguments",
    "encoder_from_config",
    "featurize_smiles",
    "load_encoder_file",
    "load_pretrained",
    "read_checkpoint",
    "resolve_init",
    "save_encoder_file",
    "two_d_encoders",
]

#: the ``format`` tag of an encoder file
ENCODER_FORMAT = "graphmvp-encoder-v1"
#: the featurisation of this package (graphmvp.features)
FEATURES = "hu-simple"
#: how molecules are fed: with explicit hydrogens as atoms, or heavy atoms only
HYDROGEN_MODES = ("keep", "drop")
#: what :func:`embed` does with a SMILES it cannot featurise
INVALID_POLICIES = ("raise", "nan")
#: the file inside a pretraining run folder that fine-tuning starts from
RUN_ENCODER_FILE = "model_2d.pt"

#: config fields of every encoder file (the rest are the encoder's constructor arguments)
_REQUIRED = ("encoder", "pooling", "hydrogens", "features")
#: constructor arguments a config may leave out (the constructor's default is used); the other
#: arguments of the encoder must be in the config
_OPTIONAL_ARGS = ("dropout", "attn_dropout", "num_atom_type", "num_chirality", "rwse_norm")
#: integer / probability-valued constructor arguments, checked before the encoder is built
_POSITIVE_INT_ARGS = ("num_layers", "emb_dim", "hidden_dim", "heads", "rwse_steps", "num_atom_type", "num_chirality")
_PROBABILITY_ARGS = ("dropout", "attn_dropout")
#: per-layer weights of the 2D encoders: GIN ``gnns.{i}.`` / ``batch_norms.{i}.``, GraphGPS ``layers.{i}.``
_LAYER_RE = re.compile(r"(?:gnns|batch_norms|layers)\.(\d+)\.")
#: words for the weights a config mismatch is most often about
_WEIGHT_NAMES = {"x_embedding1.weight": "atom-type table", "x_embedding2.weight": "chirality table",
                 "edge_embedding1.weight": "bond-type table", "edge_embedding2.weight": "bond-direction table"}
#: shape disagreements listed one by one before the rest are counted
_MAX_SHAPE_PROBLEMS = 6

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A file that is not a loadable encoder file (unreadable, unsafe, wrong layout)."""


class CheckpointMismatch(CheckpointError):
    """The encoder's stored config disagrees with its weights, with this package's featurisation,
    or with what the caller expects. ``problems`` lists each disagreement."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


# ---------------------------------------------------------------------------------- file level


def resolve_init(name_or_path: PathLike, *, urls: Sequence[str] | None = None, mirrors: Sequence[str] = (),
                 manifest=None, progress: bool = True) -> Path:
    """The encoder file meant by ``name_or_path`` (for ``--init`` options and :func:`load_pretrained`).

    * an existing file: that file;
    * an existing folder: a pretraining run folder, its ``model_2d.pt``;
    * otherwise a released checkpoint name (``graphmvp-download list``): the verified local copy
      (shipped with the package, cached, or downloaded now; see :func:`graphmvp.checkpoints.fetch`).

    An existing path wins over a checkpoint name of the same spelling. Raises ``ValueError`` when
    the argument is neither (listing the released names), :class:`CheckpointError` for a run
    folder without ``model_2d.pt``, and the download errors of :func:`graphmvp.checkpoints.fetch`.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise ValueError(f"expected a checkpoint name, an encoder file or a run folder, got {name_or_path!r}")
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        encoder = path / RUN_ENCODER_FILE
        if not encoder.is_file():
            raise CheckpointError(
                f"folder {path} has no {RUN_ENCODER_FILE}: expected a pretraining run folder "
                f"(graphmvp-pretrain --out) whose first epoch has finished"
            )
        return encoder
    from graphmvp.checkpoints import fetch, load_manifest

    manifest = manifest if manifest is not None else load_manifest()
    name = os.fspath(name_or_path)
    if name not in manifest:
        known = ", ".join(manifest.names()) or "none"
        raise ValueError(
            f"{name!r} is neither an existing file or run folder nor a released checkpoint "
            f"(released: {known})"
        )
    return fetch(name, urls=urls, mirrors=mirrors, manifest=manifest, progress=progress)


def read_checkpoint(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with its failures turned into CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except pickle.UnpicklingError as e:
        detail = str(e).strip().split("WeightsUnpickler error:")[-1].strip() or type(e).__name__
        if re.search(r"Unsupported (global|class)|GLOBAL", detail):
            raise CheckpointError(
                f"{path}: refused to load: the file contains objects other than tensors and plain "
                f"python values, and graphmvp only reads files with torch.load(weights_only=True) "
                f"({detail})"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch file ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({first})") from None


def _looks_like_upstream(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(
        isinstance(k, str) and k.endswith("x_embedding1.weight") for k in obj
    )


def load_encoder_file(path: PathLike, *, expect: Mapping[str, Any] | None = None,
                      map_location: str | torch.device = "cpu"):
    """Rebuild the 2D encoder stored in ``path``; return ``(model, config)``.

    The model is the registered 2D encoder the config names (a :class:`graphmvp.models.GIN`,
    a :class:`graphmvp.models.GraphGPS`) in eval mode on ``map_location``, with the config
    also attached as ``model.graphmvp_config``; ``config`` is the file's config with optional
    fields filled in. Floating-point weights stored in lower precision (released float16 files)
    are loaded into the model's float32 parameters.

    Args:
        expect: config values the caller needs (e.g. ``{"hydrogens": "drop", "emb_dim": 300}``);
            any disagreement is reported.

    Raises:
        CheckpointError: unreadable, unsafe (not ``weights_only``), not an encoder file (an
            upstream PyTorch-Geometric state dict gets a hint to run ``graphmvp-convert``).
        CheckpointMismatch: the config disagrees with the weights, with this package's
            featurisation or with ``expect`` (every disagreement listed).
    """
    path = Path(os.fspath(path)).expanduser()
    obj = read_checkpoint(path)
    if _looks_like_upstream(obj):
        raise CheckpointError(
            f"{path} is a bare state dict (upstream GraphMVP / pretrain-gnns layout?), not a "
            f"graphmvp encoder file: convert it first with `graphmvp-convert {path} OUT.pt "
            f"--hydrogens keep|drop`"
        )
    if not isinstance(obj, Mapping) or obj.get("format") != ENCODER_FORMAT:
        found = obj.get("format") if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a graphmvp encoder file: expected format {ENCODER_FORMAT!r}, found "
            f"{found!r} (a pretraining run's last.pt is not an encoder file; use its model_2d.pt)"
        )
    state = obj.get("state_dict")
    config = obj.get("config")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' must map parameter names to tensors")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: 'config' must be a mapping, got {type(config).__name__}")
    config = check_encoder_config(config, state, expect=expect, source=str(path))
    model = encoder_from_config(config)
    model_state = model.state_dict()
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append("weights missing: " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected weights: " + ", ".join(unexpected))
        raise CheckpointMismatch(str(path), problems)
    model.load_state_dict({k: v.to(model_state[k].dtype) for k, v in state.items()})
    model.to(map_location).eval()
    model.graphmvp_config = dict(config)
    return model, dict(config)


def two_d_encoders() -> list[str]:
    """Names of the registered encoders that take the 2D graph (``forward(g, atom=, bond=)``)."""
    return [n for n in ENCODERS.names() if "atom" in inspect.signature(ENCODERS.get(n).forward).parameters]


def _constructor_args(name: str) -> dict[str, inspect.Parameter]:
    params = inspect.signature(ENCODERS.get(name)).parameters
    return {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def encoder_arguments(config: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of ``config["encoder"]`` found in ``config`` (other keys dropped)."""
    args = _constructor_args(config["encoder"])
    return {k: config[k] for k in args if k in config}


def encoder_from_config(config: Mapping[str, Any]) -> torch.nn.Module:
    """A freshly initialised encoder of the architecture ``config`` describes (a checked encoder
    config: :func:`check_encoder_config`, or an ``encoder_config`` of a fine-tuned model)."""
    return build_encoder(config["encoder"], **encoder_arguments(config))


def check_encoder_config(config: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None, *,
                         expect: Mapping[str, Any] | None = None, source: str = "encoder") -> dict[str, Any]:
    """Validate an encoder config (and, if given, that ``state`` has the shapes it implies).

    Returns the config with optional fields filled in (from the encoder's constructor defaults).
    Raises :class:`CheckpointMismatch` listing every problem: missing fields, values this package
    does not support (encoder, features, hydrogens, jk, pooling, sizes), arguments the encoder
    rejects, shapes of ``state`` that disagree with the config (layers, widths, table sizes, e.g.
    a 4-row OGB chirality table under a config saying 3), and disagreements with ``expect``.
    """
    problems: list[str] = []
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise CheckpointMismatch(source, [f"config lacks {', '.join(missing)}"])
    cfg = dict(config)
    encoders = two_d_encoders()
    if cfg["encoder"] not in encoders:
        raise CheckpointMismatch(source, [f"encoder={cfg['encoder']!r} is not supported (allowed: {', '.join(encoders)})"])
    args = _constructor_args(cfg["encoder"])
    missing = [k for k, p in args.items() if k not in cfg and k not in _OPTIONAL_ARGS]
    if missing:
        raise CheckpointMismatch(source, [f"config lacks {', '.join(missing)} (needed by encoder={cfg['encoder']!r})"])
    if "rwse_norm" in args and "rwse_norm" not in cfg and state is not None and "rwse_norm.running_mean" in state:
        cfg["rwse_norm"] = "batchnorm"  # a GraphGPS file written before the option existed
    for key in _OPTIONAL_ARGS:
        if key in args and key not in cfg and args[key].default is not inspect.Parameter.empty:
            cfg[key] = args[key].default

    def allowed(key: str, values) -> None:
        values = list(values)
        if cfg[key] not in values:
            problems.append(f"{key}={cfg[key]!r} is not supported (allowed: {', '.join(map(str, values))})")

    if cfg["features"] != FEATURES:
        problems.append(
            f"features={cfg['features']!r}: this package featurises molecules as {FEATURES!r} "
            f"(Hu et al. atom type + chirality, bond type + direction); the encoder would see "
            f"inputs it was not trained on"
        )
    allowed("hydrogens", HYDROGEN_MODES)
    if "jk" in args:
        allowed("jk", JK_MODES)
    allowed("pooling", READOUTS)
    for key in _POSITIVE_INT_ARGS:
        if key in args and key in cfg:
            v = cfg[key]
            if args[key].default is None and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{key}={v!r} must be a positive integer")
    for key in _PROBABILITY_ARGS:
        if key in args and key in cfg:
            d = cfg[key]
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
                problems.append(f"{key}={d!r} must be a number in [0, 1)")
    skeleton = None
    if not problems:
        try:  # an architecture on the meta device: shapes only, no memory, no initialisation
            with torch.device("meta"):
                skeleton = encoder_from_config(cfg)
        except (ValueError, TypeError) as e:
            problems.append(f"the config does not describe a valid {cfg['encoder']!r} encoder: {e}")
    if skeleton is not None and state is not None:
        problems += _shape_problems(cfg, skeleton.state_dict(), state)
    for key, want in (expect or {}).items():
        have = cfg.get(key)
        if have != want:
            problems.append(f"{key}={have!r} but {want!r} is required")
    if problems:
        raise CheckpointMismatch(source, problems)
    return cfg


def _shape_problems(cfg: Mapping[str, Any], expected: Mapping[str, torch.Tensor],
                    state: Mapping[str, torch.Tensor]) -> list[str]:
    """Disagreements between the config (``expected``: the state dict of the architecture it
    describes) and the weights ``state``, in words."""
    problems: list[str] = []
    have_layers = {int(m.group(1)) for k in state if (m := _LAYER_RE.match(k))}
    want_layers = {int(m.group(1)) for k in expected if (m := _LAYER_RE.match(k))}
    if have_layers and have_layers != want_layers:
        problems.append(f"config says num_layers={cfg.get('num_layers')} but the weights have layers {sorted(have_layers)}")
    lacking, wrong = [], []
    for key, want in expected.items():
        m = _LAYER_RE.match(key)
        if m and int(m.group(1)) not in have_layers and have_layers != want_layers:
            continue  # explained by the layer count
        t = state.get(key)
        if t is None:
            lacking.append(key)
        elif tuple(t.shape) != tuple(want.shape):
            what = _WEIGHT_NAMES.get(key)
            if what:
                wrong.append(f"{what} should be {list(want.shape)} by the config but {key} is {list(t.shape)}")
            else:
                wrong.append(f"{key} should be {list(want.shape)} by the config but is {list(t.shape)}")
    if lacking:
        problems.append("weights lack " + ", ".join(lacking))
    problems += wrong[:_MAX_SHAPE_PROBLEMS]
    if len(wrong) > _MAX_SHAPE_PROBLEMS:
        problems.append(f"and {len(wrong) - _MAX_SHAPE_PROBLEMS} more weights have other shapes than the config implies")
    return problems


def save_encoder_file(path: PathLike, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                      *, dtype: torch.dtype | None = None, **extra: Any) -> Path:
    """Write an encoder file (atomically: temporary file + ``os.replace``) and return its path.

    ``config`` is validated against ``state_dict`` first. ``dtype`` (e.g. ``torch.float16`` for a
    small release file) converts the floating-point tensors; integer buffers stay as they are.
    ``extra`` values (plain python: numbers, strings, lists, dicts) are stored next to the weights.
    """
    cfg = check_encoder_config(config, state_dict, source=str(path))
    state = {}
    for k, v in state_dict.items():
        v = v.detach().to("cpu").clone()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v
    path = Path(os.fspath(path)).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"format": ENCODER_FORMAT, "state_dict": state, "config": cfg, **extra}, tmp)
    return path


def load_pretrained(name_or_path: PathLike, *, device: str | torch.device = "cpu",
                    expect: Mapping[str, Any] | None = None, urls: Sequence[str] | None = None,
                    mirrors: Sequence[str] = (), manifest=None, progress: bool = True):
    """A ready 2D encoder: ``(model, config)`` with ``model`` the stored 2D encoder (GIN,
    GraphGPS) in eval mode on ``device``.

    ``name_or_path``: a released checkpoint name (``graphmvp-download list``; shipped ones load
    offline, others are downloaded and verified on first use), an encoder file, or a pretraining
    run folder (its ``model_2d.pt``). For a released name, the config stored in the file must equal
    the manifest's. ``urls`` / ``mirrors`` / ``manifest`` (default: the shipped one) are passed
    to :func:`resolve_init`; ``expect`` to :func:`load_encoder_file`. Use the model with :func:`embed`, or as ``model(g)`` on a batched 2D DGL graph
    (node representations [N, D]; pool them with ``graph_readout(g, h, config["pooling"])``).
    """
    path = resolve_init(name_or_path, urls=urls, mirrors=mirrors, manifest=manifest, progress=progress)
    model, config = load_encoder_file(path, expect=expect, map_location=device)
    if not Path(os.fspath(name_or_path)).expanduser().exists():  # it was a released name
        from graphmvp.checkpoints import load_manifest

        entry = (manifest if manifest is not None else load_manifest()).get(os.fspath(name_or_path))
        differ = [f"{k}: manifest {v!r}, file {config.get(k)!r}" for k, v in entry.config.items() if config.get(k) != v]
        if differ:
            raise CheckpointMismatch(str(path), ["the manifest entry and the file disagree on " + "; ".join(differ)])
    return model, config


# ---------------------------------------------------------------------------------- embeddings


def featurize_smiles(smiles: str, hydrogens: str):
    """The 2D graph of one SMILES as a :class:`graphmvp.molgraph.MolGraph`.

    ``hydrogens="keep"`` adds explicit hydrogens as atoms (as in GEOM-style pretraining graphs);
    ``"drop"`` keeps the heavy atoms only. Raises ``ValueError`` with the reason for a SMILES that
    RDKit cannot parse, an empty molecule, or atoms/bonds the features cannot express.
    """
    from graphmvp.features import downstream_graph, parse_smiles

    if hydrogens not in HYDROGEN_MODES:
        raise ValueError(f"hydrogens={hydrogens!r}; allowed: {', '.join(HYDROGEN_MODES)}")
    if not isinstance(smiles, str):
        raise ValueError(f"not a string: {smiles!r}")
    return downstream_graph(parse_smiles(smiles), hydrogens)  # SmilesError is a ValueError with the reason


def _model_and_config(model, config):
    if isinstance(model, (str, os.PathLike)):
        model, loaded = load_pretrained(model)
        config = config if config is not None else loaded
    elif isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        model, loaded = model
        config = config if config is not None else loaded
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"model must be a GIN or another 2D encoder (from load_pretrained / load_encoder_file), the (model, config) "
            f"pair they return, or a checkpoint name/path; got {type(model).__name__}"
        )
    if config is None:
        config = getattr(model, "graphmvp_config", None)
    if config is None:
        raise ValueError(
            "embed needs the encoder's config (hydrogens, pooling): pass config=, or a model "
            "from load_pretrained / load_encoder_file (which carries it)"
        )
    for key in ("hydrogens", "pooling"):
        if key not in config:
            raise ValueError(f"the encoder config lacks {key!r}")
    return model, config


def embed(smiles: str | Sequence[str], model, config: Mapping[str, Any] | None = None, *,
          on_invalid: str = "raise", batch_size: int = 256) -> torch.Tensor:
    """Graph embeddings of SMILES strings: float32 [B, out_dim] on the CPU, one row per SMILES.

    Args:
        smiles: a list of SMILES (a single string counts as a list of one).
        model: a 2D encoder from :func:`load_pretrained` / :func:`load_encoder_file`, the ``(model,
            config)`` pair they return, or a name/path passed to :func:`load_pretrained`.
        config: the encoder config; default: the one the model carries. Its ``hydrogens`` decides
            whether explicit hydrogens are added to each molecule, its ``pooling`` how node
            representations are pooled.
        on_invalid: what happens with SMILES that cannot be featurised (unparsable, empty, dummy
            atoms, unsupported bonds):

            * ``"raise"`` (default): ``ValueError`` listing every bad SMILES with its position and
              reason; nothing is computed.
            * ``"nan"``: their rows are NaN, and one ``UserWarning`` lists them.
        batch_size: molecules per forward pass.

    The model runs in eval mode under ``torch.no_grad()`` (its training flag is restored after),
    so a molecule's embedding does not depend on the other molecules of the call.
    """
    if on_invalid not in INVALID_POLICIES:
        raise ValueError(f"on_invalid={on_invalid!r}; allowed: {', '.join(INVALID_POLICIES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(smiles, str):
        smiles = [smiles]
    smiles = list(smiles)
    model, config = _model_and_config(model, config)
    if config["pooling"] not in READOUTS:
        raise ValueError(f"pooling={config['pooling']!r}; allowed: {', '.join(READOUTS)}")

    graphs, bad = {}, []
    for i, s in enumerate(smiles):
        try:
            graphs[i] = featurize_smiles(s, config["hydrogens"])
        except ValueError as e:
            bad.append(f"#{i} {s!r} ({e})")
    if bad and on_invalid == "raise":
        raise ValueError(
            f"{len(bad)} of {len(smiles)} SMILES cannot be embedded: " + "; ".join(bad)
            + " (pass on_invalid='nan' to get NaN rows for them instead)"
        )
    if bad:
        warnings.warn(
            f"{len(bad)} of {len(smiles)} SMILES cannot be embedded; their rows are NaN: " + "; ".join(bad),
            UserWarning,
            stacklevel=2,
        )

    from graphmvp.data.collate import batch_mol_graphs

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out_dim = int(getattr(model, "out_dim", config.get("emb_dim", 0)))
    out = torch.full((len(smiles), out_dim), float("nan"), dtype=torch.float32)
    valid = np.fromiter(graphs.keys(), dtype=np.int64, count=len(graphs))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(valid), batch_size):
                rows = valid[start : start + batch_size]
                g = batch_mol_graphs([graphs[int(i)] for i in rows]).to(device)
                h = model(g)
                out[torch.from_numpy(rows)] = graph_readout(g, h, config["pooling"]).float().cpu()
    finally:
        model.train(was_training)
    return out
