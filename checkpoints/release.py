"""Maintainer tool: turn a finished pretraining run into a release file and its manifest entry.

::

    python -m graphmvp.checkpoints.release runs/graphmvp-bench1k --name graphmvp-bench1k \\
        --description "..." --data "..." --command "graphmvp-prep ...; graphmvp-pretrain ..." \\
        --dtype float16 --ship --url-base https://github.com/graphmvp/graphmvp/releases/download/v0.1.0

reads ``RUN/model_2d.pt`` (the encoder after the last epoch), ``RUN/config.yaml`` and
``RUN/metrics.csv``, writes the encoder file (optionally with float16 weights, to halve its size)
either next to the manifest (``--ship``: it becomes package data, loadable offline) or into
``--out``, and adds or replaces the entry in the manifest with the file's SHA-256 and size, the
encoder config stored in the file, and a recipe assembled from the run's own records (loss terms
and weights, epochs, steps, batch size, optimiser, final losses, wall time), plus the data
description and commands given here. ``--url-base`` lists ``<base>/<file>`` as a download URL
(where a maintainer uploads the same file).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Optional

from graphmvp.checkpoints.manifest import MANIFEST_FORMAT_VERSION, MANIFEST_PATH, load_manifest
from graphmvp.io import atomic_path

#: run config fields copied into the recipe (what determines the weights)
RECIPE_FIELDS = (
    "preset", "views", "loss", "alpha1", "alpha2", "alpha3", "temperature", "normalize", "neg_samples",
    "beta", "rr_loss", "detach_target", "mask_ratio", "conformer_sampling", "cutoff", "max_neighbors",
    "encoder_3d", "schnet_filters", "schnet_interactions", "schnet_gaussians", "epochs", "batch_size",
    "lr", "weight_decay", "schnet_lr_scale", "to2d_lr_scale", "seed", "dropout",
)


def run_recipe(run: Path) -> dict[str, Any]:
    """The recipe facts recorded by a pretraining run folder (config.yaml + metrics.csv)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    recipe: dict[str, Any] = {"optimiser": "Adam"}
    recipe.update({k: cfg[k] for k in RECIPE_FIELDS if k in cfg})
    if isinstance(recipe.get("loss"), list):
        recipe["loss"] = "+".join(recipe["loss"])
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{run}/metrics.csv has no epoch rows: the run has not finished an epoch")
    last = rows[-1]
    recipe["epochs_done"] = int(last["epoch"])
    recipe["optimizer_steps"] = sum(int(r["steps"]) for r in rows)
    recipe["samples_seen"] = sum(int(r["samples"]) for r in rows)
    recipe["final_epoch_losses"] = {k[len("loss_"):]: round(float(v), 4) for k, v in last.items() if k.startswith("loss_")}
    accs = {k: round(float(v), 4) for k, v in last.items() if k.startswith("acc_") and v not in ("", None)}
    if accs:
        recipe["final_epoch_accuracies"] = accs
    recipe["wall_seconds"] = round(sum(float(r["seconds"]) for r in rows), 1)
    return recipe


def make_release(run: Path, dest: Path, dtype: str = "float32") -> dict[str, Any]:
    """Write ``run/model_2d.pt`` as a release file ``dest``; return its sha256, size and config."""
    import torch

    from graphmvp.download import sha256_file
    from graphmvp.pretrained import load_encoder_file, save_encoder_file

    dtypes = {"float32": None, "float16": torch.float16}
    if dtype not in dtypes:
        raise ValueError(f"dtype={dtype!r}; allowed: {', '.join(dtypes)}")
    model, config = load_encoder_file(run / "model_2d.pt")
    raw = torch.load(run / "model_2d.pt", map_location="cpu", weights_only=True)
    extra = {k: raw[k] for k in ("epoch", "loss") if k in raw}
    save_encoder_file(dest, model.state_dict(), config, dtype=dtypes[dtype], weights_dtype=dtype, **extra)
    load_encoder_file(dest)  # re-read once as a check
    return {"sha256": sha256_file(dest), "size": dest.stat().st_size, "config": config}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m graphmvp.checkpoints.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="pretraining run folder (model_2d.pt, config.yaml, metrics.csv)")
    p.add_argument("--name", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--data", required=True, help="what the run was trained on, in words")
    p.add_argument("--command", action="append", required=True, help="a command of the recipe, in order (repeat)")
    p.add_argument("--note", action="append", default=[], help="a remark for the recipe (repeat)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    p.add_argument("--file", default=None, help="release file name (default NAME.pt)")
    p.add_argument("--ship", action="store_true", help="write the file next to the manifest (package data)")
    p.add_argument("--out", type=Path, default=None, help="folder for the file when not shipped")
    p.add_argument("--url-base", action="append", default=[], help="upload location: URL <base>/<file> (repeat)")
    p.add_argument("--licence", default="MIT")
    p.add_argument("--release", default=None, help="release tag, e.g. v0.1.0")
    p.add_argument("--manifest", type=Path, default=MANIFEST_PATH)
    args = p.parse_args(argv)

    file = args.file or f"{args.name}.pt"
    if args.ship:
        dest = args.manifest.parent / file
    elif args.out is not None:
        dest = args.out / file
    else:
        p.error("give --ship or --out")
    facts = make_release(args.run, dest, args.dtype)
    recipe = {"data": args.data, "command": list(args.command), **run_recipe(args.run),
              "weights_dtype": args.dtype}
    if args.note:
        recipe["notes"] = list(args.note)
    entry = {
        "name": args.name,
        "description": args.description,
        "file": file,
        **({"package_file": file} if args.ship else {}),
        "urls": [b.rstrip("/") + "/" + file for b in args.url_base],
        "sha256": facts["sha256"],
        "size": facts["size"],
        "format": "graphmvp-encoder-v1",
        "config": facts["config"],
        "recipe": recipe,
        "licence": args.licence,
        **({"release": args.release} if args.release else {}),
    }
    path = args.manifest
    data = json.loads(path.read_text()) if path.is_file() else {"format_version": MANIFEST_FORMAT_VERSION, "checkpoints": []}
    data["checkpoints"] = [e for e in data["checkpoints"] if e.get("name") != args.name] + [entry]
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        load_manifest(tmp)  # validate before replacing the manifest
    print(f"{dest}: {facts['size']} bytes, sha256 {facts['sha256']}; manifest {path} updated ({args.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
