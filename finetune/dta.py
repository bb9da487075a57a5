"""Drug-target affinity (Davis, KIBA) in DeepDTA's data layout: loading, encoding, the model.

Files of one data set folder (``DATA_SOURCES.md``):

* ``ligands_can.txt``: JSON object drug id -> SMILES, in the row order of ``Y``;
* ``proteins.txt``: JSON object protein name -> amino-acid sequence, in the column order of ``Y``;
* ``Y``: a Python-2 pickle of a numpy array [drugs, proteins] (read with ``encoding="latin1"``);
  Davis holds Kd in nM (label ``pKd = -log10(Kd / 1e9)``), KIBA holds scores with NaN = unmeasured;
* ``folds/train_fold_setting1.txt``: JSON list of 5 lists, ``folds/test_fold_setting1.txt``: JSON
  list; entries index the measured pairs in ``np.where(~np.isnan(Y))`` order (row-major).

Validation (GraphMVP): a seeded random 20% of the union of the five training folds; the rest of
the training folds is trained on; the test fold is the test set.

Proteins are encoded with the 25-letter alphabet ``ABCDEFGHIKLMNOPQRSTUVWXYZ`` -> 1..25, 0 =
padding (and letters outside the alphabet, counted), cut or padded to 1000 residues.

Model (:class:`DTAModel`)::

    drug    = mean-pool(GIN(drug graph))                 [B, 300]
    protein = protein_encoder(tokens [B, 1000])          [B, 300]
    y       = MLP(cat(drug, protein))                    600 -> 1024 -> 512 -> 1, ReLU, dropout 0.2

Training batches (:meth:`DTAEncoded.batch`): upstream builds one drug graph and one protein row
per pair. Here a batch encodes each distinct protein once, and by default each distinct drug once,
then picks every pair's rows by index. For the proteins this is the same computation: the protein
CNN has no dropout and no batch statistics, so the outputs are the same and the gradient sums the
same terms. For the drugs two things differ, in training only: the GIN's BatchNorm statistics
count a drug once rather than once per pair, and the pairs of one drug share its dropout mask.
``drug_batch="per-pair"`` keeps upstream's computation. Evaluation encodes every drug and protein
once either way. Davis (68 drugs, 442 proteins) has about 67 distinct drugs and 190 proteins in a
batch of 256 pairs; ``benchmarks/dta_step_time.py`` measures what that saves.

Protein encoders (:data:`PROTEIN_ENCODERS`): ``graphdta`` (default, the GraphDTA/GraphMVP layout:
embedding 300 per residue; one Conv1d that treats the 1000 sequence positions as input channels
and slides a width-8 kernel over the embedding dimension, 32 filters, computed letter-wise for
speed, see :class:`GraphDTAProteinCNN`; flatten; Linear to 300) and
``cnn`` (DeepDTA's layout: embedding 128, three Conv1d along the sequence with 32/64/96 filters of
width 8 and ReLU, global max pool, Linear to 300).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from rdkit import RDLogger
from torch import Tensor, nn

import graphmvp  # noqa: F401  (sets DGLBACKEND before dgl is imported)
import dgl

from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.tasks import DEEPDTA_FILES, TaskSpec
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.features import UNSUPPORTED, SmilesError, downstream_graph, parse_smiles
from graphmvp.models import graph_readout
from graphmvp.molgraph import MolGraph
from graphmvp.registry import Registry
from graphmvp.safe_pickle import NUMPY_ARRAY_GLOBALS, UnsafePickle, restricted_load

log = logging.getLogger(__name__)

PROTEIN_ALPHABET = "ABCDEFGHIKLMNOPQRSTUVWXYZ"
PROTEIN_LENGTH = 1000
#: how a training batch holds its drugs (:meth:`DTAEncoded.batch`): each distinct drug once, or
#: one graph per pair as upstream (GraphDTA's per-pair data set)
DRUG_BATCHES = ("unique", "per-pair")
_LETTER_INDEX = {c: i + 1 for i, c in enumerate(PROTEIN_ALPHABET)}
#: label transforms of the registry's ``label_transform``
LABEL_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda y: y,
    "pkd": lambda y: -np.log10(y / 1e9),
}


# ------------------------------------------------------------------------------------- loading


@dataclass
class DTAData:
    """A DeepDTA data set.

    ``affinity`` float64 [D, P] (after the label transform; NaN = unmeasured). The measured pairs,
    in ``np.where(~np.isnan(affinity))`` order: ``pair_drug`` / ``pair_protein`` int64 [Q],
    ``pair_label`` float32 [Q]. ``train_folds``: 5 int64 arrays, ``test_fold``: int64 array, of
    pair indices.
    """

    name: str
    drug_ids: list[str]
    drug_smiles: list[str]
    protein_ids: list[str]
    protein_seqs: list[str]
    affinity: np.ndarray
    pair_drug: np.ndarray
    pair_protein: np.ndarray
    pair_label: np.ndarray
    train_folds: list[np.ndarray]
    test_fold: np.ndarray
    source: str = ""

    @property
    def num_pairs(self) -> int:
        return int(self.pair_label.shape[0])


def _read_json(path: Path, what: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, object_pairs_hook=OrderedDict)
    except FileNotFoundError:
        raise FinetuneError(f"{path}: missing ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FinetuneError(f"{path}: not valid JSON ({what}): {e}") from None


def read_affinity_pickle(path: Path) -> np.ndarray:
    """The ``Y`` matrix: a (Python 2) pickle of a numpy array, read with ``encoding="latin1"``.
    ``Y`` is downloaded: only numpy array reconstruction is admitted (:mod:`graphmvp.safe_pickle`),
    anything else is refused before it runs."""
    try:
        with open(path, "rb") as fh:
            y = restricted_load(fh, NUMPY_ARRAY_GLOBALS, encoding="latin1")
    except FileNotFoundError:
        raise FinetuneError(f"{path}: missing (the affinity matrix Y)") from None
    except UnsafePickle as e:
        raise FinetuneError(f"{path}: unsafe pickle, not loaded: {e}") from None
    except Exception as e:  # noqa: BLE001 - damaged pickles raise many different errors
        raise FinetuneError(f"{path}: not a pickled numpy array ({type(e).__name__}: {e})") from None
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise FinetuneError(f"{path}: the pickle holds {type(y).__name__}, not a numeric matrix") from None
    if y.ndim != 2:
        raise FinetuneError(f"{path}: Y has shape {y.shape}, expected [drugs, proteins]")
    return y


def _fold(obj, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(obj, dtype=np.int64)
    except (TypeError, ValueError):
        raise FinetuneError(f"{path}: fold entries must be integers") from None
    if arr.ndim != 1:
        raise FinetuneError(f"{path}: a fold must be a flat list of pair indices")
    return arr


def load_deepdta(folder: str | os.PathLike, label_transform: str = "none", name: str = "") -> DTAData:
    """Read a DeepDTA data folder (see the module docstring). Raises :class:`FinetuneError`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FinetuneError(f"{folder}: not a folder (expected DeepDTA's data/<name> layout: {', '.join(DEEPDTA_FILES)})")
    if label_transform not in LABEL_TRANSFORMS:
        raise FinetuneError(f"unknown label transform {label_transform!r}; allowed: {', '.join(LABEL_TRANSFORMS)}")
    ligands = _read_json(folder / "ligands_can.txt", "drug id -> SMILES")
    proteins = _read_json(folder / "proteins.txt", "protein name -> sequence")
    if not isinstance(ligands, dict) or not isinstance(proteins, dict):
        raise FinetuneError(f"{folder}: ligands_can.txt and proteins.txt must hold JSON objects")
    y = read_affinity_pickle(folder / "Y")
    if y.shape != (len(ligands), len(proteins)):
        raise FinetuneError(
            f"{folder}: Y has shape {list(y.shape)} but there are {len(ligands)} drugs and {len(proteins)} proteins"
        )
    measured = ~np.isnan(y)
    if label_transform == "pkd" and np.any(y[measured] <= 0):
        raise FinetuneError(f"{folder}: Y holds values <= 0; Kd in nM must be positive for pKd = -log10(Kd/1e9)")
    with np.errstate(divide="ignore", invalid="ignore"):
        affinity = LABEL_TRANSFORMS[label_transform](y)
    drug, protein = np.where(measured)
    labels = affinity[drug, protein].astype(np.float32)
    train_path = folder / "folds" / "train_fold_setting1.txt"
    test_path = folder / "folds" / "test_fold_setting1.txt"
    train_obj = _read_json(train_path, "training folds")
    test_obj = _read_json(test_path, "test fold")
    if not isinstance(train_obj, list) or not train_obj:
        raise FinetuneError(f"{train_path}: expected a JSON list of folds")
    train_folds = [_fold(f, train_path) for f in train_obj]
    if isinstance(test_obj, list) and test_obj and isinstance(test_obj[0], list):
        test_obj = [i for f in test_obj for i in f]
    test_fold = _fold(test_obj, test_path)
    q = int(labels.shape[0])
    for path, arr in [(train_path, np.concatenate(train_folds)), (test_path, test_fold)]:
        if arr.size and (arr.min() < 0 or arr.max() >= q):
            raise FinetuneError(f"{path}: pair index {int(arr.max() if arr.max() >= q else arr.min())} "
                                f"outside 0..{q - 1} (the {q} measured pairs of Y)")
    return DTAData(
        name=name or folder.name,
        drug_ids=[str(k) for k in ligands],
        drug_smiles=[str(v) for v in ligands.values()],
        protein_ids=[str(k) for k in proteins],
        protein_seqs=[str(v) for v in proteins.values()],
        affinity=affinity,
        pair_drug=drug.astype(np.int64),
        pair_protein=protein.astype(np.int64),
        pair_label=labels,
        train_folds=train_folds,
        test_fold=test_fold,
        source=str(folder),
    )


