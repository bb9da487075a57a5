"""Train/validation/test splits of a molecule data set.

All splits work on the molecules that were kept (row order of the data file, unparsable rows
left out), so a split depends only on the file and the options, never on the machine. Index
arrays are returned sorted.

``scaffold`` (Hu et al., deterministic; the default, as in GraphMVP)
    Molecules are grouped by their Bemis-Murcko scaffold SMILES with chirality
    (``MurckoScaffoldSmiles(includeChirality=True)``; acyclic molecules share the empty
    scaffold). Groups are ordered by ``(size, smallest member index)`` DESCENDING - i.e. larger
    groups first and, among groups of equal size, the one whose first molecule comes LATER in
    the file first (this is what Hu et al.'s ``sorted(..., key=(len, first), reverse=True)``
    does). Walking that order, a group goes to train if train stays within ``f_train * n``
    molecules, else to valid if train + valid stay within ``(f_train + f_valid) * n``, else to
    test. A later, smaller group may still go to train.
``random_scaffold`` (Hu et al.'s random scaffold split)
    Scaffold groups in a seeded random order; a group goes to valid while valid stays within
    ``floor(f_valid * n)``, else to test while test stays within ``floor(f_test * n)``, else to
    train.
``balanced_scaffold`` (Chemprop's balanced scaffold split)
    Groups larger than half the valid or half the test quota come first (in seeded random order),
    then the other groups (seeded random order); each goes to train if it fits in
    ``f_train * n``, else to valid if it fits in ``f_valid * n``, else to test.
``random``
    A seeded permutation: the first ``int(f_train * n)`` to train, the next
    ``int(f_valid * n)`` to valid, the rest to test.
``column``
    A column of the data file says, per row, ``train`` / ``valid`` (also ``val``,
    ``validation``, ``dev``) / ``test`` (case-insensitive).

Every method must give three non-empty parts; otherwise :class:`FinetuneError` says which part
is empty (tiny data sets need other fractions or a split column).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from rdkit import RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

from graphmvp.finetune.errors import FinetuneError
from graphmvp.registry import Registry

PARTS = ("train", "valid", "test")
COLUMN_VALUES = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid",
    "test": "test", "testing": "test",
}


@dataclass
class Split:
    """Indices (int64, sorted) into the data set's molecules for each part."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    method: str
    seed: Optional[int] = None

    def sizes(self) -> dict[str, int]:
        return {p: int(getattr(self, p).shape[0]) for p in PARTS}

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise ValueError(f"unknown split part {name!r}; allowed: {', '.join(PARTS)}")
        return getattr(self, name)

    def to_json(self, row_index: Optional[np.ndarray] = None) -> str:
        """The split as JSON: method, seed, sizes and, per part, the data-file row numbers
        (``row_index[i]``) of its molecules (or the molecule indices without ``row_index``)."""
        doc = {"method": self.method, "seed": self.seed, "sizes": self.sizes()}
        for p in PARTS:
            idx = self.part(p)
            rows = idx if row_index is None else np.asarray(row_index)[idx]
            doc[f"{p}_rows"] = [int(r) for r in rows]
        return json.dumps(doc)


