"""What every input source provides: a list of candidates, and a way to build one molecule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdkit import Chem

from graphmvp.data.store import Molecule
from graphmvp.registry import Registry
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.molecule import exclusion_key
from graphmvp.prep.reasons import EXCLUDED_DOWNSTREAM, Skip

SOURCES: Registry = Registry("source")


@dataclass
class Candidate:
    """One input molecule before processing: cheap to list and to send to a worker.

    ``source_id`` says where it is (pickle path, ``file:line``, ``file#record``); ``smiles`` is the
    input's own SMILES (may be empty for SDF records); ``payload`` is what the source needs to
    build it.
    """

    source_id: str
    smiles: str
    payload: Any = None


class Source:
    """Base class: subclasses list candidates and build molecules, raising ``Skip`` for bad ones."""

    name = "?"

    def __init__(self, config: PrepConfig, excluded: frozenset[str] = frozenset()):
        self.config = config
        self.excluded = excluded

    def candidates(self) -> list[Candidate]:
        raise NotImplementedError

    def input_file(self) -> Path:
        """The file whose change invalidates an unfinished run (checked on resume)."""
        return Path(self.config.input)

    def fingerprint(self) -> dict:
        st = self.input_file().stat()
        return {"file": str(self.input_file()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}

    def build(self, candidate: Candidate, index: int) -> Molecule:
        """Build the molecule of ``candidate`` (its position in the run is ``index``)."""
        raise NotImplementedError

    def check_excluded(self, mol: Chem.Mol) -> None:
        """Skip molecules that appear in the downstream files given with ``--exclude``."""
        if not self.excluded:
            return
        key = exclusion_key(mol, self.config.exclude_ignore_stereo)
        if key in self.excluded:
            raise Skip(EXCLUDED_DOWNSTREAM, key)


def build_source(config: PrepConfig, excluded: frozenset[str] = frozenset()) -> Source:
    # importing the modules registers them
    from graphmvp.prep.sources import geom, smiles  # noqa: F401

    return SOURCES.get(config.source)(config, excluded)