def locate_deepdta(spec: TaskSpec, data_dir: Optional[str] = None, urls: Optional[Sequence[str]] = None,
                   progress: bool = True) -> Path:
    """The DeepDTA folder of ``spec``: ``data_dir`` if given, else the download cache
    ``datasets/<name>/`` with every file fetched (verified and recorded like molecule files)."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise FinetuneError(f"--data-file {path}: a DTA task needs the DeepDTA data folder ({', '.join(DEEPDTA_FILES)})")
        return path
    from graphmvp.finetune.data import datasets_dir, fetch_file

    bases = list(urls) if urls else list(spec.urls)
    for rel in spec.files:
        fetch_file(f"{spec.file_name}/{rel}", [b.rstrip("/") + "/" + rel for b in bases], None, progress)
    return datasets_dir() / spec.file_name


def validation_split(train_folds: Sequence[np.ndarray], seed: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) pair indices: a seeded random ``fraction`` of the union of the folds is
    validation (both sorted)."""
    pool = np.unique(np.concatenate([np.asarray(f, dtype=np.int64) for f in train_folds]))
    perm = np.random.default_rng(seed).permutation(pool.shape[0])
    n_valid = int(round(fraction * pool.shape[0]))
    if n_valid == 0 or n_valid == pool.shape[0]:
        raise FinetuneError(f"the training folds hold {pool.shape[0]} pairs: too few to keep {fraction:.0%} for validation")
    return np.sort(pool[perm[n_valid:]]), np.sort(pool[perm[:n_valid]])


