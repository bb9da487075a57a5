"""graphmvp-analyze: analyses of pretraining designs.

``graphmvp-analyze mi``: the masking-design study's information-theoretic check. For a labelled
data set (a fine-tuning task or your CSV), estimate I(X; Y) between the node-level target X of
the masked atoms (atom type, motif label, ...) under each masking distribution and the graph
label Y, with bootstrap error bars over molecules, and the Jensen-Shannon divergence of the
target distributions between the two classes (see :mod:`graphmvp.analysis.mutual_information`
for the estimator). Writes ``mi_table.csv``, ``mi_table.md``, ``mi_bars.png`` and
``config.json`` into ``--out``.

Example (FreeSolv, label binarised at the median, motif vocabulary of a pretraining store)::

    graphmvp-analyze mi --task freesolv --data ../shared/data/freesolv.csv --binarize median \\
        --vocab-store runs/ssl_study/zinc_5000x5_keep.h5 --scorer runs/ssl_study/pretrain/structmae_l \\
        --out runs/mi_freesolv
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

PROG = "graphmvp-analyze"


class AnalysisError(ValueError):
    """Bad input of an analysis (one line; exit code 2)."""


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def load_molecules(args) -> tuple[list, dict]:
    """The labelled molecules of ``--data`` / ``--task`` (invalid SMILES and missing labels are
    counted and skipped) and a description of what was read."""
    from rdkit import Chem

    from graphmvp.finetune.data import TableOptions, read_table
    from graphmvp.finetune.tasks import get_task
    from graphmvp.analysis.masked_targets import LabelledMolecule
    from graphmvp.analysis.mutual_information import binarize
    from graphmvp.features import SmilesError, downstream_graph, parse_smiles

    spec = get_task(args.task) if args.task else None
    smiles_col = args.smiles_col or (spec.smiles_col if spec else None)
    label_col = args.label_col or (spec.label_cols[0] if spec and spec.label_cols else None)
    if label_col is None:
        raise AnalysisError("name the label column with --label-col (or a --task that has one)")
    path = Path(args.data)
    if not path.is_file():
        raise AnalysisError(f"--data {path}: no such file")
    table = read_table(path, TableOptions(smiles_col=smiles_col, label_cols=(label_col,), task_type="regression"))
    values = table.labels[:, 0].astype(np.float64)
    skipped = {"invalid_smiles": 0, "missing_label": 0}
    kept = []
    for row, (smi, value) in enumerate(zip(table.smiles, values)):
        if not np.isfinite(value):
            skipped["missing_label"] += 1
            continue
        try:
            mol = parse_smiles(smi)
            graph = downstream_graph(mol, "drop")
        except (SmilesError, ValueError):
            skipped["invalid_smiles"] += 1
            continue
        graph.atom_features = graph.atom_features.astype(np.int64)
        graph.edge_features = graph.edge_features.astype(np.int64)
        kept.append((Chem.MolToSmiles(mol), graph, mol, float(value)))
    if len(kept) < 4:
        raise AnalysisError(f"--data {path}: only {len(kept)} usable molecules")
    raw = np.array([k[3] for k in kept])
    if args.binarize == "none":
        if not np.all(raw == np.round(raw)) or raw.min() < 0:
            raise AnalysisError("--binarize none needs labels that are class indices 0, 1, ...; use --binarize median")
        labels, threshold = raw.astype(np.int64), None
    else:
        labels, threshold = binarize(raw, "median" if args.binarize == "median" else float(args.binarize))
    molecules = [LabelledMolecule(s, g, m, int(y)) for (s, g, m, _), y in zip(kept, labels)]
    info = {"data": str(path), "label": label_col, "rows": table.num_rows, "molecules": len(molecules),
            "skipped": skipped, "binarize": args.binarize, "threshold": threshold,
            "class_counts": np.bincount(labels).tolist()}
    return molecules, info


def _vocab(args):
    from graphmvp.chem.vocab import Vocabulary

    if args.vocab:
        return Vocabulary.load(args.vocab, kind="motif")
    if args.vocab_store:
        from graphmvp.data.annotations import vocab_path

        path = vocab_path(args.vocab_store, "motif")
        if not path.is_file():
            raise AnalysisError(f"--vocab-store {args.vocab_store}: no motif vocabulary at {path}; build it with "
                                f"`graphmvp-prep motifs {args.vocab_store}`")
        return Vocabulary.load(path, kind="motif")
    return None


def run_mi(args) -> dict:
    from graphmvp.analysis.masked_targets import ANALYSIS_TARGETS, collect_pairs, distribution_sampler, learnable_scores
    from graphmvp.analysis.mutual_information import entropy, jsd_estimate, mi_estimate
    from graphmvp.data.mask_distributions import MASK_DISTRIBUTIONS
    from graphmvp.io import write_text_atomic

    targets = _split(args.targets)
    dists = _split(args.dists)
    for t in targets:
        if t not in ANALYSIS_TARGETS:
            raise AnalysisError(f"--targets {t!r}: known: {', '.join(ANALYSIS_TARGETS.names())}")
    for d in dists:
        if d not in MASK_DISTRIBUTIONS:
            raise AnalysisError(f"--dists {d!r}: known: {', '.join(MASK_DISTRIBUTIONS.names())}")
    if not 0 < args.rate <= 1:
        raise AnalysisError(f"--rate {args.rate!r}: must be in (0, 1]")
    t0 = time.time()
    molecules, info = load_molecules(args)
    vocab = _vocab(args) if "motif" in targets else None
    scores = None
    if "learnable" in dists:
        if not args.scorer:
            print(f"{PROG}: note: no --scorer given, the learnable distribution is left out", file=sys.stderr)
            dists = [d for d in dists if d != "learnable"]
        else:
            scores = learnable_scores(args.scorer, molecules)
    y_counts = np.bincount([m.label for m in molecules])
    rows = []
    for target in targets:
        classes, num_classes = ANALYSIS_TARGETS.get(target)(molecules, vocab)
        for dist in dists:
            sampler = distribution_sampler(dist, args.rate, scores)
            pairs = collect_pairs(molecules, classes, num_classes, sampler, args.draws, args.seed, int(y_counts.shape[0]))
            mi = mi_estimate(pairs, n_boot=args.bootstrap, seed=args.seed)
            row = {"target": target, "distribution": dist, "mi_bits": mi.value, "mi_std": mi.std, "mi_low": mi.low,
                   "mi_high": mi.high, "h_label_bits": entropy(y_counts),
                   "classes_seen": int(np.unique(pairs.x).shape[0]), "pairs": mi.n_pairs}
            if y_counts.shape[0] == 2:
                jsd = jsd_estimate(pairs, n_boot=args.bootstrap, seed=args.seed)
                row.update({"jsd_bits": jsd.value, "jsd_std": jsd.std})
            rows.append(row)
            print(f"{target:>7} x {dist:<9}: I = {mi.value:.4f} +- {mi.std:.4f} bits "
                  f"(95% {mi.low:.4f}-{mi.high:.4f}), {mi.n_pairs} pairs", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "mi_table.csv", buffer.getvalue())
    write_text_atomic(out / "mi_table.md", markdown_table(rows))
    _bar_plot(rows, out / "mi_bars.png")
    config = {**{k: v for k, v in vars(args).items() if k != "func"}, "input": info, "seconds": round(time.time() - t0, 1),
              "vocab_size": None if vocab is None else vocab.size}
    write_text_atomic(out / "config.json", json.dumps(config, indent=1, default=str) + "\n")
    return {"rows": rows, "info": info}


def markdown_table(rows: list[dict]) -> str:
    has_jsd = "jsd_bits" in rows[0]
    head = "| target | masking | I(X;Y) bits (bootstrap std) | 95% interval |" + (" JSD between classes (std) |" if has_jsd else "")
    lines = [head, "|" + "---|" * (5 if has_jsd else 4)]
    for r in rows:
        line = (f"| {r['target']} | {r['distribution']} | {r['mi_bits']:.4f} ({r['mi_std']:.4f}) | "
                f"{r['mi_low']:.4f}-{r['mi_high']:.4f} |")
        if has_jsd:
            line += f" {r['jsd_bits']:.4f} ({r['jsd_std']:.4f}) |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _bar_plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from graphmvp.io import write_bytes_atomic

    targets = list(dict.fromkeys(r["target"] for r in rows))
    dists = list(dict.fromkeys(r["distribution"] for r in rows))
    fig = Figure(figsize=(1.8 + 1.6 * len(targets) * len(dists) / 2, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(dists), 1)
    for j, dist in enumerate(dists):
        vals = [next((r for r in rows if r["target"] == t and r["distribution"] == dist), None) for t in targets]
        xs = np.arange(len(targets)) + (j - (len(dists) - 1) / 2) * width
        ax.bar(xs, [v["mi_bits"] if v else 0 for v in vals], width, yerr=[v["mi_std"] if v else 0 for v in vals],
               capsize=3, label=dist)
    ax.set_xticks(np.arange(len(targets)))
    ax.set_xticklabels(targets)
    ax.set_ylabel("I(target; label), bits")
    ax.set_title("mutual information of masked-atom targets with the graph label", fontsize=9)
    ax.legend(title="masking", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mi", help="I(masked-atom target; graph label) per target and masking distribution")
    m.add_argument("--data", required=True, help="CSV (or gz/SDF) with SMILES and a label column")
    m.add_argument("--task", help="a fine-tuning task name: its SMILES and first label column are used")
    m.add_argument("--smiles-col", help="SMILES column (default: the task's, or auto-detected)")
    m.add_argument("--label-col", help="label column (default: the task's first)")
    m.add_argument("--binarize", default="median",
                   help="median (default), a threshold value (label > value -> 1), or none (labels are classes)")
    m.add_argument("--targets", default="atom,motif", help="comma-separated (default atom,motif)")
    m.add_argument("--dists", default="uniform,pagerank,learnable", help="comma-separated masking distributions")
    m.add_argument("--rate", type=float, default=0.15, help="mask rate (default 0.15, AttrMask's)")
    m.add_argument("--vocab", help="motif vocabulary JSON (graphmvp-prep motifs)")
    m.add_argument("--vocab-store", help="a pretraining store whose motif vocabulary to use")
    m.add_argument("--scorer", help="a StructMAE-L pretraining run (folder or last.pt) for the learnable distribution")
    m.add_argument("--draws", type=int, default=20, help="masking draws per molecule (default 20)")
    m.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the molecules (default 200)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True, help="output folder")
    m.set_defaults(func=run_mi)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (AnalysisError, ValueError) as e:
        print(f"{PROG}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
