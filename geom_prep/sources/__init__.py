"""Input sources: GEOM ``rdkit_folder``, SMILES files, SDF files (registry ``SOURCES``)."""

from graphmvp.prep.sources.base import SOURCES, Candidate, Source, build_source

__all__ = ["SOURCES", "Candidate", "Source", "build_source"]