# ------------------------------------------------------------------------------------ encoding


def encode_protein(seq: str, length: int = PROTEIN_LENGTH) -> tuple[np.ndarray, int]:
    """(int64 [length] letter indices 1..25 with 0 = padding, number of unknown letters)."""
    out = np.zeros(length, dtype=np.int64)
    unknown = 0
    for i, c in enumerate(seq[:length].upper()):
        idx = _LETTER_INDEX.get(c, 0)
        unknown += idx == 0
        out[i] = idx
    return out, unknown


@dataclass
class DTAEncoded:
    """Model inputs of a :class:`DTAData`: drug graphs (None = could not featurise), protein
    tokens int64 [P, L], and the pairs kept (those whose drug has a graph)."""

    drug_graphs: list[Optional[MolGraph]]
    protein_tokens: np.ndarray
    kept_pairs: np.ndarray
    skipped_drugs: list[dict] = field(default_factory=list)
    unknown_letters: int = 0

    def batch(self, data: DTAData, pairs: Sequence[int], drug_batch: str = "unique"):
        """Model inputs ``(g, tokens, drug_index, protein_index)`` and labels float32 [B, 1] of B
        pair indices (see :meth:`DTAModel.forward`).

        Each distinct protein of the batch is tokenised once: ``tokens`` [U_p, L], and
        ``protein_index`` int64 [B] picks pair b's row. ``drug_batch`` (:data:`DRUG_BATCHES`):
        ``"unique"`` batches each distinct drug once (``g`` holds U_d graphs, ``drug_index`` int64
        [B]); ``"per-pair"`` batches pair b's drug as graph b (upstream's layout; ``drug_index``
        None).
        """
        pairs = np.asarray(pairs, dtype=np.int64)
        inputs = pair_inputs(self.drug_graphs, self.protein_tokens, data.pair_drug[pairs], data.pair_protein[pairs],
                             drug_batch)
        return inputs, torch.from_numpy(data.pair_label[pairs][:, None])


