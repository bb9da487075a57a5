"""Label vocabularies: key counts, a minimum count, an ``<other>`` class, versioned JSON.

A vocabulary maps the string keys of an atom-level label kind (refined-BRICS motif keys, GROVER
contextual labels) to class indices. Index 0 is ``<other>``: every key seen fewer than
``min_count`` times, every key absent from the vocabulary (unseen molecules), and every atom of
a molecule that could not be labelled. The other keys follow by decreasing count, ties by key
(so a vocabulary does not depend on input order or worker count).

Counts: ``counts[key]`` is the number of *occurrences* (one per motif fragment for ``motif``, one
per atom for ``contextual``) and ``atoms[key]`` the number of heavy atoms carrying the key.
``min_count`` applies to occurrences. ``coverage`` is the fraction of the ``n_atoms`` heavy
atoms counted (atoms of molecules that failed included, when known) whose label is not
``<other>``. All keys seen are kept in the JSON (also those under ``min_count``), so a vocabulary
can be rebuilt with another cutoff without relabelling (:meth:`Vocabulary.with_min_count`).

JSON (``format`` ``graphmvp-label-vocab``, ``format_version`` 1)::

    {"format", "format_version", "kind", "rules_version", "min_count", "other", "other_index",
     "size", "keys": [...], "counts": {key: n}, "atoms": {key: n}, "n_molecules", "n_failed",
     "failures": {reason: n}, "failure_examples": [{"index", "smiles", "reason", "detail"}],
     "n_atoms", "coverage", "source": {...}, "created"}
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from graphmvp.io import write_text_atomic

OTHER = "<other>"
OTHER_INDEX = 0
VOCAB_FORMAT = "graphmvp-label-vocab"
VOCAB_FORMAT_VERSION = 1
#: a key seen once cannot be learned as a class of its own; 2 keeps every repeated key
DEFAULT_MIN_COUNT = 2
#: failing molecules listed by example in a vocabulary (all are counted)
MAX_FAILURE_EXAMPLES = 20


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used (wrong format, version, or kind)."""


@dataclass
class KeyCounts:
    """Counts gathered while labelling molecules, before a cutoff makes them a vocabulary."""

    counts: Counter = field(default_factory=Counter)
    atoms: Counter = field(default_factory=Counter)
    n_molecules: int = 0
    n_atoms: int = 0
    failures: Counter = field(default_factory=Counter)
    failure_examples: list = field(default_factory=list)

    def add(self, keys: Sequence[str], occurrences: Sequence[int], atoms: Sequence[int]) -> None:
        """Add one labelled molecule's keys (each with its occurrences and heavy atoms)."""
        for key, n_occ, n_atoms in zip(keys, occurrences, atoms):
            self.counts[key] += int(n_occ)
            self.atoms[key] += int(n_atoms)

    def add_failure(self, reason: str, index: int | str, smiles: str, detail: str = "") -> None:
        self.failures[reason] += 1
        if len(self.failure_examples) < MAX_FAILURE_EXAMPLES:
            self.failure_examples.append({"index": index, "smiles": smiles, "reason": reason, "detail": detail})

    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())


