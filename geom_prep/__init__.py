"""Conformer preprocessing: GEOM ``rdkit_folder`` or SMILES/SDF files -> one HDF5 conformer store.

Python API: :func:`geom_prep.pipeline.prepare` (one run), :func:`geom_prep.merge.merge_stores`
(join shards); the store is read with :class:`graphmvp.data.ConformerStore`.
"""

from geom_prep.config import PrepConfig, PrepError

__all__ = ["PrepConfig", "PrepError", "prepare", "merge_stores"]


def __getattr__(name):  # lazy, so that importing the config does not import RDKit pipelines
    if name == "prepare":
        from geom_prep.pipeline import prepare

        return prepare
    if name == "merge_stores":
        from geom_prep.merge import merge_stores

        return merge_stores
    raise AttributeError(name)
