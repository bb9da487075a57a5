"""``graphmvp-convert``: upstream PyTorch-Geometric GIN weights -> a graphmvp encoder file.

Reads state dicts in the layout of the upstream GIN (Hu et al.'s "simple" features):

* GraphMVP's ``pretraining_model.pth`` (the 2D GIN's state dict as it is),
* GraphMVP fine-tune checkpoints (the GIN under a ``molecule_model.`` prefix, next to a
  ``graph_pred_linear`` head that is not part of the encoder and is left out),
* Hu et al. pretrain-gnns checkpoints (same keys as GraphMVP's, no prefix),

and writes ``{"format": "graphmvp-encoder-v1", "state_dict", "config", "converted_from"}`` for
:func:`graphmvp.load_pretrained` / ``graphmvp-finetune --init``. The keys of our
:class:`graphmvp.models.GIN` equal the upstream ones, so the conversion is: find the encoder's
prefix, check every expected key and shape, infer the architecture (layers, width, table sizes)
from the shapes, and list what was left out. The converted model computes the same node and graph
embeddings as the upstream model (checked against a dense reimplementation of the upstream layer
equations in ``tests/test_convert.py``).

What is not in an upstream state dict and must be stated: ``--hydrogens`` (how molecules were fed
when the weights were trained: GraphMVP's pretraining graphs keep explicit hydrogens from GEOM;
fine-tuning and Hu et al.'s graphs come from SMILES without them), ``--jk`` and ``--pooling``
(upstream defaults: last, mean).

Checks: every expected key must be present with the expected shape (missing ones are listed and
nothing is written); keys outside the encoder (e.g. ``graph_pred_linear.*``) are listed as left
out (``--strict`` turns them into an error). BatchNorm ``num_batches_tracked`` counters absent from
old files are filled with 0 (they do not affect the forward pass) and reported. Non-GIN layers
(upstream's GCN/GAT/GraphSAGE options) and the OGB-feature GIN are rejected with a message.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from graphmvp.pretrained import (
    ENCODER_FORMAT,
    FEATURES,
    HYDROGEN_MODES,
    CheckpointError,
    read_checkpoint,
    load_encoder_file,
    save_encoder_file,
)

__all__ = [
    "ConversionError",
    "Conversion",
    "convert_file",
    "convert_state_dict",
    "expected_keys",
    "main",
]

PROG = "graphmvp-convert"
_ANCHOR = "x_embedding1.weight"
_LAYER_KEYS = (
    "mlp.0.weight",
    "mlp.0.bias",
    "mlp.2.weight",
    "mlp.2.bias",
    "edge_embedding1.weight",
    "edge_embedding2.weight",
)
_NORM_KEYS = ("weight", "bias", "running_mean", "running_var")
_COUNTER = "num_batches_tracked"
_LAYER_RE = re.compile(r"gnns\.(\d+)\.")


class ConversionError(ValueError):
    """The state dict is not the upstream simple-feature GIN layout (the message lists why)."""


@dataclass
class Conversion:
    """Result of :func:`convert_state_dict`.

    ``state_dict``: our GIN's state dict (CPU float tensors). ``config``: the encoder config.
    ``prefix``: the key prefix the encoder was found under (``""`` for a bare GIN).
    ``left_out``: keys of the input not used (other models' weights, prediction heads).
    ``filled``: keys absent from the input and filled in (``num_batches_tracked`` = 0).
    """

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    prefix: str
    left_out: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    def report(self) -> str:
        """A human-readable account of the conversion (several lines)."""
        c = self.config
        lines = [
            f"GIN: {c['num_layers']} layers, emb_dim {c['emb_dim']}, atom-type table {c['num_atom_type']} rows, "
            f"chirality table {c['num_chirality']} rows; jk {c['jk']}, pooling {c['pooling']}, hydrogens {c['hydrogens']}",
            f"encoder prefix: {self.prefix!r}" if self.prefix else "encoder prefix: none (bare GIN state dict)",
            f"{len(self.state_dict)} tensors converted",
        ]
        if self.left_out:
            lines.append(f"left out ({len(self.left_out)} keys not part of the encoder): " + ", ".join(self.left_out))
        if self.filled:
            lines.append(f"filled ({len(self.filled)} keys absent from the input, set to 0): " + ", ".join(self.filled))
        return "\n".join(lines)


def expected_keys(num_layers: int) -> list[str]:
    """The upstream GIN's state-dict keys for ``num_layers`` layers, in upstream order."""
    keys = ["x_embedding1.weight", "x_embedding2.weight"]
    keys += [f"gnns.{i}.{k}" for i in range(num_layers) for k in _LAYER_KEYS]
    keys += [f"batch_norms.{i}.{k}" for i in range(num_layers) for k in (*_NORM_KEYS, _COUNTER)]
    return keys


def _find_prefix(keys: Sequence[str], prefix: Optional[str]) -> str:
    if prefix is not None:
        if prefix + _ANCHOR not in keys:
            raise ConversionError(
                f"no key {prefix + _ANCHOR!r}: the prefix {prefix!r} does not hold a GIN "
                f"(keys ending in {_ANCHOR!r}: {', '.join(k for k in keys if k.endswith(_ANCHOR)) or 'none'})"
            )
        return prefix
    found = [k[: -len(_ANCHOR)] for k in keys if k.endswith(_ANCHOR)]
    if not found:
        hint = ""
        if any("atom_encoder" in k for k in keys):
            hint = " (this looks like the OGB-feature GIN of the regression variant, which is not supported)"
        shown = ", ".join(list(keys)[:8]) + (", ..." if len(keys) > 8 else "")
        raise ConversionError(
            f"no upstream simple-feature GIN found: no key ends in {_ANCHOR!r}{hint}; keys: {shown or 'none'}"
        )
    if len(found) > 1:
        raise ConversionError(
            f"several GINs in this state dict (prefixes {', '.join(repr(p) for p in found)}); choose one with --prefix"
        )
    return found[0]


def convert_state_dict(
    upstream: Mapping[str, Any],
    *,
    hydrogens: str,
    jk: str = "last",
    pooling: str = "mean",
    prefix: Optional[str] = None,
    strict: bool = False,
) -> Conversion:
    """Convert an upstream GIN state dict (see the module docstring).

    Args:
        upstream: the loaded state dict (key -> tensor).
        hydrogens: "keep" or "drop" (how molecules were fed to these weights).
        jk, pooling: the upstream model's jumping knowledge and graph pooling (not stored there).
        prefix: the encoder's key prefix; default: found from the key ending in
            ``x_embedding1.weight`` (``""`` or e.g. ``"molecule_model."``).
        strict: refuse keys outside the encoder instead of leaving them out.

    Raises:
        ConversionError: no GIN, several GINs, missing keys, wrong shapes, non-GIN layers, or (with
            ``strict``) extra keys; every offending key is named.
        ValueError: bad ``hydrogens``/``jk``/``pooling`` values.
    """
    from graphmvp.models import JK_MODES, READOUTS

    if hydrogens not in HYDROGEN_MODES:
        raise ValueError(f"hydrogens={hydrogens!r}; allowed: {', '.join(HYDROGEN_MODES)}")
    if jk not in JK_MODES:
        raise ValueError(f"jk={jk!r}; allowed: {', '.join(JK_MODES)}")
    if pooling not in READOUTS:
        raise ValueError(f"pooling={pooling!r}; allowed: {', '.join(READOUTS)}")
    if not isinstance(upstream, Mapping):
        raise ConversionError(f"expected a state dict (mapping of names to tensors), got {type(upstream).__name__}")
    keys = [k for k in upstream if isinstance(k, str)]
    prefix = _find_prefix(keys, prefix)
    inner = {k[len(prefix):]: upstream[k] for k in keys if k.startswith(prefix)}
    outside = sorted(k for k in upstream if not (isinstance(k, str) and k.startswith(prefix)))
    non_tensor = sorted(k for k, v in inner.items() if not isinstance(v, torch.Tensor))
    if non_tensor:
        raise ConversionError("values that are not tensors: " + ", ".join(prefix + k for k in non_tensor))

    layers = sorted({int(m.group(1)) for k in inner if (m := _LAYER_RE.match(k))})
    if not layers:
        raise ConversionError(f"no GIN layers: no key starts with {prefix + 'gnns.0.'!r}")
    num_layers = layers[-1] + 1
    if layers != list(range(num_layers)):
        raise ConversionError(f"GIN layers are not numbered 0..{num_layers - 1}: found {layers}")
    for i in layers:
        if f"gnns.{i}.mlp.0.weight" not in inner:
            other = sorted(k[len(f'gnns.{i}.'):] for k in inner if k.startswith(f"gnns.{i}."))
            raise ConversionError(
                f"layer {i} is not a GIN layer (its keys: {', '.join(other)}); only the upstream GIN "
                f"(gnn_type gin) is supported, not GCN/GAT/GraphSAGE layers"
            )

    atom_table = inner.get("x_embedding1.weight")
    if not isinstance(atom_table, torch.Tensor) or atom_table.dim() != 2:
        shape = list(atom_table.shape) if isinstance(atom_table, torch.Tensor) else None
        raise ConversionError(f"{prefix + _ANCHOR} must be a [num_atom_type, emb_dim] matrix, got shape {shape}")
    emb_dim = int(atom_table.shape[1])
    expected = expected_keys(num_layers)
    missing = [k for k in expected if k not in inner and not k.endswith(_COUNTER)]
    if missing:
        raise ConversionError(
            f"{len(missing)} key(s) of the upstream GIN layout are missing: "
            + ", ".join(prefix + k for k in missing)
        )
    chir_table = inner["x_embedding2.weight"]
    shapes = {
        "x_embedding1.weight": (None, emb_dim),
        "x_embedding2.weight": (None, emb_dim),
    }
    d = emb_dim
    for i in range(num_layers):
        shapes.update({
            f"gnns.{i}.mlp.0.weight": (2 * d, d),
            f"gnns.{i}.mlp.0.bias": (2 * d,),
            f"gnns.{i}.mlp.2.weight": (d, 2 * d),
            f"gnns.{i}.mlp.2.bias": (d,),
            f"gnns.{i}.edge_embedding1.weight": (6, d),
            f"gnns.{i}.edge_embedding2.weight": (3, d),
        })
        shapes.update({f"batch_norms.{i}.{k}": (d,) for k in _NORM_KEYS})
        shapes[f"batch_norms.{i}.{_COUNTER}"] = ()
    wrong = []
    for k, shape in shapes.items():
        if k not in inner:
            continue
        have = tuple(inner[k].shape)
        if len(have) != len(shape) or any(s is not None and s != h for s, h in zip(shape, have)):
            want = "x".join("?" if s is None else str(s) for s in shape) or "scalar"
            wrong.append(f"{prefix + k} is {list(have)}, expected [{want}]")
    if wrong:
        raise ConversionError("unexpected shapes: " + "; ".join(wrong))

    left_out = outside + sorted(prefix + k for k in inner if k not in shapes)
    if strict and left_out:
        raise ConversionError("keys outside the GIN layout (strict): " + ", ".join(left_out))
    state, filled = {}, []
    for k in expected:
        if k in inner:
            v = inner[k].detach().to("cpu")
            state[k] = v.to(torch.int64) if k.endswith(_COUNTER) else v.to(torch.float32)
        else:
            state[k] = torch.zeros((), dtype=torch.int64)
            filled.append(prefix + k)
    config = {
        "encoder": "gin",
        "num_layers": num_layers,
        "emb_dim": emb_dim,
        "dropout": 0.0,
        "jk": jk,
        "num_atom_type": int(atom_table.shape[0]),
        "num_chirality": int(chir_table.shape[0]),
        "pooling": pooling,
        "hydrogens": hydrogens,
        "features": FEATURES,
    }
    return Conversion(state_dict=state, config=config, prefix=prefix, left_out=left_out, filled=filled)


def _state_dict_of(obj: Any, key: Optional[str], src: Path) -> tuple[Mapping[str, Any], Optional[str]]:
    """The state dict inside a loaded file: the object itself, or ``obj[key]`` for wrappers."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            have = ", ".join(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise ConversionError(f"{src}: no entry {key!r} (top-level entries: {have})")
        return obj[key], key
    if isinstance(obj, Mapping) and obj.get("format") == ENCODER_FORMAT:
        raise ConversionError(f"{src} is already a graphmvp encoder file; nothing to convert")
    if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    if isinstance(obj, Mapping):
        nested = [k for k, v in obj.items() if isinstance(v, Mapping) and any(
            isinstance(kk, str) and kk.endswith(_ANCHOR) for kk in v)]
        if len(nested) == 1:
            return obj[nested[0]], nested[0]
        if len(nested) > 1:
            raise ConversionError(f"{src}: several entries hold a GIN ({', '.join(map(str, nested))}); choose one with --key")
        raise ConversionError(f"{src}: no state dict found (top-level entries: {', '.join(map(str, obj))})")
    raise ConversionError(f"{src}: expected a state dict, found {type(obj).__name__}")


def convert_file(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    hydrogens: str,
    jk: str = "last",
    pooling: str = "mean",
    prefix: Optional[str] = None,
    key: Optional[str] = None,
    strict: bool = False,
) -> Conversion:
    """Convert the upstream checkpoint file ``src`` into the encoder file ``dest``.

    ``src`` is read with ``torch.load(weights_only=True)``; a file holding a wrapper dict (e.g.
    ``{"model": state_dict, ...}``) is searched one level down for the GIN, or ``key`` names the
    entry. ``dest`` records where it came from (file name, SHA-256, prefix, left-out keys) under
    ``converted_from``; it is written atomically and re-loaded once as a check.
    """
    src, dest = Path(os.fspath(src)).expanduser(), Path(os.fspath(dest)).expanduser()
    try:
        obj = read_checkpoint(src)
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
    state, used_key = _state_dict_of(obj, key, src)
    conversion = convert_state_dict(state, hydrogens=hydrogens, jk=jk, pooling=pooling, prefix=prefix, strict=strict)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    save_encoder_file(
        dest,
        conversion.state_dict,
        conversion.config,
        converted_from={
            "file": src.name,
            "sha256": digest,
            "entry": used_key,
            "prefix": conversion.prefix,
            "left_out": conversion.left_out,
            "filled": conversion.filled,
        },
    )
    try:
        load_encoder_file(dest)
    except CheckpointError:
        dest.unlink(missing_ok=True)
        raise
    return conversion


def build_parser() -> argparse.ArgumentParser:
    from graphmvp.models import JK_MODES, READOUTS

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert upstream GraphMVP / Hu et al. pretrain-gnns GIN weights (PyTorch-Geometric "
        "state dicts) into a graphmvp encoder file.",
        epilog="examples:\n"
        f"  {PROG} pretraining_model.pth graphmvp_upstream.pt --hydrogens keep\n"
        f"  {PROG} model_finetuned.pth finetuned.pt --hydrogens drop   # 'molecule_model.' prefix found\n"
        f"  {PROG} contextpred.pth hu_contextpred.pt --hydrogens drop",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="upstream checkpoint (.pth)")
    p.add_argument("output", help="graphmvp encoder file to write (.pt)")
    p.add_argument("--hydrogens", required=True, choices=HYDROGEN_MODES,
                   help="how molecules were fed to these weights: 'keep' = explicit hydrogens as atoms (GraphMVP "
                        "pretraining on GEOM), 'drop' = heavy atoms only (graphs from SMILES: fine-tuned models, "
                        "Hu et al. pretrain-gnns)")
    p.add_argument("--jk", default="last", choices=list(JK_MODES), help="jumping knowledge of the upstream model (default last)")
    p.add_argument("--pooling", default="mean", choices=list(READOUTS), help="graph pooling of the upstream model (default mean)")
    p.add_argument("--prefix", default=None, help="key prefix of the GIN (default: found automatically, e.g. 'molecule_model.')")
    p.add_argument("--key", default=None, help="entry of a wrapper dict holding the state dict (default: found automatically)")
    p.add_argument("--strict", action="store_true", help="fail on keys outside the GIN instead of leaving them out")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.output).expanduser()
    if out.exists() and not args.force:
        print(f"{PROG}: error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        conversion = convert_file(args.input, out, hydrogens=args.hydrogens, jk=args.jk, pooling=args.pooling,
                                  prefix=args.prefix, key=args.key, strict=args.strict)
    except (ConversionError, CheckpointError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(conversion.report())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
