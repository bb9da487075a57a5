"""(target, label) pairs of masked atoms: the data of the masking-design MI analysis.

For a labelled set of molecules, :func:`collect_pairs` draws ``draws`` masks per molecule from a
masking distribution (:mod:`graphmvp.data.masking_distributions`) and pairs each masked atom's
target class with the molecule's label (:class:`~graphmvp.analysis.mutual_information.PairSet`).

Targets (:data:`ANALYSIS_TARGETS`), per heavy atom of a downstream graph (hydrogens dropped, as
fine-tuning sees molecules):

``atom``
    the atom type index (atomic number - 1), 119 classes: AttrMask's target.
``motif``
    the refined-BRICS motif of the atom (:func:`graphmvp.chem.motifs.motif_labels`) encoded with
    a motif vocabulary (normally the pretraining store's, so that ``<other>`` means what it meant
    in pretraining).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from graphmvp.analysis.mutual_information import PairSet
from graphmvp.molgraph import MolGraph
from graphmvp.registry import Registry


@dataclass
class LabelledMolecule:
    """One molecule of the analysis: its downstream graph, RDKit mol (same atom order) and label."""

    smiles: str
    graph: MolGraph
    mol: object
    label: int


#: target name -> ``builder(molecules, vocab) -> (per-molecule int64 class arrays, number of classes)``
ANALYSIS_TARGETS: Registry = Registry("analysis target")


@ANALYSIS_TARGETS.register("atom")
def atom_targets(molecules: Sequence[LabelledMolecule], vocab=None) -> tuple[list[np.ndarray], int]:
    return [m.graph.atom_features[:, 0].astype(np.int64) for m in molecules], 119


@ANALYSIS_TARGETS.register("motif")
def motif_targets(molecules: Sequence[LabelledMolecule], vocab=None) -> tuple[list[np.ndarray], int]:
    from graphmvp.chem.motifs import motif_labels

    if vocab is None:
        raise ValueError("the motif target needs a motif vocabulary (--vocab or --vocab-store)")
    out = []
    for m in molecules:
        fragment, keys = motif_labels(m.mol)
        out.append(vocab.encode([keys[f] for f in fragment]).astype(np.int64))
    return out, vocab.size


def collect_pairs(
    molecules: Sequence[LabelledMolecule],
    targets: Sequence[np.ndarray],
    num_classes: int,
    sample: Callable[[MolGraph, np.random.Generator, int], np.ndarray],
    draws: int,
    seed: int = 0,
    num_labels: int = 2,
) -> PairSet:
    """Draw ``draws`` masks per molecule with ``sample(graph, rng, index)`` (sorted atom ids) and
    pair the masked atoms' classes with the molecule's label. One generator per molecule,
    ``default_rng([seed, index])``, so every distribution sees the same stream layout."""
    xs, ys, ms = [], [], []
    for i, (m, t) in enumerate(zip(molecules, targets)):
        if t.shape[0] != m.graph.num_atoms:
            raise ValueError(f"molecule {i} ({m.smiles}): {t.shape[0]} target classes for {m.graph.num_atoms} atoms")
        rng = np.random.default_rng([int(seed), i])
        for _ in range(int(draws)):
            masked = sample(m.graph, rng, i)
            xs.append(t[masked])
            ys.append(np.full(masked.shape[0], m.label, dtype=np.int64))
            ms.append(np.full(masked.shape[0], i, dtype=np.int64))
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0, dtype=np.int64))
    return PairSet(cat(xs), cat(ys), cat(ms), len(molecules), int(num_classes), int(num_labels), int(draws))


def learnable_scores(scorer_run: str, molecules: Sequence[LabelledMolecule]) -> list[np.ndarray]:
    """Scores of a trained StructMAE-L scorer (the ``objectives.2d.scorer.*`` weights of a
    pretraining run's ``last.pt``) for each molecule's graph."""
    from pathlib import Path

    import torch

    from graphmvp.models.mask_scorer import MaskScorer, score_mol_graphs

    path = Path(scorer_run)
    last = path / "last.pt" if path.is_dir() else path
    state = torch.load(last, map_location="cpu", weights_only=True)
    weights = {k.split(".scorer.", 1)[1]: v for k, v in state["model"].items() if ".scorer." in k}
    if not weights:
        raise ValueError(f"{last}: no mask scorer weights (is it a --mask-dist learnable run?)")
    emb_dim = int(state["config"]["emb_dim"])
    scorer = MaskScorer(emb_dim=emb_dim)
    scorer.load_state_dict(weights)
    return score_mol_graphs(scorer, [m.graph for m in molecules])


def distribution_sampler(name: str, rate: float, scores: Optional[list[np.ndarray]] = None):
    """``sample(graph, rng, index)`` for the masking distribution ``name`` at ``rate``; the
    structure-guided ones use their fully-boosted (end of curriculum) state."""
    from graphmvp.data.mask_distributions import build_mask_distribution

    dist = build_mask_distribution(name, rate, curriculum=False, total_epochs=1)
    if dist.needs_scorer:
        if scores is None:
            raise ValueError(f"the {name} distribution needs a trained scorer (--scorer RUN_DIR)")
        return lambda graph, rng, i: dist.sample(graph, rng, 0, scores=scores[i])
    return lambda graph, rng, i: dist.sample(graph, rng, 0)


__all__ = ["ANALYSIS_TARGETS", "LabelledMolecule", "atom_targets", "collect_pairs", "distribution_sampler",
           "learnable_scores", "motif_targets"]