@dataclass
class Vocabulary:
    """Keys of one label kind with their class indices (``keys[i]`` has index ``i``;
    ``keys[0]`` is ``<other>``)."""

    kind: str
    rules_version: str
    min_count: int
    keys: list[str]
    counts: dict[str, int]
    atoms: dict[str, int]
    n_molecules: int = 0
    n_atoms: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: list = field(default_factory=list)
    source: dict = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        if not self.keys or self.keys[OTHER_INDEX] != OTHER:
            raise VocabularyError(f"a {self.kind} vocabulary must start with '{OTHER}'")
        self._index = {key: i for i, key in enumerate(self.keys)}

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, kind: str, rules_version: str, counts: KeyCounts, min_count: int = DEFAULT_MIN_COUNT,
              source: dict | None = None) -> "Vocabulary":
        """Vocabulary of the keys seen at least ``min_count`` times (``min_count`` >= 1)."""
        if int(min_count) < 1:
            raise VocabularyError(f"min_count must be >= 1, not {min_count}")
        return cls(
            kind=kind,
            rules_version=rules_version,
            min_count=int(min_count),
            keys=[OTHER, *_kept_keys(counts.counts, int(min_count))],
            counts=dict(counts.counts),
            atoms=dict(counts.atoms),
            n_molecules=counts.n_molecules,
            n_atoms=counts.n_atoms,
            failures=dict(counts.failures),
            failure_examples=list(counts.failure_examples),
            source=dict(source or {}),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def with_min_count(self, min_count: int) -> "Vocabulary":
        """The same counts under another cutoff."""
        counts = KeyCounts(Counter(self.counts), Counter(self.atoms), self.n_molecules, self.n_atoms,
                           Counter(self.failures), list(self.failure_examples))
        return Vocabulary.build(self.kind, self.rules_version, counts, min_count, self.source)

    # -- lookup ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of classes, ``<other>`` included."""
        return len(self.keys)

    other_index = OTHER_INDEX

    def index(self, key: str) -> int:
        """Class index of ``key`` (``<other>``'s index for a key not in the vocabulary)."""
        return self._index.get(key, OTHER_INDEX)

    def encode(self, keys: Iterable[str]) -> np.ndarray:
        """Class indices of ``keys``: int64 [len(keys)]."""
        return np.fromiter((self._index.get(k, OTHER_INDEX) for k in keys), dtype=np.int64)

    def __contains__(self, key: str) -> bool:
        return key in self._index and key != OTHER

    def __len__(self) -> int:
        return len(self.keys)

    # -- statistics ------------------------------------------------------------------------
    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())

    @property
    def covered_atoms(self) -> int:
        """Heavy atoms counted whose key is in the vocabulary."""
        return sum(self.atoms.get(k, 0) for k in self.keys[1:])

    @property
    def coverage(self) -> float:
        """Fraction of the counted heavy atoms whose label is not ``<other>`` (0 when none)."""
        return self.covered_atoms / self.n_atoms if self.n_atoms else 0.0

    def summary(self) -> str:
        """One line for stdout: size, coverage, keys seen, failures."""
        failed = ""
        if self.n_failed:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failures.items()))
            failed = f"; {self.n_failed} molecules not labelled ({reasons}), their atoms are {OTHER}"
        return (f"{self.kind} vocabulary: {self.size} classes ({self.size - 1} keys seen >= {self.min_count} times "
                f"of {len(self.counts)} distinct, + {OTHER}); coverage {100 * self.coverage:.2f}% of "
                f"{self.n_atoms} heavy atoms in {self.n_molecules} molecules{failed}")

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "format_version": VOCAB_FORMAT_VERSION,
            "kind": self.kind,
            "rules_version": self.rules_version,
            "min_count": self.min_count,
            "other": OTHER,
            "other_index": OTHER_INDEX,
            "size": self.size,
            "keys": list(self.keys),
            "counts": dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "atoms": dict(sorted(self.atoms.items(), key=lambda kv: (-kv[1], kv[0]))),
            "n_molecules": self.n_molecules,
            "n_failed": self.n_failed,
            "failures": dict(sorted(self.failures.items())),
            "failure_examples": list(self.failure_examples),
            "n_atoms": self.n_atoms,
            "coverage": self.coverage,
            "source": self.source,
            "created": self.created,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, origin: str = "vocabulary") -> "Vocabulary":
        if d.get("format") != VOCAB_FORMAT:
            raise VocabularyError(f"{origin}: not a graphmvp label vocabulary (format {d.get('format')!r})")
        if d.get("format_version") != VOCAB_FORMAT_VERSION:
            raise VocabularyError(f"{origin}: vocabulary format_version {d.get('format_version')}, this graphmvp "
                                  f"reads {VOCAB_FORMAT_VERSION}")
        try:
            return cls(
                kind=d["kind"], rules_version=d["rules_version"], min_count=int(d["min_count"]), keys=list(d["keys"]),
                counts={k: int(v) for k, v in d["counts"].items()}, atoms={k: int(v) for k, v in d["atoms"].items()},
                n_molecules=int(d["n_molecules"]), n_atoms=int(d["n_atoms"]), failures=dict(d.get("failures", {})),
                failure_examples=list(d.get("failure_examples", [])), source=dict(d.get("source", {})),
                created=str(d.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, VocabularyError):
                raise
            raise VocabularyError(f"{origin}: malformed vocabulary ({type(e).__name__}: {e})") from None

    @classmethod
    def from_json(cls, text: str, origin: str = "vocabulary") -> "Vocabulary":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise VocabularyError(f"{origin}: not JSON ({e})") from None
        if not isinstance(d, dict):
            raise VocabularyError(f"{origin}: not a graphmvp label vocabulary")
        return cls.from_dict(d, origin)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically; return the path."""
        write_text_atomic(path, self.to_json() + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, kind: str | None = None, rules_version: str | None = None) -> "Vocabulary":
        """Read a vocabulary; with ``kind``/``rules_version``, refuse one of another kind or rules."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise VocabularyError(f"{path}: cannot read ({e.strerror or e})") from None
        vocab = cls.from_json(text, str(path))
        vocab.check(kind, rules_version, str(path))
        return vocab

    def check(self, kind: str | None, rules_version: str | None, origin: str = "vocabulary") -> None:
        if kind is not None and self.kind != kind:
            raise VocabularyError(f"{origin}: a {self.kind} vocabulary, not a {kind} one")
        if rules_version is not None and self.rules_version != rules_version:
            raise VocabularyError(f"{origin}: built with rules {self.rules_version}, this graphmvp labels with "
                                  f"{rules_version}; rebuild it")


def _kept_keys(counts: Counter, min_count: int) -> list[str]:
    kept = [(n, k) for k, n in counts.items() if n >= min_count]
    kept.sort(key=lambda nk: (-nk[0], nk[1]))
    return [k for _, k in kept]