def pair_inputs(drug_graphs: Sequence[Optional[MolGraph]], protein_tokens: np.ndarray, drugs: np.ndarray,
                proteins: np.ndarray, drug_batch: str = "unique"):
    """:meth:`DTAModel.forward`'s ``(g, tokens, drug_index, protein_index)`` for the pairs
    (``drugs[b]``, ``proteins[b]``), indices into ``drug_graphs`` and the rows of
    ``protein_tokens`` [P, L] (layout: :meth:`DTAEncoded.batch`)."""
    if drug_batch not in DRUG_BATCHES:
        raise ValueError(f"drug_batch {drug_batch!r}: allowed: {', '.join(DRUG_BATCHES)}")
    if drug_batch == "unique":
        drugs, drug_index = np.unique(drugs, return_inverse=True)
        drug_index = torch.from_numpy(drug_index.reshape(-1).astype(np.int64))
    else:
        drug_index = None
    g = batch_mol_graphs([drug_graphs[d] for d in drugs])
    proteins, protein_index = np.unique(proteins, return_inverse=True)
    tokens = torch.from_numpy(protein_tokens[proteins])
    return g, tokens, drug_index, torch.from_numpy(protein_index.reshape(-1).astype(np.int64))


def encode_dta(data: DTAData, length: int = PROTEIN_LENGTH, hydrogens: str = "drop") -> DTAEncoded:
    """Featurise the drugs (Hu et al. features; heavy atoms only, or with explicit hydrogens for
    ``hydrogens="keep"``) and tokenise the proteins."""
    graphs: list[Optional[MolGraph]] = []
    skipped = []
    lg = RDLogger.logger()
    lg.setLevel(RDLogger.CRITICAL)
    try:
        for i, smi in enumerate(data.drug_smiles):
            try:
                graph = downstream_graph(parse_smiles(smi or ""), hydrogens)
            except SmilesError as e:
                graphs.append(None)
                if e.reason == UNSUPPORTED:
                    skipped.append({"drug": data.drug_ids[i], "smiles": smi, "reason": "unsupported_molecule", "detail": str(e)})
                else:  # unparsable, or no atoms
                    skipped.append({"drug": data.drug_ids[i], "smiles": smi, "reason": "unparsable_smiles"})
                continue
            graphs.append(graph)
    finally:
        lg.setLevel(RDLogger.WARNING)
    if all(g is None for g in graphs):
        raise FinetuneError(f"{data.source}: none of the {len(graphs)} drug SMILES is a valid molecule")
    tokens = np.zeros((len(data.protein_seqs), length), dtype=np.int64)
    unknown = 0
    for j, seq in enumerate(data.protein_seqs):
        tokens[j], u = encode_protein(seq, length)
        unknown += u
    if unknown:
        log.warning("%s: %d residues outside the alphabet %s were encoded as padding (0)", data.name, unknown, PROTEIN_ALPHABET)
    ok = np.array([g is not None for g in graphs])
    kept = np.flatnonzero(ok[data.pair_drug]).astype(np.int64)
    if skipped:
        log.warning("%s: %d of %d drugs could not be featurised; %d of %d pairs left out", data.name, len(skipped),
                    len(graphs), data.num_pairs - kept.shape[0], data.num_pairs)
    return DTAEncoded(graphs, tokens, kept, skipped, unknown)


