"""The release manifest: which pretrained checkpoints exist, where they live, how to check them.

``checkpoints/manifest.json`` (shipped inside the installed package) is a JSON object::

    {
      "format_version": 1,
      "checkpoints": [
        {
          "name":         "graphmvp-...",              # what users type; [a-z0-9][a-z0-9._-]*
          "description":  "one paragraph",
          "file":         "graphmvp-....pt",           # file name in the cache (no folders)
          "package_file": "graphmvp-....pt",           # optional: shipped next to this module
          "urls":         ["https://..."],             # download sources, tried in order
          "sha256":       "<64 hex>",                  # of the file, verified before any load
          "size":         3712345,                     # bytes
          "format":       "graphmvp-encoder-v1",       # layout of the file's content
          "config":       {...},                       # encoder architecture + featurisation
          "recipe":       {...},                       # how it was made (data, loss, epochs, ...)
          "licence":      "MIT",
          "release":      "v0.1.0"                     # optional
        }
      ]
    }

``config`` holds at least :data:`REQUIRED_CONFIG_KEYS` and must equal the ``config`` stored in
the checkpoint file (checked when the file is loaded). An entry needs at least one source: a
``package_file`` or a URL. ``urls`` accepts what :func:`graphmvp.download.download` accepts
(``http(s)://``, ``file://``).

Nothing here imports torch: listing checkpoints is instant.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = [
    "MANIFEST_FORMAT_VERSION",
    "MANIFEST_PATH",
    "PACKAGE_DIR",
    "REQUIRED_CONFIG_KEYS",
    "RESERVED_NAMES",
    "CheckpointEntry",
    "Manifest",
    "ManifestError",
    "load_manifest",
]

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = PACKAGE_DIR / "manifest.json"
MANIFEST_FORMAT_VERSION = 1

#: keys every entry's ``config`` must have (what rebuilding and feeding the encoder needs)
REQUIRED_CONFIG_KEYS = ("encoder", "num_layers", "emb_dim", "jk", "pooling", "hydrogens", "features")
#: names that would collide with ``graphmvp-download`` sub-commands
RESERVED_NAMES = frozenset({"list"})

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_URL_SCHEMES = ("http", "https", "file")
_ENTRY_KEYS = {
    "name": True,
    "description": True,
    "file": True,
    "package_file": False,
    "urls": False,
    "sha256": True,
    "size": True,
    "format": True,
    "config": True,
    "recipe": True,
    "licence": True,
    "release": False,
    "finetuning": False,
}


class ManifestError(ValueError):
    """The manifest file is unreadable or an entry breaks the schema (message names which)."""


@dataclass(frozen=True)
class CheckpointEntry:
    """One released checkpoint (see the module docstring for the meaning of each field)."""

    name: str
    description: str
    file: str
    sha256: str
    size: int
    format: str
    config: Mapping[str, Any]
    recipe: Mapping[str, Any]
    licence: str
    urls: tuple[str, ...] = ()
    package_file: str | None = None
    release: str | None = None
    #: the fine-tuning results this checkpoint earned (benchmarks/moleculenet_table.py --update-manifest)
    finetuning: Mapping[str, Any] | None = None
    #: folder that ``package_file`` is relative to (the manifest's folder)
    base_dir: Path = field(default=PACKAGE_DIR, compare=False)

    @property
    def package_path(self) -> Path | None:
        """Where the shipped copy is (whether or not it exists), or None if none is shipped."""
        return None if self.package_file is None else self.base_dir / self.package_file

    @property
    def shipped(self) -> bool:
        """True when a shipped copy is listed and present on disk."""
        path = self.package_path
        return path is not None and path.is_file()

    def to_dict(self) -> dict[str, Any]:
        """The manifest JSON form of this entry."""
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "file": self.file,
        }
        if self.package_file is not None:
            d["package_file"] = self.package_file
        d["urls"] = list(self.urls)
        d.update(
            sha256=self.sha256,
            size=self.size,
            format=self.format,
            config=dict(self.config),
            recipe=dict(self.recipe),
            licence=self.licence,
        )
        if self.release is not None:
            d["release"] = self.release
        if self.finetuning is not None:
            d["finetuning"] = dict(self.finetuning)
        return d


class Manifest:
    """The checkpoints of one manifest file, by name, in file order."""

    def __init__(self, entries: list[CheckpointEntry], path: Path | None = None):
        self.path = path
        self._entries: dict[str, CheckpointEntry] = {}
        for e in entries:
            if e.name in self._entries:
                raise ManifestError(f"{path or 'manifest'}: checkpoint name {e.name!r} is listed twice")
            self._entries[e.name] = e

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> CheckpointEntry:
        """The entry called ``name``; ``ValueError`` naming the known checkpoints otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(self._entries) or "none"
            raise ValueError(f"unknown checkpoint {name!r}; released checkpoints: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[CheckpointEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a manifest (default: the one shipped with the package).

    ``package_file`` entries are resolved relative to the manifest's folder. Raises
    :class:`ManifestError` naming the file, the entry and the broken field.
    """
    path = MANIFEST_PATH if path is None else Path(os.fspath(path)).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"manifest {path} is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must hold a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise ManifestError(
            f"manifest {path} has format_version {version!r}; this graphmvp reads version "
            f"{MANIFEST_FORMAT_VERSION} (upgrade graphmvp to read newer manifests)"
        )
    raw = data.get("checkpoints")
    if not isinstance(raw, list):
        raise ManifestError(f"manifest {path}: 'checkpoints' must be a list of entries")
    entries = [_entry(item, k, path) for k, item in enumerate(raw)]
    return Manifest(entries, path)


def _entry(item: Any, index: int, path: Path) -> CheckpointEntry:
    where = f"manifest {path}, entry {index}"
    if not isinstance(item, dict):
        raise ManifestError(f"{where}: must be a JSON object")
    if isinstance(item.get("name"), str):
        where = f"manifest {path}, checkpoint {item['name']!r}"
    unknown = sorted(set(item) - set(_ENTRY_KEYS))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_ENTRY_KEYS)})")
    missing = [k for k, required in _ENTRY_KEYS.items() if required and k not in item]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")

    def text(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{where}: {key} must be a non-empty string, got {value!r}")
        return value

    name = text("name", item["name"])
    if not _NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
        raise ManifestError(
            f"{where}: name {name!r} must match [a-z0-9][a-z0-9._-]* and not be one of "
            f"{', '.join(sorted(RESERVED_NAMES))}"
        )
    file = _file_name(where, "file", text("file", item["file"]))
    package_file = item.get("package_file")
    if package_file is not None:
        package_file = _file_name(where, "package_file", text("package_file", package_file))
    urls = item.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise ManifestError(f"{where}: urls must be a list of non-empty strings, got {urls!r}")
    for url in urls:
        scheme = urllib.parse.urlparse(url).scheme.lower()
        if scheme not in _URL_SCHEMES:
            raise ManifestError(
                f"{where}: URL {url!r} has scheme {scheme or 'none'!r}; allowed: {', '.join(_URL_SCHEMES)}"
            )
    if not urls and package_file is None:
        raise ManifestError(f"{where}: needs at least one source (urls or package_file)")
    sha256 = text("sha256", item["sha256"])
    if not _SHA256_RE.fullmatch(sha256):
        raise ManifestError(f"{where}: sha256 must be 64 lower-case hexadecimal characters, got {sha256!r}")
    size = item["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ManifestError(f"{where}: size must be a positive integer (bytes), got {size!r}")
    config = item["config"]
    if not isinstance(config, dict):
        raise ManifestError(f"{where}: config must be a JSON object")
    missing_cfg = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing_cfg:
        raise ManifestError(f"{where}: config lacks {', '.join(missing_cfg)}")
    recipe = item["recipe"]
    if not isinstance(recipe, dict) or not recipe:
        raise ManifestError(f"{where}: recipe must be a non-empty JSON object (data, loss, epochs, ...)")
    release = item.get("release")
    if release is not None:
        release = text("release", release)
    finetuning = item.get("finetuning")
    if finetuning is not None and not isinstance(finetuning, dict):
        raise ManifestError(f"{where}: finetuning must be a JSON object (task -> results)")
    return CheckpointEntry(
        name=name,
        description=text("description", item["description"]),
        file=file,
        sha256=sha256,
        size=size,
        format=text("format", item["format"]),
        config=config,
        recipe=recipe,
        licence=text("licence", item["licence"]),
        urls=tuple(urls),
        package_file=package_file,
        release=release,
        finetuning=finetuning,
        base_dir=path.parent,
    )


def _file_name(where: str, key: str, value: str) -> str:
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ManifestError(f"{where}: {key} must be a bare file name without folders, got {value!r}")
    return value
