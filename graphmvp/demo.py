"""``graphmvp-demo``: the main job end to end on the bundled demo molecules, offline.

1. prepare the 200 bundled ZINC molecules (RDKit ETKDGv3 + MMFF94 conformers, 5 per molecule,
   explicit hydrogens) into an HDF5 conformer store and print its summary;
2. pretrain GraphMVP on it (released settings and upstream model sizes, but 2 epochs of batch
   128 instead of 100 of 256, so that it takes about a minute on 2 cores);
3. fine-tune the pretrained 2D encoder on FreeSolv (scaffold split, 1 seed, 20 epochs of batch 32) when
   ``../shared/data/freesolv.csv`` (relative to the current folder: the repository's checkout when
   run by ``make demo``) or ``--freesolv FILE`` is present (it is not bundled), and print the result
   table; otherwise say that the step was skipped and why.

The demo molecules are package data (``importlib.resources``), so the demo runs the same from a
wheel as from a checkout.

Everything is written under ``--out`` (default ``runs/demo``); each step's folder holds its
resolved config and log.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path

LOG = logging.getLogger("graphmvp.pretrain")


def demo_smiles_path() -> Path:
    """The bundled demo SMILES file, a package resource (see geom_prep/demo/SOURCE.md in the repository
    for its source and licence)."""
    return Path(str(resources.files("graphmvp.prep") / "demo" / "zinc_demo.csv"))


def demo_store_path(out: Path) -> Path:
    """Where ``graphmvp-pretrain`` without ``--store`` keeps the demo store: next to the run folder ``out``."""
    return out.parent / "demo_conformers.h5"


def prepare_demo_store(path: Path, workers: int, command: list[str]):
    """Prepare the bundled demo molecules into ``path`` (replacing a file there) with geom_prep's
    defaults for SMILES input; returns its :class:`~graphmvp.prep.pipeline.PrepResult`. Raises
    :class:`~graphmvp.prep.config.PrepError` when preparation fails."""
    from graphmvp.prep.config import PrepConfig
    from graphmvp.prep.pipeline import prepare

    return prepare(PrepConfig(input=str(demo_smiles_path()), output=str(path), workers=workers, overwrite=True),
                   command=command)


def ensure_demo_store(path: Path) -> tuple[Path, bool]:
    """The demo store at ``path``, prepared from the bundled SMILES unless already there.

    Returns ``(path, prepared_now)``. Conformers: geom_prep's defaults for SMILES input (RDKit
    ETKDG + MMFF, 5 per molecule, explicit hydrogens kept as upstream). Raises
    :class:`~graphmvp.pretrain.config.ConfigError` when preparation fails.
    """
    from graphmvp.data.store import ConformerStore
    from graphmvp.prep.config import PrepError
    from graphmvp.pretrain.config import ConfigError

    if path.is_file():
        try:
            with ConformerStore(path) as store:
                if len(store) > 0 and store.has_positions:
                    return path, False
        except (OSError, ValueError):
            pass
    LOG.info("preparing the demo store %s from %s (once; RDKit conformers, about a minute)", path, demo_smiles_path())
    try:
        prepare_demo_store(path, workers=max(1, min(2, os.cpu_count() or 1)), command=["graphmvp-pretrain (demo store)"])
    except PrepError as e:
        raise ConfigError(f"could not prepare the demo store {path}: {e}") from None
    return path, True


class DemoStore:
    """The store provider of ``graphmvp-pretrain`` without ``--store``
    (:class:`graphmvp.pretrain.trainer.StoreProvider`): the bundled demo molecules, prepared once
    into :func:`demo_store_path` and reused by later runs."""

    def path(self, out: Path) -> Path:
        return demo_store_path(out)

    def prepare(self, path: Path) -> str:
        path, prepared = ensure_demo_store(path)
        how = "prepared it now" if prepared else "reusing the existing file"
        return f"no --store given: bundled demo molecules {demo_smiles_path().name} -> demo store {path} ({how})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphmvp-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="preparation workers")
    parser.add_argument("--freesolv", default=str(default_freesolv()), help="FreeSolv CSV for step 3 (skipped if absent)")
    args = parser.parse_args(argv)

    from graphmvp.data.store import ConformerStore
    from graphmvp.prep.config import PrepError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "demo_conformers.h5"
    print(f"[1/3] preparing {demo_smiles_path().name} -> {store_path}", flush=True)
    try:
        result = prepare_demo_store(store_path, workers=args.workers,
                                    command=["graphmvp-demo", *(argv if argv is not None else sys.argv[1:])])
    except PrepError as e:
        print(f"graphmvp-demo: error: {e}", file=sys.stderr)
        return 2
    with ConformerStore(result.store) as store:
        print(store.summary().format())
    print(f"prepared {result.counts['candidates']} molecules in {result.seconds:.1f} s "
          f"({result.molecules_per_second:.1f} molecules/s); skipped list: {result.report}")

    from graphmvp.malloc_tuning import tune_malloc
    from graphmvp.pretrain import malloc_mmap_threshold, pretrain, resolve_config

    run_dir = out / "pretrain_graphmvp"
    cfg = resolve_config("graphmvp", store=str(store_path), out=str(run_dir), epochs=2, batch_size=128,
                         overwrite=True, seed=0)
    tune_malloc(malloc_mmap_threshold(cfg))  # what graphmvp-pretrain does with its default --malloc-tuning
    print(f"[2/3] pretraining GraphMVP (EBM-NCE + VRR, 2D GIN + 3D SchNet) -> {run_dir}", flush=True)
    run = pretrain(cfg)
    for row in run.metrics:
        print("  epoch {epoch}: loss {loss_total:.4f}  2D-3D accuracy {acc_cl:.3f}".format(**row))
    print(f"  2D encoder for fine-tuning: {run.model_2d}")

    freesolv = Path(args.freesolv)
    if not freesolv.is_file():
        print(f"[3/3] skipped: FreeSolv not found at {freesolv} ({freesolv.absolute()}); it is not bundled: "
              "pass --freesolv FILE or run from a folder with ../shared/data/freesolv.csv")
        return 0
    from graphmvp.finetune.config import FinetuneConfig
    from graphmvp.finetune.table import table
    from graphmvp.finetune.trainer import finetune

    ft_dir = out / "finetune_freesolv"
    print(f"[3/3] fine-tuning on FreeSolv ({freesolv}) from the pretrained encoder -> {ft_dir}", flush=True)
    finetune(FinetuneConfig(data_file=str(freesolv), smiles_col="smiles", label_cols=("expt",), task_type="regression",
                            init=str(run_dir), epochs=20, batch_size=32, seeds=(0,), out=str(ft_dir), overwrite=True, method="GraphMVP (demo)"))
    print(table([str(ft_dir)], fmt="text"))
    return 0


def default_freesolv() -> Path:
    """``../shared/data/freesolv.csv`` from the current folder (real data lives beside the checkout,
    never inside the installed package)."""
    return Path("..") / "shared" / "data" / "freesolv.csv"


if __name__ == "__main__":
    sys.exit(main())
