"""``graphmvp-demo``: the main job end to end on the bundled demo molecules, offline.

Today: prepare the 200 bundled ZINC molecules (RDKit ETKDGv3 + MMFF94 conformers, 5 per
molecule, explicit hydrogens) into an HDF5 conformer store and print its summary. Later stages
(pretraining, fine-tuning) are appended here as they land.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path


def demo_smiles_path() -> Path:
    """The bundled demo SMILES file (see geom_prep/demo/SOURCE.md for its source and licence)."""
    return Path(str(resources.files("geom_prep") / "demo" / "zinc_demo.csv"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphmvp-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="preparation workers")
    args = parser.parse_args(argv)

    from geom_prep.config import PrepConfig, PrepError
    from geom_prep.pipeline import prepare
    from graphmvp.data.store import ConformerStore

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "demo_conformers.h5"
    print(f"[1/1] preparing {demo_smiles_path().name} -> {store_path}", flush=True)
    try:
        result = prepare(
            PrepConfig(input=str(demo_smiles_path()), output=str(store_path), workers=args.workers, overwrite=True),
            command=["graphmvp-demo", *(argv if argv is not None else sys.argv[1:])],
        )
    except PrepError as e:
        print(f"graphmvp-demo: error: {e}", file=sys.stderr)
        return 2
    with ConformerStore(result.store) as store:
        print(store.summary().format())
    print(f"prepared {result.counts['candidates']} molecules in {result.seconds:.1f} s "
          f"({result.molecules_per_second:.1f} molecules/s); skipped list: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
