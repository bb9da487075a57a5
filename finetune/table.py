"""Paper-style result tables from fine-tuning run folders (``graphmvp-finetune table``).

Rows are methods (the ``method`` of each run: "no pretraining", the pretraining preset, or the
``--method`` label), columns are tasks in the order of the GraphMVP paper (classification, then
regression, then DTA, then any other task alphabetically). A cell is ``mean(std)`` over the run's
seeds of the test metric at the best-validation epoch (``epoch="best"``, the paper's protocol) or
at the last epoch (``epoch="last"``); ROC-AUC is shown x100 with one decimal, error metrics with
three. A run with a seed whose value is NaN/inf shows ``nan(k/n seeds)``: no seed is ever left
out of a mean. ``Avg`` is the mean over the row's tasks when the row covers every column and all columns
share one metric.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from graphmvp.finetune.errors import FinetuneError

PAPER_ORDER = ("bbbp", "tox21", "toxcast", "sider", "clintox", "muv", "hiv", "bace",
               "esol", "freesolv", "lipophilicity", "malaria", "cep", "davis", "kiba")
EPOCH_KEYS = {"best": "test_at_best_valid", "last": "test_at_last_epoch"}
FORMATS = ("text", "markdown", "csv")


@dataclass
class Entry:
    """One run folder: task, method, metric and its test statistics."""

    path: Path
    task: str
    method: str
    metric: str
    mean: float
    std: float
    seeds: int
    nonfinite: int = 0  # seeds whose value is NaN/inf (the mean is then NaN, never an average of the rest)


def find_runs(paths: Sequence[str]) -> list[Path]:
    """Run folders among ``paths``: folders holding ``summary.json``, or their direct sub-folders."""
    runs: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if (path / "summary.json").is_file():
            runs.append(path)
        elif path.is_dir():
            children = sorted(c for c in path.iterdir() if (c / "summary.json").is_file())
            if not children:
                raise FinetuneError(f"{path}: no summary.json in it or in its sub-folders (not a finished fine-tuning run)")
            runs.extend(children)
        else:
            raise FinetuneError(f"{path}: no such run folder")
    return runs


def read_entry(run: Path, epoch: str = "best", metric: Optional[str] = None) -> Entry:
    if epoch not in EPOCH_KEYS:
        raise FinetuneError(f"--epoch {epoch!r}: allowed: {', '.join(EPOCH_KEYS)}")
    try:
        summary = json.loads((run / "summary.json").read_text())
        metric = metric or summary["metric"]
        stats = summary["metrics"][metric][EPOCH_KEYS[epoch]]
        return Entry(run, summary["task"], summary["method"], metric, float(stats["mean"]), float(stats["std"]),
                     len(summary.get("seeds", [])), len(stats.get("nonfinite_seeds", [])))
    except (OSError, json.JSONDecodeError) as e:
        raise FinetuneError(f"{run}/summary.json: unreadable ({e})") from None
    except KeyError as e:
        raise FinetuneError(f"{run}/summary.json: no entry {e} (metric {metric!r} not reported by this run?)") from None


def _task_order(tasks: set[str]) -> list[str]:
    known = [t for t in PAPER_ORDER if t in tasks]
    return known + sorted(tasks - set(known))


def seeds_mark(seeds: int, full_seeds: int) -> str:
    """`` [2 seeds]`` after a cell with fewer seeds than ``full_seeds``, else nothing."""
    return f" [{seeds} seed{'s' if seeds != 1 else ''}]" if 0 < seeds < full_seeds else ""


def _cell(value: float, std: float, metric: str, nonfinite: int = 0, seeds: int = 0, full_seeds: int = 0) -> str:
    """``full_seeds``: a cell with fewer seeds than this says how many it has (``[2 seeds]``)."""
    if nonfinite:
        return f"nan({nonfinite}/{seeds} seeds)"
    if math.isnan(value):
        return "nan"
    partial = seeds_mark(seeds, full_seeds)
    if metric == "roc_auc":
        return f"{100 * value:.1f}({100 * std:.1f}){partial}"
    return f"{value:.3f}({std:.3f}){partial}"


def build_table(entries: Sequence[Entry]) -> tuple[list[str], list[str], dict]:
    """(methods in first-seen order, tasks in paper order, {(method, task): Entry}); a later run
    of the same (method, task) replaces an earlier one."""
    methods: list[str] = []
    cells: dict[tuple[str, str], Entry] = {}
    for e in entries:
        if e.method not in methods:
            methods.append(e.method)
        cells[(e.method, e.task)] = e
    return methods, _task_order({e.task for e in entries}), cells


def format_table(entries: Sequence[Entry], fmt: str = "text", epoch: str = "best", full_seeds: int = 0) -> str:
    if fmt not in FORMATS:
        raise FinetuneError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    methods, tasks, cells = build_table(entries)
    metrics = {t: next(e.metric for e in entries if e.task == t) for t in tasks}
    single_metric = len(set(metrics.values())) == 1
    header = ["method"] + [f"{t} ({metrics[t]})" if not single_metric else t for t in tasks]
    if single_metric and len(tasks) > 1:
        header.append("Avg")
    rows = []
    for m in methods:
        row = [m]
        means = []
        for t in tasks:
            e = cells.get((m, t))
            row.append(_cell(e.mean, e.std, e.metric, e.nonfinite, e.seeds, full_seeds) if e else "-")
            if e:
                means.append(e.mean)
        if single_metric and len(tasks) > 1:
            full = len(means) == len(tasks) and all(not math.isnan(x) for x in means)
            avg = sum(means) / len(means) if full else float("nan")
            scale = 100 if metrics[tasks[0]] == "roc_auc" else 1
            row.append(("{:.2f}" if scale == 100 else "{:.3f}").format(scale * avg) if full else "-")
        rows.append(row)
    seeds = sorted({e.seeds for e in entries})
    what = "best-validation epoch" if epoch == "best" else "last epoch"
    metric_text = ", ".join(sorted(set(metrics.values())))
    note = (f"test {metric_text} at the {what}; mean(std) over {'/'.join(map(str, seeds))} seed(s)"
            + ("; ROC-AUC x100" if "roc_auc" in metrics.values() else ""))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + f"\n\n{note}"
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in rows]
    return "\n".join(lines) + f"\n{note}"


def table(paths: Sequence[str], fmt: str = "text", epoch: str = "best", metric: Optional[str] = None) -> str:
    """The table of the run folders ``paths`` (see the module docstring)."""
    runs = find_runs(paths)
    if not runs:
        raise FinetuneError("no run folders given")
    return format_table([read_entry(r, epoch, metric) for r in runs], fmt=fmt, epoch=epoch)


__all__ = ["Entry", "FORMATS", "PAPER_ORDER", "build_table", "find_runs", "format_table", "read_entry", "table"]
