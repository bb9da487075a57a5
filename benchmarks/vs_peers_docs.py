"""The tables of docs/benchmarks.md, "Side by side", regenerated from finetune_vs_peers' results.

Every table of that section sits between two markers::

    <!-- vs-peers: user-regression -->
    | data (test RMSE) | ... |
    <!-- /vs-peers -->

and this script rewrites what lies between them from ``results.jsonl`` (the first record of every
(data set, method, init, seed), as ``RESULTS.md`` counts them), leaving the prose around them as it
is. The views (:data:`VIEWS`) say which rows of the results a table shows and under what names:

* a *grid* view: data sets down, methods across; a cell is the test metric's mean (population
  std) over seeds, marked ``[n seeds]`` when fewer than :data:`FULL_SEEDS` are in, ``-`` when none;
* the ``vs-chemprop`` view: for each GIN row, its mean test RMSE relative to chemprop's on every
  regression set where both have results, their mean, and on how many sets it is ahead (the
  figures issue 14's goals are judged by).

``python benchmarks/vs_peers_docs.py`` rewrites the document in place (atomically);
``--check`` rewrites nothing and exits 1 when a table differs from what the results give (run by
the tests, so that a hand-edited or forgotten table fails).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from finetune_vs_peers import RESULTS, read_results, unique  # noqa: E402

from graphmvp.finetune.table import seeds_mark  # noqa: E402
from graphmvp.io import write_text_atomic  # noqa: E402

DOC = HERE.parent / "docs" / "benchmarks.md"
#: seeds a complete row has (0-2); fewer are marked in the cell
FULL_SEEDS = 3
REGRESSION = ("freesolv", "esol", "lipo", "ace:CHEMBL2047_EC50", "ace:CHEMBL2835_Ki", "ace:CHEMBL1871_Ki",
              "ace:CHEMBL4616_EC50", "ace:CHEMBL4203_Ki")
CLASSIFICATION = ("bbbp", "bace")
BEGIN = re.compile(r"^<!-- vs-peers: ([a-z0-9-]+) -->$")
END = "<!-- /vs-peers -->"

# the rows as a user runs them: the default protocol's are in bold
_DEFAULT_SCRATCH_REG = ("gin-default-mean-rdkit2d-scratch", "**GIN, default, no pretraining**")
_DEFAULT_PRETRAINED_REG = ("gin-default-mean-rdkit2d-keeph-pretrained", "**GIN, default, graphmvp-c-zinc50k**")
_PAPER = (("gin-paper-scratch", "GIN, paper protocol"), ("gin-paper-pretrained", "GIN, paper, graphmvp-c-zinc50k"))
_CLS_GIN = (("gin-default-scratch", "**GIN, default, no pretraining**"),
            ("gin-default-keeph-pretrained", "**GIN, default, graphmvp-c-zinc50k**"),
            ("gin-default-pretrained", "GIN, default, graphmvp-c-zinc50k without H"), *_PAPER)


@dataclass(frozen=True)
class Grid:
    """Data sets down, ``columns`` = (method, heading) across; ``key`` = ``test`` (the
    best-validation epoch) or ``test_last`` (the last epoch)."""

    what: str
    columns: tuple[tuple[str, str], ...]
    datasets: tuple[str, ...]
    key: str = "test"

    def render(self, groups: dict) -> str:
        cols = [c for c in self.columns if any(groups.get((d, c[0])) for d in self.datasets)]
        sets = [d for d in self.datasets if any(groups.get((d, m)) for m, _ in cols)]
        if not cols:
            raise ValueError(f"no results for any of {[m for m, _ in self.columns]}")
        lines = [f"| data ({self.what}) | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for d in sets:
            lines.append(f"| {short(d)} | " + " | ".join(cell(groups.get((d, m), []), self.key) for m, _ in cols) + " |")
        return "\n".join(lines)


@dataclass(frozen=True)
class Relative:
    """Each row's mean test RMSE relative to ``reference``'s, per data set, where both have results."""

    rows: tuple[tuple[str, str], ...]
    datasets: tuple[str, ...] = REGRESSION
    reference: str = "chemprop"

    def render(self, groups: dict) -> str:
        sets = [d for d in self.datasets if groups.get((d, self.reference))]
        lines = [f"| test RMSE against {self.reference} | " + " | ".join(short(d) for d in sets)
                 + " | mean | ahead on |", "|---" * (len(sets) + 3) + "|"]
        for m, name in self.rows:
            rel = relative_rmse(groups, m, self.reference, sets)
            if not rel:
                continue
            cells = [f"{rel[d]:+.1%}" if d in rel else "-" for d in sets]
            ahead = sum(v < 0 for v in rel.values())
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(list(rel.values())):+.1%} | {ahead}/{len(rel)} |")
        return "\n".join(lines)


VIEWS = {
    "user-regression": Grid("test RMSE", (
        ("chemprop", "chemprop (CLI defaults)"), ("chemprop-rdkit2d", "chemprop + rdkit_2d"),
        ("ecfp4_rf", "ECFP4 RF"), ("ecfp4_svm", "ECFP4 SVR"), _DEFAULT_SCRATCH_REG, _DEFAULT_PRETRAINED_REG,
        ("gin-default-mean-rdkit2d-pretrained", "GIN, default, graphmvp-c-zinc50k without H"), *_PAPER), REGRESSION),
    "user-classification": Grid("test ROC-AUC", (
        ("chemprop", "chemprop (CLI defaults)"), ("ecfp4_rf", "ECFP4 RF"), ("ecfp4_svm", "ECFP4 SVM"), *_CLS_GIN),
        CLASSIFICATION),
    "classification-last-epoch": Grid("test ROC-AUC at the last epoch", _CLS_GIN, CLASSIFICATION, key="test_last"),
    "regression-last-epoch": Grid("test RMSE at the last epoch", (
        _DEFAULT_SCRATCH_REG, _DEFAULT_PRETRAINED_REG,
        ("gin-default-mean-rdkit2d-pretrained", "GIN, default, graphmvp-c-zinc50k without H"), *_PAPER),
        REGRESSION, key="test_last"),
    "vs-chemprop": Relative((
        ("gin-default-mean-rdkit2d-scratch", "GIN, default, no pretraining"),
        ("gin-default-mean-rdkit2d-keeph-pretrained", "GIN, default, graphmvp-c-zinc50k"),
        ("gin-default-mean-rdkit2d-pretrained", "GIN, default, graphmvp-c-zinc50k without H"),
        ("gin-paper-scratch", "GIN, paper protocol"), ("gin-paper-pretrained", "GIN, paper, graphmvp-c-zinc50k"))),
    "regression-path": Grid("test RMSE", (
        ("gin-default-scratch", "sum pool"), ("gin-default-pretrained", "sum pool, graphmvp-c"),
        ("gin-default-keeph-scratch", "sum pool, with H"),
        ("gin-default-keeph-pretrained", "sum pool, graphmvp-c with H (previous default)"),
        ("gin-default-chemprop-scratch", "sum pool + chemprop descriptors"),
        ("gin-default-chemprop-pretrained", "sum pool + chemprop descriptors, graphmvp-c"),
        ("gin-default-rdkit2d-scratch", "sum pool + rdkit2d"),
        ("gin-default-mean-rdkit2d-scratch", "mean pool + rdkit2d (default)"),
        ("gin-default-mean-rdkit2d-pretrained", "mean pool + rdkit2d, graphmvp-c without H"),
        ("gin-default-mean-rdkit2d-keeph-pretrained", "mean pool + rdkit2d, graphmvp-c with H (default)")), REGRESSION),
    "chemprop-lead": Grid("test RMSE", (
        ("chemprop", "chemprop (CLI defaults)"), ("chemprop-hu-features", "chemprop, our GIN's inputs"),
        ("chemprop-rdkit2d", "chemprop + rdkit_2d"), ("gin-default-mean-scratch", "GIN, mean pool"),
        ("gin-default-scratch", "GIN, sum pool"), ("gin-default-mean-pretrained", "GIN, mean pool, graphmvp-c-zinc50k")),
        ("freesolv", "esol", "lipo", "ace:CHEMBL2047_EC50")),
}


def short(dataset: str) -> str:
    return dataset.replace("ace:", "")


def group(results: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """(data set, method) -> its records, the first of every unit only."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in unique(list(results)):
        out.setdefault((r["dataset"], r["method"]), []).append(r)
    return out


