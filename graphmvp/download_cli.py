"""``graphmvp-download``: list released checkpoints and fetch them into the cache, verified.

Usage::

    graphmvp-download list                      # what exists, what is shipped / cached already
    graphmvp-download list --verify             # ... re-hashing local copies
    graphmvp-download NAME [NAME ...]           # fetch into $GRAPHMVP_HOME/checkpoints (verified)
    graphmvp-download NAME --mirror https://mirror.example.org/graphmvp   # try <mirror>/<file> first
    graphmvp-download NAME --url file:///media/usb/NAME.pt               # only this source

Downloads show a progress bar (on a terminal), resume an interrupted transfer, are checked
against the manifest's size and SHA-256 before they are moved into the cache (a mismatch deletes
the partial file and says so), and fail offline with a message naming every URL tried and where
to put the file by hand. Mirrors can also be given in ``$GRAPHMVP_MIRRORS`` (base URLs separated
by commas or white space). Shipped checkpoints need no download: their verified path is printed.

Exit codes: 0 done, 1 a download failed, 2 bad arguments (unknown name, unreadable manifest).
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from typing import Optional

PROG = "graphmvp-download"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", metavar="NAME", help="'list', or checkpoint name(s) to fetch")
    p.add_argument("--verify", action="store_true", help="with list: re-hash shipped/cached files (default: sizes only)")
    p.add_argument("--url", action="append", default=None, metavar="URL",
                   help="fetch from this source only (http(s)://, file:// or a path); repeat for several")
    p.add_argument("--mirror", action="append", default=[], metavar="BASE",
                   help="base URL tried first as BASE/<file>; repeat for several (also $GRAPHMVP_MIRRORS)")
    p.add_argument("--manifest", default=None, help="another manifest file (default: the shipped one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds (default 30)")
    return p


def _list(manifest, verify: bool) -> int:
    from graphmvp.checkpoints import checkpoint_cache_dir, checkpoint_status

    print(f"cache: {checkpoint_cache_dir()}   (set GRAPHMVP_HOME to move it)")
    if len(manifest) == 0:
        print("no checkpoints in the manifest")
        return 0
    rows = []
    for e in manifest:
        status, path = checkpoint_status(e, verify=verify)
        where = f" ({path})" if path is not None else ""
        rows.append((e.name, _size(e.size), status + where, textwrap.shorten(e.description, 72, placeholder=" ...")))
    w = [max(len(r[i]) for r in rows + [("NAME", "SIZE", "STATUS", "")]) for i in range(3)]
    print(f"{'NAME':<{w[0]}}  {'SIZE':>{w[1]}}  {'STATUS':<{w[2]}}  DESCRIPTION")
    for name, size, status, desc in rows:
        print(f"{name:<{w[0]}}  {size:>{w[1]}}  {status:<{w[2]}}  {desc}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:  # a console run: warnings (a damaged shipped copy) as one line
        logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    # Every per-URL failure is repeated in the final error message: the downloader's own warnings
    # would say it twice. Quieted for this call only.
    download_log = logging.getLogger("graphmvp.download")
    level = download_log.level
    download_log.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        download_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    from graphmvp.checkpoints import ManifestError, fetch, load_manifest
    from graphmvp.download import ChecksumError, DownloadProblem

    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.names == ["list"]:
        return _list(manifest, args.verify)
    if "list" in args.names:
        print(f"{PROG}: error: 'list' takes no checkpoint names", file=sys.stderr)
        return 2
    unknown = [n for n in args.names if n not in manifest]
    if unknown:
        print(f"{PROG}: error: unknown checkpoint(s) {', '.join(unknown)}; released: "
              f"{', '.join(manifest.names()) or 'none'} (see `{PROG} list`)", file=sys.stderr)
        return 2
    if args.url and len(args.names) > 1:
        print(f"{PROG}: error: --url names one file; fetch one checkpoint at a time with it", file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print(f"{PROG}: error: --timeout must be > 0, got {args.timeout}", file=sys.stderr)
        return 2
    failed = 0
    for name in args.names:
        entry = manifest.get(name)
        try:
            path = fetch(entry, urls=args.url, mirrors=args.mirror, progress=not args.quiet, timeout=args.timeout)
        except ChecksumError as e:
            print(f"{PROG}: {name}: checksum mismatch: {e}", file=sys.stderr)
            failed += 1
            continue
        except DownloadProblem as e:
            print(f"{PROG}: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        how = "shipped with the package" if entry.package_path is not None and path == entry.package_path else "cached"
        print(f"{name}: {path} ({how}; sha256 {entry.sha256} verified)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
