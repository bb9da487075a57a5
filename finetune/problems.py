"""What the training loop trains on: molecule property prediction or drug-target affinity.

A *problem* owns the featurised data, the split of one seed and the way batches are built and
predictions computed; the loop in :mod:`graphmvp.finetune.trainer` does not know which kind it runs.

* :class:`MoleculeProblem`: a :class:`~graphmvp.finetune.data.MolDataset`; inputs are batched molecule
  graphs, targets [B, T].
* :class:`DTAProblem`: a DeepDTA data set; inputs are (drug graphs, protein tokens), targets
  [B, 1]. Evaluation embeds each drug and protein once and runs the head on the pairs (the
  encoders are deterministic in eval mode, so this equals a per-pair forward pass).

:func:`build_problem` reads the data for a resolved :class:`~graphmvp.finetune.config.FinetuneConfig`
(downloading when needed) and raises :class:`FinetuneError` for bad input before training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.data import (
    MolDataset,
    TableOptions,
    chem_dataset_processed_count,
    load_dataset,
    locate_data_file,
    read_csv_header,
)
from graphmvp.finetune.dta import DTAData, DTAEncoded, DTAModel, encode_dta, load_deepdta, locate_deepdta, validation_split
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.model import FinetuneModel, descriptor_embedding
from graphmvp.finetune.splits import PARTS, Split, make_split
from graphmvp.finetune.tasks import TaskSpec

log = logging.getLogger(__name__)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of ``n`` items, at most ``batch_size`` each; a final slice of a single
    item is merged into the previous one (batch norm cannot train on one molecule of one atom)."""
    bounds = list(range(0, n, batch_size)) + [n]
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    if len(slices) > 1 and slices[-1].stop - slices[-1].start == 1:
        last = slices.pop()
        slices[-1] = slice(slices[-1].start, last.stop)
    return slices


class MoleculeProblem:
    """Molecule property prediction on a :class:`MolDataset`."""

    kind = "molecule"

    def __init__(self, dataset: MolDataset, cfg: FinetuneConfig):
        self.dataset = dataset
        self.cfg = cfg
        self._splits: dict[Optional[int], Split] = {}
        self._extra: Optional[np.ndarray] = None

    @property
    def extra_dim(self) -> int:
        """Width of the extra features (0 without ``--extra-features``)."""
        from graphmvp.finetune.extra_features import get_featurizer

        return 0 if self.cfg.extra_kind is None else get_featurizer(self.cfg.extra_kind).dim

    @property
    def extra(self) -> Optional[np.ndarray]:
        """The raw extra features [M, E] of every molecule (computed, or read from the cache next to
        the featurised store, once), or None."""
        if self.cfg.extra_kind is None:
            return None
        if self._extra is None:
            from graphmvp.finetune.extra_features import dataset_features

            self._extra = dataset_features(self.cfg.extra_kind, self.dataset.smiles,
                                           self.dataset.store_path if self.cfg.use_cache else None)
        return self._extra

    def extra_statistics(self, seed: int):
        """The extra features' standardisation for run seed ``seed``: fitted on its TRAINING part
        only (:func:`graphmvp.finetune.extra_features.fit_statistics`), or None."""
        if self.cfg.extra_kind is None:
            return None
        from graphmvp.finetune.extra_features import fit_statistics, get_featurizer

        return fit_statistics(get_featurizer(self.cfg.extra_kind), self.extra[self.parts(seed)["train"]])

    @property
    def num_tasks(self) -> int:
        return self.dataset.num_tasks

    @property
    def deterministic_split(self) -> bool:
        return self.cfg.split in ("scaffold", "column")

    def split(self, seed: int) -> Split:
        """The split for run seed ``seed`` (``split_seed`` if set, else ``seed``)."""
        key = None if self.deterministic_split else (self.cfg.split_seed if self.cfg.split_seed is not None else seed)
        if key not in self._splits:
            self._splits[key] = make_split(self.cfg.split, self.dataset.smiles, self.cfg.split_fractions,
                                           seed=0 if key is None else key, split_values=self.dataset.split_values)
        return self._splits[key]

    def parts(self, seed: int) -> dict[str, np.ndarray]:
        s = self.split(seed)
        return {p: s.part(p) for p in PARTS}

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.dataset.labels[indices]

    def batch(self, indices: np.ndarray):
        g, y = self.dataset.batch(indices, descriptors=self.cfg.graph_features == "chemprop")
        if self.cfg.extra_kind is None:
            return (g,), y
        return (g, torch.from_numpy(self.extra[np.asarray(indices, dtype=np.int64)])), y

    def build_model(self, encoder: nn.Module, pooling: str) -> nn.Module:
        descriptors = descriptor_embedding(self.cfg.graph_features, encoder, zero_init=self.cfg.init is not None)
        return FinetuneModel(encoder, self.num_tasks, pooling=pooling, head=self.cfg.head, head_hidden=self.cfg.head_hidden,
                             extra_dim=self.extra_dim, descriptors=descriptors)

    def predict(self, model: nn.Module, indices: np.ndarray, batch_size: int, cache: dict, key: str) -> np.ndarray:
        """Model outputs [n, T] for the molecules ``indices`` (call in eval mode, no grad).
        ``cache`` keeps the batched graphs of each ``key`` (split part) between calls."""
        if key not in cache:
            cache[key] = [self.batch(indices[s])[0] for s in batch_slices(indices.shape[0], batch_size)]
        outs = [model(*inputs) for inputs in cache[key]]
        return torch.cat(outs).float().numpy() if outs else np.zeros((0, self.num_tasks), np.float32)

    def describe(self, seed: int) -> dict:
        s = self.split(seed)
        return {"method": s.method, "seed": s.seed, "sizes": s.sizes(),
                "labels": {p: self.dataset.label_summary(s.part(p)) for p in PARTS} if self.num_tasks <= 30 else None}

    def split_json(self, seed: int) -> str:
        return self.split(seed).to_json(self.dataset.row_index)

    def summary(self) -> dict:
        return self.dataset.summary()

    @property
    def skipped(self):
        return self.dataset.skipped