def cell(records: Sequence[dict], key: str = "test") -> str:
    if not records:
        return "-"
    if any(key not in r for r in records):
        return "n/a"  # recorded before the script kept that figure
    v = np.array([r[key][r["metric"]] for r in records])
    return f"{v.mean():.3f} ({v.std():.3f})" + seeds_mark(len(records), FULL_SEEDS)


def relative_rmse(groups: dict, method: str, reference: str, datasets: Sequence[str]) -> dict[str, float]:
    """data set -> mean test RMSE of ``method`` / that of ``reference`` - 1, where both have results."""
    out = {}
    for d in datasets:
        a, b = groups.get((d, method)), groups.get((d, reference))
        if a and b:
            out[d] = np.mean([r["test"]["rmse"] for r in a]) / np.mean([r["test"]["rmse"] for r in b]) - 1
    return out


def fill(text: str, groups: dict, source: str = "the document") -> str:
    """``text`` with every marked table rendered afresh. Raises ValueError on an unknown view, a
    marker left open or a view without any results, naming the line."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = BEGIN.match(line.strip())
        i += 1
        if not m:
            continue
        if m.group(1) not in VIEWS:
            raise ValueError(f"{source}:{i}: unknown view {m.group(1)!r}; known: {', '.join(VIEWS)}")
        start = i
        while i < len(lines) and lines[i].strip() != END:
            if BEGIN.match(lines[i].strip()):
                break
            i += 1
        if i == len(lines) or lines[i].strip() != END:
            raise ValueError(f"{source}:{start}: view {m.group(1)!r} is not closed by {END!r}")
        try:
            out.append(VIEWS[m.group(1)].render(groups))
        except ValueError as e:
            raise ValueError(f"{source}:{start}: view {m.group(1)!r}: {e}") from None
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(RESULTS / "results.jsonl"), help="finetune_vs_peers' results.jsonl")
    p.add_argument("--doc", default=str(DOC), help="the document whose marked tables are rewritten")
    p.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 when a table is stale")
    args = p.parse_args(argv)
    doc = Path(args.doc)
    text = doc.read_text()
    try:
        new = fill(text, group(read_results(Path(args.results))), str(doc))
    except ValueError as e:
        print(f"vs_peers_docs: error: {e}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{doc}: tables up to date")
        return 0
    if args.check:
        print(f"{doc}: tables differ from {args.results}; run python benchmarks/vs_peers_docs.py", file=sys.stderr)
        return 1
    write_text_atomic(doc, new)
    print(f"{doc}: tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
