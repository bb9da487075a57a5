"""Data access: the HDF5 conformer store and (later) the datasets built on it."""

from graphmvp.data.store import (
    FORMAT_VERSION,
    ConformerStore,
    Molecule,
    SkipRecord,
    StoreFormatError,
    open_store,
)

__all__ = ["FORMAT_VERSION", "ConformerStore", "Molecule", "SkipRecord", "StoreFormatError", "open_store"]
