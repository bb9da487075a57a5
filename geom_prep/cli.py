"""``graphmvp-prep``: prepare conformer stores (thin layer over :mod:`graphmvp.prep.pipeline`).

    graphmvp-prep run INPUT -o STORE.h5 [options]     (``run`` may be left out)
    graphmvp-prep info STORE.h5 [--skipped]
    graphmvp-prep merge -o STORE.h5 SHARD.h5 ...
    graphmvp-prep motifs STORE.h5|SMILES_FILE [--min-count K] [--out VOCAB.json]   (docs/labels.md)
    graphmvp-prep labels STORE.h5 [--kinds motif,contextual,functional_groups]
"""

from __future__ import annotations

import argparse
import sys

from graphmvp.prep.config import HYDROGEN_MODES, SELECT_RULES, SOURCE_NAMES, PrepConfig, PrepError, parse_shard

COMMANDS = ("run", "info", "merge", "motifs", "labels")


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
    p.add_argument("--conf-timeout", type=int, default=120, metavar="SECONDS",
                   help="time limit per molecule for conformer generation; a slower molecule is skipped as timeout "
                        "(default 120, 0: none)")
    p.add_argument("--smiles-col", default=None, help="SMILES column of a CSV input (default: found by name)")
    p.add_argument("--geom-subset", default="drugs", help="GEOM summary to read: summary_<subset>.json (default drugs)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--rdkit-threads", type=int, default=None, metavar="N",
                   help="threads of RDKit's embedding and MMFF per worker (default: cores / workers); "
                        "the result does not depend on it")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="molecules per unit of work and of resumption (default: up to 100, at least 32 chunks)")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="i/N", help="prepare only shard i of N (join with merge)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")


def _add_label_options(p) -> None:
    p.add_argument("--min-count", type=int, default=2,
                   help="keys seen fewer times become <other> (default 2; counts are fragments for motifs, atoms for contextual)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--chunk-size", type=int, default=256, help="molecules per unit of work (default 256)")


def _add_motifs(sub) -> None:
    p = sub.add_parser("motifs", help="refined-BRICS motif vocabulary of a store (and its motif labels) or a SMILES file")
    p.add_argument("input", help="a store (writes STORE.motif_vocab.json and motif labels into STORE.labels.h5) "
                                 "or a SMILES CSV/.smi(.gz) (writes ./NAME.motif_vocab.json)")
    p.add_argument("--out", default=None, help="vocabulary JSON to write (default: see INPUT)")
    p.add_argument("--smiles-col", default=None, help="SMILES column of a CSV input (default: found by name)")
    p.add_argument("--n-mol", type=int, default=None, help="SMILES input: only the first N molecules")
    _add_label_options(p)


def _add_labels(sub) -> None:
    p = sub.add_parser("labels", help="precompute label kinds of a store into STORE.labels.h5")
    p.add_argument("store")
    p.add_argument("--kinds", default=None, help="comma-separated: motif, contextual, functional_groups (default: all)")
    p.add_argument("--motif-vocab", default=None, metavar="JSON",
                   help="use this motif vocabulary (e.g. the pretraining set's) instead of building one from the store")
    p.add_argument("--contextual-vocab", default=None, metavar="JSON", help="the same for contextual labels")
    _add_label_options(p)


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
    _add_motifs(sub)
    _add_labels(sub)
    try:
        args = parser.parse_args(argv)
    except PrepError as e:  # raised by the --shard parser
        parser.error(str(e))
    command = ["graphmvp-prep", *argv]
    try:
        if args.command == "run":
            from graphmvp.prep.pipeline import prepare

            fields = {k: v for k, v in vars(args).items() if k != "command"}
            result = prepare(PrepConfig(**fields), command=command)
            _print_result(result)
        elif args.command == "merge":
            from graphmvp.prep.merge import merge_stores

            result = merge_stores(args.shards, args.output, overwrite=args.overwrite, command=command)
            _print_result(result)
        elif args.command in ("motifs", "labels"):
            _labels_command(args, command)
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


def _progress(stream=sys.stderr, every: float = 10.0):
    """A progress callback printing 'labelled i/n molecules' at most every ``every`` seconds."""
    import time

    t0 = last = time.perf_counter()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every or done == total:
            last = now
            print(f"labelled {done}/{total} molecules ({done / max(now - t0, 1e-9):.0f}/s)", file=stream, flush=True)

    return report