class DTAProblem:
    """Drug-target affinity on a DeepDTA data set."""

    kind = "dta"

    def __init__(self, data: DTAData, encoded: DTAEncoded, cfg: FinetuneConfig):
        self.data = data
        self.encoded = encoded
        self.cfg = cfg
        self._parts: dict[int, dict[str, np.ndarray]] = {}
        self._kept = np.zeros(data.num_pairs, dtype=bool)
        self._kept[encoded.kept_pairs] = True

    num_tasks = 1

    def parts(self, seed: int) -> dict[str, np.ndarray]:
        key = self.cfg.split_seed if self.cfg.split_seed is not None else seed
        if key not in self._parts:
            train, valid = validation_split(self.data.train_folds, key, self.cfg.dta_valid_fraction)
            test = np.unique(self.data.test_fold)
            self._parts[key] = {p: idx[self._kept[idx]] for p, idx in (("train", train), ("valid", valid), ("test", test))}
            for p, idx in self._parts[key].items():
                if idx.shape[0] == 0:
                    raise FinetuneError(f"{self.data.name}: the {p} part has no pair with a valid drug")
        return self._parts[key]

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.data.pair_label[indices][:, None]

    def extra_statistics(self, seed: int):
        return None  # extra features are for molecule tasks (the config refuses them for DTA)

    def batch(self, indices: np.ndarray):
        return self.encoded.batch(self.data, indices, self.cfg.dta_drug_batch)

    def build_model(self, encoder: nn.Module, pooling: str) -> nn.Module:
        return DTAModel(encoder, protein_encoder=self.cfg.protein_encoder, length=self.cfg.protein_length,
                        pooling=pooling, dropout=float(self.cfg.dropout))

    def predict(self, model: DTAModel, indices: np.ndarray, batch_size: int, cache: dict, key: str) -> np.ndarray:
        """Predicted affinities [n, 1] of the pairs ``indices`` (call in eval mode, no grad)."""
        from graphmvp.data.collate import batch_mol_graphs
        from graphmvp.models import graph_readout

        if "drug_batches" not in cache:
            drugs = [i for i, g in enumerate(self.encoded.drug_graphs) if g is not None]
            cache["drug_ids"] = np.array(drugs, dtype=np.int64)
            cache["drug_batches"] = [batch_mol_graphs([self.encoded.drug_graphs[d] for d in drugs[s]])
                                     for s in batch_slices(len(drugs), batch_size)]
        n_drugs = len(self.encoded.drug_graphs)
        parts = [graph_readout(g, model.molecule_model(g), model.pooling) for g in cache["drug_batches"]]
        z = torch.cat(parts)
        drug_z = torch.zeros((n_drugs, z.shape[1]), dtype=z.dtype)
        drug_z[torch.from_numpy(cache["drug_ids"])] = z
        tokens = torch.from_numpy(self.encoded.protein_tokens)
        prot_z = torch.cat([model.protein_model(tokens[s]) for s in batch_slices(tokens.shape[0], batch_size)])
        d = torch.from_numpy(self.data.pair_drug[indices])
        p = torch.from_numpy(self.data.pair_protein[indices])
        out = []
        for s in batch_slices(indices.shape[0], max(batch_size, 4096)):
            out.append(model.head(torch.cat([drug_z[d[s]], prot_z[p[s]]], dim=1)))
        return torch.cat(out).float().numpy()

    def describe(self, seed: int) -> dict:
        parts = self.parts(seed)
        return {"method": "deepdta_folds", "seed": self.cfg.split_seed if self.cfg.split_seed is not None else seed,
                "valid_fraction": self.cfg.dta_valid_fraction, "sizes": {p: int(v.shape[0]) for p, v in parts.items()}}

    def split_json(self, seed: int) -> str:
        import json

        parts = self.parts(seed)
        return json.dumps({"method": "deepdta_folds", **{f"{p}_pairs": v.tolist() for p, v in parts.items()}})

    def summary(self) -> dict:
        return {
            "source": self.data.source,
            "drugs": len(self.data.drug_ids),
            "proteins": len(self.data.protein_ids),
            "pairs": self.data.num_pairs,
            "pairs_used": int(self.encoded.kept_pairs.shape[0]),
            "train_fold_pairs": int(sum(f.shape[0] for f in self.data.train_folds)),
            "test_fold_pairs": int(self.data.test_fold.shape[0]),
            "skipped_drugs": self.encoded.skipped_drugs,
            "protein_letters_outside_alphabet": self.encoded.unknown_letters,
            "label_mean": float(np.mean(self.data.pair_label)),
            "label_std": float(np.std(self.data.pair_label)),
        }

    @property
    def skipped(self):
        return []


