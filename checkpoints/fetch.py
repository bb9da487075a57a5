"""Getting a released checkpoint onto the disk, verified: shipped copy, cache, or download.

Where a checkpoint comes from, in order:

1. ``urls=`` given explicitly (``graphmvp-download --url``): exactly those sources, into the cache.
2. The copy shipped inside the package (``package_file``), if present and its SHA-256 and size
   match the manifest. It is used in place (not copied). A shipped copy that does not match is
   ignored with a warning and the checkpoint is downloaded instead.
3. The cache, ``<GRAPHMVP_HOME or ~/.cache/graphmvp>/checkpoints/<file>``, downloaded from the
   mirrors (``mirrors=`` and ``$GRAPHMVP_MIRRORS``: base URLs, ``<base>/<file>`` is fetched) and
   then the manifest's URLs, with :func:`graphmvp.download.download` (progress bar, HTTP Range
   resume of an interrupted transfer, size and SHA-256 verified before the atomic rename into the
   cache; a file failing verification is deleted; offline errors name every URL and where to put
   the file by hand).

A cached file is re-hashed every time it is resolved (a few MB: milliseconds), so a file corrupted
after its download is noticed and fetched again rather than loaded.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from graphmvp.download import DownloadError, cache_dir, download, sha256_file

from graphmvp.checkpoints.manifest import CheckpointEntry, Manifest, load_manifest

__all__ = [
    "MIRRORS_ENV",
    "cache_path",
    "checkpoint_cache_dir",
    "checkpoint_status",
    "env_mirrors",
    "fetch",
    "sources_for",
]

log = logging.getLogger(__name__)

#: environment variable with mirror base URLs (separated by commas or white space)
MIRRORS_ENV = "GRAPHMVP_MIRRORS"


def checkpoint_cache_dir() -> Path:
    """``<cache_dir()>/checkpoints`` (created if missing)."""
    path = cache_dir() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_path(entry: CheckpointEntry) -> Path:
    """Where ``entry`` lives in the cache once downloaded (it may not exist yet)."""
    return checkpoint_cache_dir() / entry.file


def env_mirrors() -> list[str]:
    """Mirror base URLs from ``$GRAPHMVP_MIRRORS`` (commas or white space separate them)."""
    value = os.environ.get(MIRRORS_ENV, "")
    return [m for m in re.split(r"[\s,]+", value) if m]


def sources_for(
    entry: CheckpointEntry, urls: Sequence[str] | None = None, mirrors: Iterable[str] = ()
) -> list[str]:
    """The download sources of ``entry``, in the order tried.

    ``urls`` (if given and non-empty) replaces everything else. Otherwise: ``<mirror>/<file>`` for
    each of ``mirrors`` and then of ``$GRAPHMVP_MIRRORS``, followed by the manifest's URLs.
    Duplicates are dropped (first occurrence kept).
    """
    if urls:
        sources = [str(u) for u in urls]
    else:
        bases = [str(m) for m in mirrors] + env_mirrors()
        sources = [b.rstrip("/") + "/" + entry.file for b in bases] + list(entry.urls)
    seen: set[str] = set()
    return [s for s in sources if not (s in seen or seen.add(s))]


def _matches(path: Path, entry: CheckpointEntry) -> bool:
    return path.is_file() and path.stat().st_size == entry.size and sha256_file(path) == entry.sha256


def checkpoint_status(entry: CheckpointEntry, verify: bool = False) -> tuple[str, Path | None]:
    """(status, path) of ``entry`` on this machine, without any network access.

    status is ``"shipped"`` (a copy comes with the package), ``"cached"`` (in the cache),
    ``"corrupt"`` (a cached or shipped file with the wrong size, or with ``verify=True`` the wrong
    SHA-256: it will be fetched again), or ``"not downloaded"``. Without ``verify`` only sizes are
    compared; the hash is always checked before a load.
    """
    damaged = None
    for path, label in ((entry.package_path, "shipped"), (cache_path(entry), "cached")):
        if path is None or not path.is_file():
            continue
        if _matches(path, entry) if verify else path.stat().st_size == entry.size:
            return label, path
        damaged = damaged or path
    if damaged is not None:
        return "corrupt", damaged
    return "not downloaded", None


def fetch(
    name_or_entry: str | CheckpointEntry,
    *,
    urls: Sequence[str] | None = None,
    mirrors: Iterable[str] = (),
    manifest: Manifest | None = None,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
) -> Path:
    """A verified local file holding the checkpoint (see the module docstring for the order).

    Args:
        name_or_entry: a checkpoint name of ``manifest`` (default: the shipped manifest) or an entry.
        urls: explicit sources replacing the mirrors and the manifest's URLs (the shipped copy is
            then not used either: the file is downloaded into the cache).
        mirrors: base URLs tried first (``<base>/<file>``), before ``$GRAPHMVP_MIRRORS`` and the
            manifest's URLs.
        progress, timeout, retries: passed to :func:`graphmvp.download.download`.

    Raises:
        ValueError: unknown name (the message lists the released ones).
        graphmvp.download.ChecksumError: a source served other bytes (nothing is left in the cache).
        graphmvp.download.DownloadError: no source worked (offline...); the message names every URL
            tried and where to put the file by hand.
    """
    if isinstance(name_or_entry, CheckpointEntry):
        entry = name_or_entry
    else:
        entry = (manifest if manifest is not None else load_manifest()).get(name_or_entry)

    if not urls and entry.package_path is not None and entry.package_path.is_file():
        if _matches(entry.package_path, entry):
            return entry.package_path
        log.warning(
            "the shipped copy %s of checkpoint %s does not match the manifest (sha256 %s, %d bytes); "
            "ignoring it and downloading the checkpoint", entry.package_path, entry.name, entry.sha256, entry.size,
        )
    sources = sources_for(entry, urls, mirrors)
    dest = cache_path(entry)
    if not sources:
        # Only a shipped copy was listed, and it is missing or damaged.
        shipped = entry.package_path
        reason = "missing" if shipped is None or not shipped.is_file() else "does not match the manifest's sha256/size"
        raise DownloadError(dest, [(str(shipped), f"shipped copy {reason}")], entry.sha256)
    return download(sources, dest, sha256=entry.sha256, size=entry.size, progress=progress,
                    timeout=timeout, retries=retries)
