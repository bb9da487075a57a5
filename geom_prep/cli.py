"""``graphmvp-prep``: prepare conformer stores (thin layer over :mod:`geom_prep.pipeline`).

    graphmvp-prep run INPUT -o STORE.h5 [options]     (``run`` may be left out)
    graphmvp-prep info STORE.h5 [--skipped]
    graphmvp-prep merge -o STORE.h5 SHARD.h5 ...
"""

from __future__ import annotations

import argparse
import sys

from geom_prep.config import HYDROGEN_MODES, SELECT_RULES, SOURCE_NAMES, PrepConfig, PrepError, parse_shard

COMMANDS = ("run", "info", "merge")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="prepare a store from GEOM rdkit_folder, a SMILES file or an SDF file")
    p.add_argument("input", help="GEOM rdkit_folder (or its summary JSON), SMILES CSV/.smi(.gz), or SDF(.gz)")
    p.add_argument("-o", "--output", required=True, help="store to write (HDF5)")
    p.add_argument("--source", choices=SOURCE_NAMES, help="input kind (default: inferred from INPUT)")
    p.add_argument("--n-conf", type=int, default=5, help="conformers kept per molecule (default 5)")
    p.add_argument("--select", choices=SELECT_RULES, default="energy",
                   help="which conformers: lowest energy first (default, as upstream), top Boltzmann weight, or file order")
    p.add_argument("--min-confs", type=int, default=None, help="skip molecules with fewer conformers (default: --n-conf, as upstream)")
    p.add_argument("--max-confs", type=int, default=1000, help="skip molecules with more conformers (default 1000)")
    p.add_argument("--n-mol", type=int, default=None, help="keep at most this many molecules (the first valid ones after shuffling)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep input order (default: seeded shuffle, as upstream)")
    p.add_argument("--seed", type=int, default=777, help="shuffle and conformer-generation seed (default 777)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="FILE",
                   help="downstream SMILES files whose molecules are left out (canonical SMILES match)")
    p.add_argument("--exclude-ignore-stereo", action="store_true", help="match --exclude molecules without stereo")
    p.add_argument("--hydrogens", choices=HYDROGEN_MODES, default="keep", help="explicit hydrogens as atoms (default keep)")
    p.add_argument("--gen-confs", type=int, default=None, help="conformers generated per SMILES/SDF molecule (default 2 x --n-conf)")
    p.add_argument("--smiles-col", default=None, help="SMILES column of a CSV input (default: found by name)")
    p.add_argument("--geom-subset", default="drugs", help="GEOM summary to read: summary_<subset>.json (default drugs)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="molecules per unit of work and of resumption (default: up to 100, at least 32 chunks)")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="i/N", help="prepare only shard i of N (join with merge)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")
    parser = argparse.ArgumentParser(prog="graphmvp-prep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    info = sub.add_parser("info", help="print a store's summary")
    info.add_argument("store")
    info.add_argument("--skipped", action="store_true", help="also list every skipped molecule")
    merge = sub.add_parser("merge", help="join shard stores into one")
    merge.add_argument("shards", nargs="+")
    merge.add_argument("-o", "--output", required=True)
    merge.add_argument("--overwrite", action="store_true")
    try:
        args = parser.parse_args(argv)
    except PrepError as e:  # raised by the --shard parser
        parser.error(str(e))
    command = ["graphmvp-prep", *argv]
    try:
        if args.command == "run":
            from geom_prep.pipeline import prepare

            fields = {k: v for k, v in vars(args).items() if k != "command"}
            result = prepare(PrepConfig(**fields), command=command)
            _print_result(result)
        elif args.command == "merge":
            from geom_prep.merge import merge_stores

            result = merge_stores(args.shards, args.output, overwrite=args.overwrite, command=command)
            _print_result(result)
        else:
            _info(args.store, args.skipped)
    except PrepError as e:
        print(f"graphmvp-prep: error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_result(result) -> None:
    c = result.counts
    print(f"{result.store}: {c['kept']} molecules of {c['candidates']} candidates "
          f"({sum(c['skipped'].values())} skipped, {sum(c['dropped_conformers'].values())} conformers dropped) "
          f"in {result.seconds:.1f} s; report {result.report}")


def _info(path: str, skipped: bool) -> None:
    from graphmvp.data.store import ConformerStore, StoreFormatError

    try:
        store = ConformerStore(path)
    except (FileNotFoundError, StoreFormatError, OSError) as e:
        raise PrepError(str(e)) from None
    with store:
        print(store.summary().format())
        if skipped:
            for s in store.skipped():
                print(f"{s.candidate_index}\t{s.source_id}\t{s.smiles}\t{s.reason}\t{s.detail}")


if __name__ == "__main__":
    sys.exit(main())