def resolve_columns(spec: Optional[TaskSpec], cfg: FinetuneConfig, path: Path) -> dict:
    """Which columns of ``path`` hold the SMILES and the labels, and why: ``{"layout": ...,
    "smiles_col": ..., "label_cols": ...}``. Columns given in the config win; the others come
    from the first of the task's layouts (:meth:`TaskSpec.layout_for`) that the file's header
    fits, so a registered task reads DeepChem's original file and chemprop's renamed one alike."""
    given = {"smiles_col": cfg.smiles_col, "label_cols": None if cfg.label_cols is None else list(cfg.label_cols)}
    if spec is None or (cfg.smiles_col is not None and cfg.label_cols is not None):
        return {"layout": "given", **given}
    header = read_csv_header(path)
    if header:
        try:
            layout = spec.layout_for(header, path.name)
        except ValueError as e:
            raise FinetuneError(str(e)) from None
    else:  # SDF: the original layout's label names are the record properties
        layout = spec.layouts()[0]
    return {
        "layout": layout.name,
        "smiles_col": cfg.smiles_col or layout.smiles_col,
        "label_cols": given["label_cols"] if given["label_cols"] is not None
        else (None if layout.label_cols is None else list(layout.label_cols)),
    }


def build_problem(cfg: FinetuneConfig):
    """Read the data of a resolved config (download if needed); raise :class:`FinetuneError`."""
    spec = cfg.spec()
    if cfg.task_type == "dta":
        folder = locate_deepdta(spec, cfg.data_file, urls=cfg.data_urls or None, progress=cfg.progress)
        data = load_deepdta(folder, spec.label_transform, name=spec.name)
        return DTAProblem(data, encode_dta(data, cfg.protein_length, cfg.hydrogens), cfg)
    path = locate_data_file(spec, cfg.data_file, cfg.chem_dataset, urls=cfg.data_urls or None, progress=cfg.progress)
    use_spec_cols = spec is not None
    columns = resolve_columns(spec, cfg, path)
    opts = TableOptions(
        smiles_col=columns["smiles_col"],
        label_cols=None if columns["label_cols"] is None else tuple(columns["label_cols"]),
        task_type=cfg.task_type,
        drop_cols=spec.drop_cols if use_spec_cols else (),
        split_col=cfg.split_col,
        num_labels=spec.num_labels if use_spec_cols else None,
        hydrogens=cfg.hydrogens,
    )
    dataset = load_dataset(path, opts, name=cfg.task_name, use_cache=cfg.use_cache)
    dataset.info["columns"] = {**columns, "label_cols": dataset.label_names}
    if cfg.chem_dataset is not None:
        count = chem_dataset_processed_count(path)
        if count is not None:
            dataset.info["hu_processed_molecules"] = count
            if count != len(dataset):
                log.warning("%s: Hu et al.'s processed/smiles.csv has %d molecules, this run keeps %d", path, count, len(dataset))
    return MoleculeProblem(dataset, cfg)


__all__ = ["DTAProblem", "MoleculeProblem", "batch_slices", "build_problem"]