# --------------------------------------------------------------------------------------- model


class GraphDTAProteinCNN(nn.Module):
    """GraphDTA/GraphMVP protein encoder: tokens int64 [B, L] -> float [B, out_dim].

    Embedding [B, L, E]; Conv1d with the L positions as input channels over the E embedding
    dimensions (kernel 8, 32 filters) -> [B, 32, E - 7]; flatten; Linear to ``out_dim``.

    The convolution is computed through the letters rather than the positions. With weights
    W [F, L, K] and embedding table X [V, E],
    ``out[b, f, t] = bias[f] + sum_{p, k} W[f, p, k] X[tok[b, p], t + k]``
    ``= bias[f] + sum_{v, k} A[b, v, f, k] X[v, t + k]``, where ``A[b, v] = sum of W[:, p, :]
    over the positions p holding letter v``. The alphabet has V = 26 letters and a sequence 1000
    positions, so this takes about a tenth of the arithmetic of ``nn.Conv1d`` on the embedded
    sequence (Davis, 195 proteins: 3.4 against 29 GFLOP forward). The parameters, the function
    and its gradients are Conv1d's; only float32 rounding differs (``tests/test_finetune_dta.py``
    checks both against ``F.conv1d``).
    """

    def __init__(self, length: int = PROTEIN_LENGTH, embed_dim: int = 300, filters: int = 32, kernel: int = 8,
                 out_dim: int = 300, vocab: int = len(PROTEIN_ALPHABET) + 1):
        super().__init__()
        if embed_dim < kernel:
            raise ValueError(f"embed_dim {embed_dim} must be >= kernel {kernel}")
        self.embedding = nn.Embedding(vocab, embed_dim)
        self.conv = nn.Conv1d(length, filters, kernel)
        self.fc = nn.Linear(filters * (embed_dim - kernel + 1), out_dim)
        self.length = length

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"protein tokens must have shape [B, {self.length}], got {tuple(tokens.shape)}")
        table, weight = self.embedding.weight, self.conv.weight  # [V, E], [F, L, K]
        (v, _), (f, length, k) = table.shape, weight.shape
        b = tokens.shape[0]
        letters = torch.nn.functional.one_hot(tokens, v).transpose(1, 2).to(weight.dtype)  # [B, V, L]
        per_letter = letters @ weight.permute(1, 0, 2).reshape(length, f * k)  # [B, V, F*K]
        per_letter = per_letter.view(b, v, f, k).transpose(1, 2).reshape(b, f, v * k)
        windows = table.unfold(1, k, 1).transpose(1, 2).reshape(v * k, -1)  # [V*K, E-K+1]: X[v, t+k]
        h = per_letter @ windows + self.conv.bias[:, None]  # [B, F, E - K + 1]
        return self.fc(h.flatten(1))

    def conv1d_forward(self, tokens: Tensor) -> Tensor:
        """The same function the textbook way, ``nn.Conv1d`` on the embedded sequence [B, L, E]:
        the reference for the tests and ``benchmarks/dta_step_time.py``."""
        return self.fc(self.conv(self.embedding(tokens)).flatten(1))


class DeepDTAProteinCNN(nn.Module):
    """DeepDTA-style protein encoder: embedding, three Conv1d along the sequence with ReLU,
    global max pool, Linear to ``out_dim``. tokens int64 [B, L] -> float [B, out_dim]."""

    def __init__(self, length: int = PROTEIN_LENGTH, embed_dim: int = 128, filters: Sequence[int] = (32, 64, 96),
                 kernel: int = 8, out_dim: int = 300, vocab: int = len(PROTEIN_ALPHABET) + 1):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed_dim, padding_idx=0)
        layers: list[nn.Module] = []
        width = embed_dim
        for f in filters:
            layers += [nn.Conv1d(width, f, kernel), nn.ReLU()]
            width = f
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(width, out_dim)
        self.length = length

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"protein tokens must have shape [B, {self.length}], got {tuple(tokens.shape)}")
        h = self.convs(self.embedding(tokens).transpose(1, 2))  # [B, F, L']
        return self.fc(h.max(dim=2).values)


