"""Released pretrained weights: the manifest and verified downloads.

>>> from graphmvp.checkpoints import load_manifest, fetch
>>> [e.name for e in load_manifest()]          # what exists
>>> path = fetch("<name>")                      # shipped copy, cache, or verified download

``manifest.json`` next to this file lists every checkpoint (name, description, URLs, SHA-256,
size, encoder config, pretraining recipe, licence); small checkpoints are shipped here too, so
loading them works offline. Loading the weights themselves is
:func:`graphmvp.pretrained.load_pretrained`. This package does not import torch.
"""

from graphmvp.checkpoints.fetch import (
    MIRRORS_ENV,
    cache_path,
    checkpoint_cache_dir,
    checkpoint_status,
    env_mirrors,
    fetch,
    sources_for,
)
from graphmvp.checkpoints.manifest import (
    MANIFEST_PATH,
    PACKAGE_DIR,
    REQUIRED_CONFIG_KEYS,
    CheckpointEntry,
    Manifest,
    ManifestError,
    load_manifest,
)

__all__ = [
    "MANIFEST_PATH",
    "MIRRORS_ENV",
    "PACKAGE_DIR",
    "REQUIRED_CONFIG_KEYS",
    "CheckpointEntry",
    "Manifest",
    "ManifestError",
    "cache_path",
    "checkpoint_cache_dir",
    "checkpoint_status",
    "env_mirrors",
    "fetch",
    "load_manifest",
    "sources_for",
]
