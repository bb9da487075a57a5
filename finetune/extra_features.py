"""Molecule-level features concatenated to the pooled graph embedding (``--extra-features``).

A registry (:data:`EXTRA_FEATURES`) maps a name to an :class:`ExtraFeaturizer`: SMILES -> float32
vectors of a fixed width, and whether the vectors are standardised before the head.

``morgan``
    Morgan fingerprint, radius 2, 2,048 bits, binary (chemprop's ``morgan``; the ECFP4 of
    :func:`graphmvp.finetune.peers.ecfp4`). Fed as 0/1, not standardised.
``rdkit2d``
    Every descriptor of RDKit's ``Descriptors.descList`` (in that order; the names are recorded and
    checked when a saved model predicts). Cleaning: a descriptor that raises gives NaN; finite
    values are clipped to +-:data:`CLIP`; non-finite values (NaN, +-inf) become 0. Standardised
    with the mean and std of the TRAINING split only (:func:`fit_statistics`); a column that is
    constant on the training split (std 0) gets std 1.

The features of a data set are computed once (:func:`dataset_features`) and, when the data set
has a featurised cache file, cached next to it (``<store>.<kind>-<key>.npy``; the key covers the
featuriser's version, RDKit's version and the descriptor names). Statistics are per run seed
(the training split may differ between seeds); :class:`graphmvp.finetune.model.FinetuneModel` holds them
as buffers, so a saved model carries them in its state dict (and, readable, in the file's
``extra_features`` entry) and featurises new molecules exactly as in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from graphmvp.finetune.errors import FinetuneError
from graphmvp.io import atomic_path
from graphmvp.registry import Registry

log = logging.getLogger(__name__)

#: finite rdkit2d values are clipped to [-CLIP, CLIP] (Ipc and friends reach 1e30 and beyond)
CLIP = 1e6
#: the ``--extra-features`` value for "none" (a config's None means: the protocol decides)
NO_EXTRA_FEATURES = "none"


@dataclass(frozen=True)
class ExtraFeaturizer:
    """``compute(smiles) -> float32 [n, d]``; ``names() -> d column names``; ``standardise``:
    scale with the training split's mean and std; ``named_columns``: record the column names (they
    depend on the RDKit version); ``version``: bump when the values change."""

    name: str
    description: str
    compute: Callable[[Sequence[str]], np.ndarray]
    names: Callable[[], list[str]]
    standardise: bool
    named_columns: bool = False
    version: int = 1

    @property
    def dim(self) -> int:
        return len(self.names())


#: name -> :class:`ExtraFeaturizer`
EXTRA_FEATURES: Registry = Registry("extra feature")


def _morgan(smiles: Sequence[str]) -> np.ndarray:
    from graphmvp.finetune.peers import ecfp4

    return ecfp4(smiles).astype(np.float32)


def _morgan_names() -> list[str]:
    from graphmvp.finetune.peers import FP_BITS

    return [f"morgan_{i}" for i in range(FP_BITS)]


def _descriptors():
    from rdkit.Chem import Descriptors

    return list(Descriptors.descList)


def _rdkit2d_names() -> list[str]:
    return [name for name, _ in _descriptors()]


def clean_descriptors(values: np.ndarray) -> np.ndarray:
    """rdkit2d cleaning: finite values clipped to +-CLIP, non-finite values 0 (float32)."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), np.clip(values, -CLIP, CLIP), 0.0).astype(np.float32)