def _labels_command(args, command: list[str]) -> None:
    """``motifs`` and ``labels``: every expected problem becomes a PrepError (one line, exit 2)."""
    from pathlib import Path

    import h5py

    from graphmvp.chem.kinds import parse_kinds
    from graphmvp.chem.vocab import Vocabulary, VocabularyError
    from graphmvp.data.annotations import LabelsError

    for name in ("min_count", "workers", "chunk_size"):
        if getattr(args, name) < 1:
            raise PrepError(f"--{name.replace('_', '-')} must be >= 1, not {getattr(args, name)}")
    kinds = None
    if args.command == "labels" and args.kinds is not None:
        try:
            kinds = parse_kinds(args.kinds)
        except ValueError as e:  # names the known kinds
            raise PrepError(str(e)) from None
    path = Path(args.input if args.command == "motifs" else args.store)
    if not path.is_file():
        raise PrepError(f"{path} does not exist")
    is_store = h5py.is_hdf5(path)
    try:
        if args.command == "motifs" and not is_store:
            _motifs_from_smiles(path, args)
            return
        if not is_store:
            raise PrepError(f"{path} is not a store (HDF5 file); 'labels' labels stores, 'motifs' also reads SMILES files")
        if args.command == "motifs":
            if args.n_mol is not None or args.smiles_col is not None:
                raise PrepError("--n-mol and --smiles-col apply to SMILES input; a store is labelled whole")
            kinds, vocabs, vocab_out = ("motif",), {}, ({"motif": args.out} if args.out else {})
        else:
            vocabs = {kind: Vocabulary.load(file, kind) for kind, file in
                      (("motif", args.motif_vocab), ("contextual", args.contextual_vocab)) if file}
            vocab_out = {}
        _build_sidecar(path, kinds, vocabs, vocab_out, args, command)
    except (LabelsError, VocabularyError) as e:
        raise PrepError(str(e)) from None


def _motifs_from_smiles(path, args) -> None:
    from pathlib import Path

    from graphmvp.chem.annotate import vocabulary_from_smiles_file

    vocab, scan = vocabulary_from_smiles_file(path, "motif", args.min_count, args.workers, args.smiles_col, args.n_mol,
                                              args.chunk_size, _progress())
    out = Path(args.out) if args.out else Path.cwd() / f"{path.name}.motif_vocab.json"
    try:
        vocab.save(out)
    except OSError as e:
        raise PrepError(f"cannot write {out} ({e.strerror or e}); choose another place with --out") from None
    print(vocab.summary())
    print(f"{out}: {scan.n_molecules} molecules in {scan.seconds:.1f} s ({scan.molecules_per_second:.0f} molecules/s)")
    for ex in vocab.failure_examples[:5]:
        print(f"  not labelled: {ex['index']} {ex['smiles']!r}: {ex['reason']} ({ex['detail']})")


def _build_sidecar(path, kinds, vocabs, vocab_out, args, command) -> None:
    from graphmvp.data.annotations import build_labels
    from graphmvp.data.store import ConformerStore, StoreFormatError

    try:
        ConformerStore(path).close()
    except (FileNotFoundError, StoreFormatError, OSError) as e:
        raise PrepError(str(e)) from None
    build = build_labels(path, kinds, min_count=args.min_count, workers=args.workers, vocabs=vocabs,
                         vocab_out=vocab_out, chunk_size=args.chunk_size, command=command, progress=_progress())
    for report in build.reports.values():
        print(report.summary() + (f"; vocabulary {report.vocab_file}" if report.vocab_file else ""))
    kept = f"; kept {', '.join(build.kept_kinds)} from the previous sidecar" if build.kept_kinds else ""
    mapping = ", ".join(f"{k} {n}" for k, n in build.mapping.items())
    print(f"{build.sidecar}: {build.n_molecules} molecules in {build.seconds:.1f} s "
          f"({build.molecules_per_second:.0f} molecules/s){'; atom mapping: ' + mapping if mapping else ''}{kept}")


def _info(path: str, skipped: bool) -> None:
    from graphmvp.data.store import ConformerStore, StoreFormatError

    try:
        store = ConformerStore(path)
        store.verify()
    except (FileNotFoundError, StoreFormatError, OSError) as e:
        raise PrepError(str(e)) from None
    with store:
        print(store.summary().format())
        if skipped:
            for s in store.skipped():
                print(f"{s.candidate_index}\t{s.source_id}\t{s.smiles}\t{s.reason}\t{s.detail}")


if __name__ == "__main__":
    sys.exit(main())
