"""Conformer preprocessing: GEOM ``rdkit_folder`` or SMILES/SDF files -> one HDF5 conformer store.

Python API: :func:`graphmvp.prep.pipeline.prepare` (one run), :func:`graphmvp.prep.merge.merge_stores`
(join shards); the store is read with :class:`graphmvp.data.ConformerStore`.
"""

from graphmvp.prep.config import PrepConfig, PrepError

__all__ = ["PrepConfig", "PrepError", "prepare", "merge_stores"]


def __getattr__(name):  # lazy, so that importing the config does not import RDKit pipelines
    if name == "prepare":
        from graphmvp.prep.pipeline import prepare

        return prepare
    if name == "merge_stores":
        from graphmvp.prep.merge import merge_stores

        return merge_stores
    raise AttributeError(name)
