"""The typed configuration of one preparation run."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SELECT_RULES = ("energy", "boltzmann", "file")
HYDROGEN_MODES = ("keep", "drop")
SOURCE_NAMES = ("geom", "smiles", "sdf")

#: fields that change how a run is executed but not what it produces: shards of one data set may
#: differ in them (a resumed run must keep the same chunk size, which the parts folder records)
VOLATILE_FIELDS = ("workers", "rdkit_threads", "output", "shard", "overwrite", "chunk_size")
#: the value that reproduces a run made before the option existed (resume compares configs)
LEGACY_DEFAULTS = {"conf_timeout": 0}


class PrepError(Exception):
    """A problem with the run's inputs or options: reported as one line, exit code 2."""


class NothingPrepared(PrepError):
    """A whole run finished and no molecule survived it (its report says why)."""


@dataclass
class PrepConfig:
    """Everything that defines a preparation run.

    Defaults follow upstream GraphMVP where it has one: 5 conformers per molecule, lowest energy
    first, molecules with fewer than 5 or more than 1000 conformers skipped, shuffle seed 777,
    explicit hydrogens kept.
    """

    input: str
    output: str
    source: str | None = None  # geom | smiles | sdf; inferred from the input when None
    n_conf: int = 5
    select: str = "energy"
    min_confs: int | None = None  # None: equal to n_conf (upstream)
    max_confs: int = 1000
    n_mol: int | None = None
    shuffle: bool = True
    seed: int = 777
    exclude: list[str] = field(default_factory=list)
    exclude_ignore_stereo: bool = False
    hydrogens: str = "keep"
    gen_confs: int | None = None  # conformers generated for SMILES/SDF input; None: 2 x n_conf
    conf_timeout: int = 120  # seconds per molecule for conformer generation (0: no limit); over it: skipped
    smiles_col: str | None = None
    geom_subset: str = "drugs"
    chunk_size: int | None = None  # None: up to 100, at least 32 chunks for small inputs
    workers: int = 1
    rdkit_threads: int | None = None  # RDKit threads per worker; None: cores // workers (never changes results)
    shard: tuple[int, int] | None = None
    overwrite: bool = False

    def chunk_size_for(self, n_candidates: int) -> int:
        """Molecules per unit of work: ``chunk_size`` if set, else up to 100 with at least 32
        chunks, so that small inputs still spread over the workers."""
        if self.chunk_size is not None:
            return self.chunk_size
        return max(1, min(100, -(-n_candidates // 32)))

    def resolved(self) -> "PrepConfig":
        """Validate, infer the source, make paths absolute, fill derived defaults."""
        c = dataclasses.replace(self)
        inp = Path(c.input).expanduser()
        if not inp.exists():
            raise PrepError(f"input {inp} does not exist")
        c.input = str(inp.resolve())
        c.output = str(Path(c.output).expanduser().resolve())
        if c.source is None:
            c.source = infer_source(inp)
        if c.source not in SOURCE_NAMES:
            raise PrepError(f"unknown source '{c.source}' (known: {', '.join(SOURCE_NAMES)})")
        if c.select not in SELECT_RULES:
            raise PrepError(f"unknown conformer rule '{c.select}' (known: {', '.join(SELECT_RULES)})")
        if c.hydrogens not in HYDROGEN_MODES:
            raise PrepError(f"--hydrogens must be keep or drop, not '{c.hydrogens}'")
        if c.n_conf < 1:
            raise PrepError(f"--n-conf must be >= 1, not {c.n_conf}")
        if c.min_confs is None:
            c.min_confs = c.n_conf
        if c.min_confs < 1 or c.max_confs < c.min_confs:
            raise PrepError(f"need 1 <= --min-confs <= --max-confs, got {c.min_confs} and {c.max_confs}")
        if c.gen_confs is None:
            c.gen_confs = 2 * c.n_conf
        if c.gen_confs < 1:
            raise PrepError(f"--gen-confs must be >= 1, not {c.gen_confs}")
        if c.conf_timeout < 0:
            raise PrepError(f"--conf-timeout must be >= 0 seconds (0: no limit), not {c.conf_timeout}")
        if c.n_mol is not None and c.n_mol < 1:
            raise PrepError(f"--n-mol must be >= 1, not {c.n_mol}")
        if (c.chunk_size is not None and c.chunk_size < 1) or c.workers < 1:
            raise PrepError("--chunk-size and --workers must be >= 1")
        if c.rdkit_threads is None:
            c.rdkit_threads = max(1, (os.cpu_count() or 1) // c.workers)
        if c.rdkit_threads < 1:
            raise PrepError(f"--rdkit-threads must be >= 1, not {c.rdkit_threads}")
        if c.shard is not None:
            i, n = c.shard
            if not 0 <= i < n:
                raise PrepError(f"--shard i/N needs 0 <= i < N, got {i}/{n}")
            c.shard = (int(i), int(n))
        c.exclude = [str(Path(p).expanduser().resolve()) for p in c.exclude]
        for p in c.exclude:
            if not Path(p).is_file():
                raise PrepError(f"--exclude file {p} does not exist")
        return c

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shard"] = list(self.shard) if self.shard else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def result_defining(self) -> dict:
        """The fields that determine the store's content (what resume and merge compare)."""
        d = self.to_dict()
        for key in VOLATILE_FIELDS:
            d.pop(key, None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PrepConfig":
        d = dict(d)
        if d.get("shard") is not None:
            d["shard"] = tuple(d["shard"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise PrepError(f"--shard takes i/N (e.g. 0/4), not '{text}'") from None
    return i, n


def infer_source(path: Path) -> str:
    """GEOM for a directory or summary JSON, SDF for .sdf(.gz), otherwise a SMILES file."""
    if path.is_dir() or path.suffix == ".json":
        return "geom"
    name = path.name.lower()
    if name.endswith(".sdf") or name.endswith(".sdf.gz"):
        return "sdf"
    return "smiles"