#: protein encoder name -> class(length=..., out_dim=...)
PROTEIN_ENCODERS: Registry = Registry("protein encoder")
PROTEIN_ENCODERS.register("graphdta")(GraphDTAProteinCNN)
PROTEIN_ENCODERS.register("cnn")(DeepDTAProteinCNN)


class DTAModel(nn.Module):
    """Drug GIN + protein encoder + MLP (see the module docstring).

    Forward: ``g`` batched drug graphs (G molecules), ``tokens`` int64 [T, L], and optionally
    ``drug_index`` / ``protein_index`` int64 [B] (pair b = graph ``drug_index[b]`` with protein row
    ``protein_index[b]``; None = the identity, G = B or T = B) -> float [B, 1]. The indices let a
    batch encode each distinct drug and protein once (:meth:`DTAEncoded.batch`).
    """

    def __init__(self, drug_encoder: nn.Module, protein_encoder: str = "graphdta", length: int = PROTEIN_LENGTH,
                 pooling: str = "mean", dropout: float = 0.2, hidden: Sequence[int] = (1024, 512)):
        super().__init__()
        if protein_encoder not in PROTEIN_ENCODERS:
            raise ValueError(f"unknown protein encoder {protein_encoder!r}; allowed: {', '.join(PROTEIN_ENCODERS.names())}")
        self.molecule_model = drug_encoder
        self.pooling = pooling
        self.protein_encoder = protein_encoder
        self.hidden = tuple(int(h) for h in hidden)
        drug_dim = int(getattr(drug_encoder, "out_dim", getattr(drug_encoder, "emb_dim")))
        self.protein_model = PROTEIN_ENCODERS.get(protein_encoder)(length=length, out_dim=drug_dim)
        layers: list[nn.Module] = []
        width = 2 * drug_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def record(self) -> dict:
        """What :func:`dta_model_from_record` needs to rebuild this model (besides the drug
        encoder's config and the weights)."""
        return {"protein_encoder": self.protein_encoder, "protein_length": self.protein_model.length,
                "pooling": self.pooling, "head_hidden": list(self.hidden)}

    def forward(self, g: dgl.DGLGraph, tokens: Tensor, drug_index: Optional[Tensor] = None,
                protein_index: Optional[Tensor] = None) -> Tensor:
        drug = graph_readout(g, self.molecule_model(g), self.pooling)
        protein = self.protein_model(tokens)
        if drug_index is not None:
            drug = drug[drug_index]
        if protein_index is not None:
            protein = protein[protein_index]
        return self.head(torch.cat([drug, protein], dim=1))


def dta_model_from_record(drug_encoder: nn.Module, record: dict, source: str) -> DTAModel:
    """The :class:`DTAModel` a saved fine-tuned model's ``record`` (:meth:`DTAModel.record`)
    describes, around ``drug_encoder``; untrained (load the weights next)."""
    missing = [k for k in ("protein_encoder", "protein_length") if k not in record]
    if missing:
        raise FinetuneError(f"{source}: a drug-target affinity model saved without its {', '.join(missing)}; "
                            "fine-tune it again with --save-model to predict with it")
    return DTAModel(drug_encoder, protein_encoder=record["protein_encoder"], length=int(record["protein_length"]),
                    pooling=record.get("pooling", "mean"), hidden=record.get("head_hidden") or (1024, 512))


__all__ = [
    "DRUG_BATCHES",
    "DTAData",
    "DTAEncoded",
    "DTAModel",
    "DeepDTAProteinCNN",
    "GraphDTAProteinCNN",
    "LABEL_TRANSFORMS",
    "PROTEIN_ALPHABET",
    "PROTEIN_ENCODERS",
    "encode_dta",
    "encode_protein",
    "dta_model_from_record",
    "load_deepdta",
    "pair_inputs",
    "locate_deepdta",
    "read_affinity_pickle",
    "validation_split",
]