def scaffold_smiles(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES with chirality ("" for acyclic molecules)."""
    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=True)


def scaffold_groups(smiles: Sequence[str]) -> dict[str, list[int]]:
    """scaffold SMILES -> indices of its molecules (ascending), in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    lg = RDLogger.logger()
    lg.setLevel(RDLogger.CRITICAL)
    try:
        for i, smi in enumerate(smiles):
            try:
                key = scaffold_smiles(smi)
            except Exception as e:  # noqa: BLE001 - RDKit raises several types; name the molecule
                raise FinetuneError(f"cannot compute the scaffold of molecule {i} ({smi!r}): {e}") from None
            groups[key].append(i)
    finally:
        lg.setLevel(RDLogger.WARNING)
    return dict(groups)


def hu_scaffold_order(groups: dict[str, list[int]]) -> list[list[int]]:
    """Scaffold groups sorted by (size, first index) descending (Hu et al.'s order)."""
    return [g for g in sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise FinetuneError(f"split fractions must be three numbers (train valid test), got {list(fractions)}")
    f = tuple(float(x) for x in fractions)
    if any(not 0 <= x <= 1 for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise FinetuneError(f"split fractions {list(f)} must be in [0, 1] and sum to 1")
    return f  # type: ignore[return-value]


def _finish(parts: tuple[list[int], list[int], list[int]], method: str, seed: Optional[int], n: int) -> Split:
    arrays = [np.array(sorted(p), dtype=np.int64) for p in parts]
    for name, arr in zip(PARTS, arrays):
        if arr.shape[0] == 0:
            raise FinetuneError(
                f"the {method} split of {n} molecules left the {name} part empty; "
                "use more data, other --split-fractions or a --split-col"
            )
    return Split(*arrays, method=method, seed=seed)


def scaffold_split(smiles: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: Optional[int] = None, **_) -> Split:
    f_train, f_valid, _f_test = _check_fractions(fractions)
    n = len(smiles)
    train_cut, valid_cut = f_train * n, (f_train + f_valid) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in hu_scaffold_order(scaffold_groups(smiles)):
        if len(train) + len(group) > train_cut:
            if len(train) + len(valid) + len(group) > valid_cut:
                test.extend(group)
            else:
                valid.extend(group)
        else:
            train.extend(group)
    return _finish((train, valid, test), "scaffold", None, n)


def random_scaffold_split(smiles: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0, **_) -> Split:
    _f_train, f_valid, f_test = _check_fractions(fractions)
    n = len(smiles)
    groups = list(scaffold_groups(smiles).values())
    order = np.random.default_rng(seed).permutation(len(groups))
    n_valid, n_test = int(np.floor(f_valid * n)), int(np.floor(f_test * n))
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for g in order:
        group = groups[g]
        if len(valid) + len(group) <= n_valid:
            valid.extend(group)
        elif len(test) + len(group) <= n_test:
            test.extend(group)
        else:
            train.extend(group)
    return _finish((train, valid, test), "random_scaffold", seed, n)


def balanced_scaffold_split(smiles: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0, **_) -> Split:
    f_train, f_valid, f_test = _check_fractions(fractions)
    n = len(smiles)
    train_size, valid_size, test_size = f_train * n, f_valid * n, f_test * n
    groups = list(scaffold_groups(smiles).values())
    rng = np.random.default_rng(seed)
    big = [g for g in groups if len(g) > valid_size / 2 or len(g) > test_size / 2]
    small = [g for g in groups if not (len(g) > valid_size / 2 or len(g) > test_size / 2)]
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) <= train_size:
            train.extend(group)
        elif len(valid) + len(group) <= valid_size:
            valid.extend(group)
        else:
            test.extend(group)
    return _finish((train, valid, test), "balanced_scaffold", seed, n)


def random_split(smiles: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0, **_) -> Split:
    f_train, f_valid, _f_test = _check_fractions(fractions)
    n = len(smiles)
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(f_train * n), int(f_valid * n)
    parts = (perm[:n_train].tolist(), perm[n_train : n_train + n_valid].tolist(), perm[n_train + n_valid :].tolist())
    return _finish(parts, "random", seed, n)


def column_split(smiles: Sequence[str], fractions=None, seed: Optional[int] = None,
                 split_values: Optional[Sequence[str]] = None, **_) -> Split:
    if split_values is None:
        raise FinetuneError("--split column needs --split-col naming the column that holds train/valid/test")
    if len(split_values) != len(smiles):
        raise ValueError(f"{len(split_values)} split values for {len(smiles)} molecules")
    parts: dict[str, list[int]] = {p: [] for p in PARTS}
    for i, value in enumerate(split_values):
        part = COLUMN_VALUES.get(str(value).strip().lower())
        if part is None:
            raise FinetuneError(
                f"split column value {value!r} of molecule {i} is not one of train, valid, test "
                "(also accepted: training, val, validation, dev, testing)"
            )
        parts[part].append(i)
    return _finish((parts["train"], parts["valid"], parts["test"]), "column", None, len(smiles))


#: split method name -> ``f(smiles, fractions, seed, split_values=None) -> Split``
SPLITS: Registry = Registry("split")
SPLITS.register("scaffold")(scaffold_split)
SPLITS.register("random_scaffold")(random_scaffold_split)
SPLITS.register("balanced_scaffold")(balanced_scaffold_split)
SPLITS.register("random")(random_split)
SPLITS.register("column")(column_split)


def make_split(method: str, smiles: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 0,
               split_values: Optional[Sequence[str]] = None) -> Split:
    """Split ``smiles`` (the data set's molecules, in order) with ``method`` (see the module
    docstring). ``seed`` is ignored by the deterministic methods (scaffold, column)."""
    if method not in SPLITS:
        raise FinetuneError(f"unknown split {method!r}; allowed: {', '.join(SPLITS.names())}")
    return SPLITS.get(method)(smiles, fractions=fractions, seed=seed, split_values=split_values)


__all__ = [
    "PARTS",
    "SPLITS",
    "Split",
    "balanced_scaffold_split",
    "column_split",
    "hu_scaffold_order",
    "make_split",
    "random_scaffold_split",
    "random_split",
    "scaffold_groups",
    "scaffold_smiles",
    "scaffold_split",
]