def parsed_molecules(smiles: Sequence[str]) -> Iterator[tuple[int, Any]]:
    """``(i, RDKit molecule)`` of each SMILES, RDKit's log silenced meanwhile; an unparsable SMILES
    is a :class:`FinetuneError` naming it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        for i, smi in enumerate(smiles):
            mol = Chem.MolFromSmiles(smi)
            if mol is None:
                raise FinetuneError(f"molecule {i} ({smi!r}): RDKit cannot parse the SMILES; fix or remove that row")
            yield i, mol
    finally:
        RDLogger.EnableLog("rdApp.*")


def _rdkit2d(smiles: Sequence[str]) -> np.ndarray:
    functions = [fn for _, fn in _descriptors()]
    out = np.full((len(smiles), len(functions)), np.nan)
    # about 9 ms a molecule on one core: a bar for large sets (shown on a terminal only)
    molecules = tqdm(parsed_molecules(smiles), total=len(smiles), unit="mol", desc="rdkit2d", disable=None,
                     leave=False, mininterval=2.0)
    for i, mol in molecules:
        for j, fn in enumerate(functions):
            try:
                out[i, j] = float(fn(mol))
            except Exception:  # noqa: BLE001 - a descriptor that fails is a missing value (-> 0)
                pass
    return clean_descriptors(out)


EXTRA_FEATURES.register("morgan")(ExtraFeaturizer(
    "morgan", "Morgan fingerprint, radius 2, 2048 bits, binary", _morgan, _morgan_names, standardise=False))
EXTRA_FEATURES.register("rdkit2d")(ExtraFeaturizer(
    "rdkit2d", "RDKit 2D descriptors (Descriptors.descList), standardised with training-split statistics",
    _rdkit2d, _rdkit2d_names, standardise=True, named_columns=True))


def get_featurizer(kind: str) -> ExtraFeaturizer:
    if kind not in EXTRA_FEATURES:
        raise FinetuneError(f"--extra-features {kind!r}: allowed: {', '.join(EXTRA_FEATURES.names())}, {NO_EXTRA_FEATURES}")
    return EXTRA_FEATURES.get(kind)


# ------------------------------------------------------------------------------ statistics


@dataclass
class FeatureStatistics:
    """Per-column shift and scale: the model sees ``(x - mean) / std``."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def fit_statistics(featurizer: ExtraFeaturizer, train: np.ndarray) -> FeatureStatistics:
    """The statistics of ``train`` (the training split's features [n, d]): mean/std for a
    standardised kind (std 0 or undefined -> 1), identity otherwise."""
    train = np.asarray(train, dtype=np.float64)
    d = train.shape[1]
    if not featurizer.standardise or train.shape[0] == 0:
        return FeatureStatistics(np.zeros(d, np.float32), np.ones(d, np.float32))
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return FeatureStatistics(mean.astype(np.float32), std.astype(np.float32))


# --------------------------------------------------------------------------- per data set


def _cache_key(featurizer: ExtraFeaturizer) -> str:
    import rdkit

    doc = {"kind": featurizer.name, "version": featurizer.version, "rdkit": rdkit.__version__,
           "names": featurizer.names(), "clip": CLIP}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def dataset_features(kind: str, smiles: Sequence[str], store_path: Optional[Path] = None) -> np.ndarray:
    """The raw (unstandardised) features [M, d] of ``smiles``, read from / written to a cache
    next to the featurised store ``store_path`` when given."""
    featurizer = get_featurizer(kind)
    cache = None
    if store_path is not None:
        cache = Path(store_path).with_name(f"{Path(store_path).name}.{kind}-{_cache_key(featurizer)}.npy")
        if cache.is_file():
            try:
                x = np.load(cache, allow_pickle=False)
                if x.shape == (len(smiles), featurizer.dim):
                    log.info("read %s features from the cache %s", kind, cache)
                    return x
            except (OSError, ValueError) as e:
                log.warning("extra-feature cache %s is unreadable (%s); computing again", cache, e)
    log.info("computing %s features of %d molecules", kind, len(smiles))
    x = featurizer.compute(list(smiles))
    if cache is not None:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, x, allow_pickle=False)
    return x


def describe(kind: str) -> dict:
    """What config.json and model files record of a kind: name, version, width, whether it is
    standardised and (for kinds whose columns depend on the RDKit version) the column names."""
    featurizer = get_featurizer(kind)
    return {"kind": kind, "version": featurizer.version, "dim": featurizer.dim, "standardised": featurizer.standardise,
            "names": featurizer.names() if featurizer.named_columns else None}


def check_compatible(record: dict, source: str) -> ExtraFeaturizer:
    """The featuriser of a saved model's ``extra_features`` record; a one-line
    :class:`FinetuneError` when this installation would featurise differently (unknown kind,
    other version, other descriptor list)."""
    kind = record.get("kind")
    if kind not in EXTRA_FEATURES:
        raise FinetuneError(f"{source}: extra features {kind!r} are unknown here (known: {', '.join(EXTRA_FEATURES.names())})")
    now = describe(kind)
    for key in ("version", "dim", "names"):
        if record.get(key) != now[key]:
            raise FinetuneError(f"{source}: its {kind} features ({key}) differ from this installation's "
                                "(another RDKit or graphmvp version); predict with the versions it was trained with")
    return EXTRA_FEATURES.get(kind)


__all__ = ["CLIP", "EXTRA_FEATURES", "ExtraFeaturizer", "FeatureStatistics", "check_compatible", "clean_descriptors",
           "dataset_features", "describe", "fit_statistics", "get_featurizer", "parsed_molecules"]
