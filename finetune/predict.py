"""Predictions of saved fine-tuned models on new molecules: ``graphmvp-finetune predict``.

``MODEL`` is a model file (``seed_<s>/best_model.pt``, or ``seed_<s>/best_model_member_<k>.pt``
of an ``--ensemble`` run, written with ``--save-model``) or a run folder: then every model file
of every seed is a member of an ensemble. Each molecule of the data file (``--smiles-col``, CSV
or CSV.gz) gets, per task, the members' mean and - for an ensemble - their population std
(``<task>_std``) and each member's prediction (``<task>_<member>``, member ``seed_<s>`` or
``seed_<s>_member_<k>``). Regression outputs are in the units of the training labels (a model
trained on standardised targets carries their mean and std); classification outputs are
probabilities (averaged as probabilities, :mod:`graphmvp.finetune.ensemble`). A model trained with
``--extra-features`` carries their kind and its training split's statistics: new molecules get
the same features, standardised the same way (a different RDKit descriptor list is an error);
one trained with ``--graph-features chemprop`` gets the same atom and bond descriptors.
Rows RDKit cannot read, or that the features cannot express, get empty cells and their reason in
the ``skipped`` column. The CSV is written under a temporary name and renamed.

A drug-target affinity model (davis, kiba) predicts pairs: each row's molecule with the amino-acid
sequence in ``--protein-col`` (cut or padded to the model's protein length, as in training); its
output column is ``affinity``, in the training labels' units (Davis: pKd). A row with an empty
sequence is skipped with that reason.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from graphmvp.finetune.data import RawTable, attach_descriptors, featurise_rows
from graphmvp.finetune.ensemble import to_output
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.problems import batch_slices
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.io import write_bytes_atomic

log = logging.getLogger(__name__)


def _member_key(f: Path) -> tuple[int, int]:
    """(seed, member) of ``seed_<s>/best_model.pt`` (member 0) or ``seed_<s>/best_model_member_<k>.pt``."""
    member = f.stem.removeprefix("best_model").removeprefix("_member_")
    return int(f.parent.name.split("_")[1]), int(member or 0)


def model_files(path: str | Path) -> list[Path]:
    """The model file itself, or every seed's (and ensemble member's) model file of a run folder."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = [f for f in p.glob("seed_*/best_model*.pt")
                 if f.parent.name.split("_")[1].isdigit() and re.fullmatch(r"best_model(_member_\d+)?", f.stem)]
        if files:
            return sorted(files, key=_member_key)
        raise FinetuneError(f"{p}: no seed_*/best_model.pt in this run folder (train with --save-model)")
    raise FinetuneError(f"{p}: no such model file or run folder")


def member_names(files: Sequence[Path]) -> list[str]:
    """Column suffixes of the members: ``seed_<s>`` or ``seed_<s>_member_<k>`` (else the file stem)."""
    names = []
    for f in files:
        if not f.parent.name.startswith("seed_"):
            names.append(f.stem)
        elif f.stem == "best_model":
            names.append(f.parent.name)
        else:
            names.append(f"{f.parent.name}_member_{_member_key(f)[1]}")
    return names


def _extra_features(payload: dict, source: Path, smiles: list[str], cache: dict) -> Optional[torch.Tensor]:
    """The raw extra features of ``smiles`` for a model trained with them (computed once per
    kind), else None; the model standardises them with its own training statistics."""
    record = payload.get("extra_features")
    if not record:
        return None
    from graphmvp.finetune.extra_features import check_compatible

    featurizer = check_compatible(record, str(source))
    if featurizer.name not in cache:
        cache[featurizer.name] = torch.from_numpy(featurizer.compute(smiles)) if smiles else None
    return cache[featurizer.name]


def _graphs(kept: list, part: slice, found=None):
    """The batched graph of ``kept[part]``, with their descriptors when ``found`` is given."""
    g = batch_mol_graphs(kept[part])
    if found is not None:
        attach_descriptors(g, found, range(len(kept))[part], "input")
    return g


def _read_columns(data_file: str | Path, columns: dict[str, str]) -> list[list[str]]:
    """The stripped values of each column ``{name: option that names it}`` of a CSV."""
    path = Path(data_file)
    if not path.is_file():
        raise FinetuneError(f"--data-file {path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - pandas raises many types; name the file
        raise FinetuneError(f"{path}: cannot read as CSV ({e})") from None
    for col, option in columns.items():
        if col not in frame.columns:
            raise FinetuneError(f"{path}: no column {col!r} (columns: {', '.join(map(str, frame.columns[:12]))}); "
                                f"give {option}")
    return [[s.strip() for s in frame[col].tolist()] for col in columns]


def _label_units(pred: np.ndarray, payload: dict) -> np.ndarray:
    """Predictions of a model trained on standardised targets, back in the labels' units."""
    if payload.get("target_scale") is None:
        return pred
    return pred * np.asarray(payload["target_scale"]) + np.asarray(payload["target_shift"])


def _load(models: Sequence[Path], dta: bool) -> list:
    """The loaded models, all of one kind: molecule-property models, or DTA models for ``dta``."""
    from graphmvp.finetune.trainer import load_finetuned

    loaded = [load_finetuned(m) for m in models]
    kinds = {p.get("task_type") == "dta" for _, p in loaded}
    if kinds == {dta}:
        return loaded
    names = ", ".join(map(str, models))
    if len(kinds) > 1:
        raise FinetuneError(f"{names}: a mix of molecule-property and drug-target affinity models")
    if dta:
        raise FinetuneError(f"{names}: molecule-property models; --protein-col applies to drug-target affinity models only")
    raise FinetuneError(f"{names}: drug-target affinity models, which predict (molecule, protein) pairs; give "
                        "--protein-col, the column of amino-acid sequences")


def predict_pairs(models: Sequence[Path], smiles: list[str], proteins: list[str],
                  batch_size: int = 256) -> tuple[np.ndarray, list[str], dict]:
    """Predicted affinities [M, n, 1] of saved DTA models for the pairs (``smiles[i]``,
    ``proteins[i]``, an amino-acid sequence), NaN for skipped rows; the task name; ``{row: reason}``
    of the skipped rows (a SMILES that gives no graph, an empty sequence). Each distinct drug and
    protein of a batch is encoded once (exact in eval mode)."""
    from graphmvp.features import SmilesError, downstream_graph, parse_smiles
    from graphmvp.finetune.dta import PROTEIN_ALPHABET, encode_protein, pair_inputs

    loaded = _load(models, dta=True)
    hydrogens = {p.get("hydrogens", "drop") for _, p in loaded}
    lengths = {int(p["dta"]["protein_length"]) for _, p in loaded}
    if len(hydrogens) != 1 or len(lengths) != 1:
        raise FinetuneError(f"the models {[str(m) for m in models]} were trained on different graphs or protein lengths")
    hydro, length = hydrogens.pop(), lengths.pop()
    graph_of: dict[str, int] = {}  # SMILES -> its row of graphs
    reason_of: dict[str, str] = {}  # SMILES that give no graph -> why
    protein_of: dict[str, int] = {}  # sequence -> its row of tokens
    graphs, tokens, skipped, rows = [], [], {}, []
    for i, (smi, seq) in enumerate(zip(smiles, proteins)):
        if smi not in graph_of and smi not in reason_of:
            try:
                graphs.append(downstream_graph(parse_smiles(smi), hydro))
                graph_of[smi] = len(graphs) - 1
            except SmilesError as e:
                reason_of[smi] = str(e)
        if smi in reason_of:
            skipped[i] = reason_of[smi]
        elif not seq:
            skipped[i] = "empty protein sequence"
        else:
            if seq not in protein_of:
                protein_of[seq] = len(tokens)
                row, unknown = encode_protein(seq, length)
                tokens.append(row)
                if unknown:
                    log.warning("row %d: %d residues outside the alphabet %s were encoded as padding (0), as in "
                                "training", i, unknown, PROTEIN_ALPHABET)
            rows.append((i, graph_of[smi], protein_of[seq]))
    out = np.full((len(loaded), len(smiles), 1), np.nan)
    if rows:
        index = np.array(rows, dtype=np.int64)
        token_rows = np.stack(tokens)
        for k, (model, payload) in enumerate(loaded):
            with torch.no_grad():
                pred = torch.cat([model(*pair_inputs(graphs, token_rows, index[s, 1], index[s, 2]))
                                  for s in batch_slices(len(index), batch_size)])
            out[k, index[:, 0]] = _label_units(pred.double().numpy(), payload)
    return out, ["affinity"], skipped


def predict_molecules(models: Sequence[Path], smiles: list[str], batch_size: int = 256) -> tuple[np.ndarray, list[str], dict]:
    """Predictions [M, n, T] of each model for ``smiles`` (NaN rows for skipped molecules), the
    task names, and ``{row: reason}`` of the skipped rows."""
    loaded = _load(models, dta=False)
    hydrogens = {p.get("hydrogens", "drop") for _, p in loaded}
    tasks = {tuple(p.get("label_names") or [f"task_{t}" for t in range(p["num_tasks"])]) for _, p in loaded}
    if len(tasks) != 1 or len(hydrogens) != 1:
        raise FinetuneError(f"the models {[str(m) for m in models]} were trained on different tasks or graphs")
    names = list(next(iter(tasks)))
    featurised = featurise_rows(RawTable(smiles, np.zeros((len(smiles), 0), np.float32), [], None, "input"),
                                hydrogens.pop())
    kept, skipped, found = featurised.kept, featurised.skipped, featurised.descriptors()
    rows = np.array([m.candidate_index for m in kept], dtype=np.int64)
    out = np.full((len(loaded), len(smiles), len(names)), np.nan)
    features: dict = {}
    for k, (model, payload) in enumerate(loaded):
        extra = _extra_features(payload, models[k], [m.smiles for m in kept], features)
        with torch.no_grad():
            parts = [model(_graphs(kept, s, found if model.descriptor_embedding is not None else None),
                           *(() if extra is None else (extra[s],)))
                     for s in batch_slices(len(kept), batch_size)]
        pred = torch.cat(parts).double().numpy() if parts else np.zeros((0, len(names)))
        out[k, rows] = to_output(_label_units(pred, payload), payload.get("task_type", "regression"))
    return out, names, {r.candidate_index: r.detail or r.reason for r in skipped}


def predict_to_csv(model: str | Path, data_file: str | Path, smiles_col: str, out: str | Path,
                   batch_size: int = 256, protein_col: Optional[str] = None) -> Path:
    """Write the prediction CSV (module docstring); returns its path. ``protein_col``: the
    column of amino-acid sequences, for drug-target affinity models."""
    files = model_files(model)
    if protein_col is None:
        (smiles,) = _read_columns(data_file, {smiles_col: "--smiles-col"})
        preds, names, skipped = predict_molecules(files, smiles, batch_size)
    else:
        smiles, proteins = _read_columns(data_file, {smiles_col: "--smiles-col", protein_col: "--protein-col"})
        preds, names, skipped = predict_pairs(files, smiles, proteins, batch_size)
    members = member_names(files)
    header = ["row", "smiles", *names]
    if len(files) > 1:
        header += [f"{t}_std" for t in names] + [f"{t}_{m}" for m in members for t in names]
    header.append("skipped")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    fmt = lambda v: "" if np.isnan(v) else f"{v:.6g}"  # noqa: E731
    for i, smi in enumerate(smiles):
        cells = [i, smi, *(fmt(v) for v in preds[:, i].mean(0))] if i not in skipped else [i, smi, *[""] * len(names)]
        if len(files) > 1:
            cells += [fmt(v) for v in preds[:, i].std(0)] if i not in skipped else [""] * len(names)
            cells += [fmt(preds[k, i, t]) for k in range(len(files)) for t in range(len(names))]
        cells.append(skipped.get(i, ""))
        w.writerow(cells)
    target = Path(out)
    write_bytes_atomic(target, buf.getvalue().encode())
    return target


__all__ = ["member_names", "model_files", "predict_molecules", "predict_pairs", "predict_to_csv"]
