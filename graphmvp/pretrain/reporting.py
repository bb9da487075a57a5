"""What a run tells the user: ``train.log`` and the console, ``metrics.csv`` and ``loss_curves.png``.

Rank 0 logs to the run's ``train.log`` (everything) and to stdout (step lines only without a
progress bar: :func:`run_logging`); the other ranks of a DDP run write no file and send their
errors to stderr, prefixed with the rank (:func:`rank_logging`). ``metrics.csv`` has one row per
epoch, columns in the order of :func:`metrics_columns`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from graphmvp.distributed import DistContext
from graphmvp.io import write_bytes_atomic

LOG = logging.getLogger("graphmvp.pretrain")


def loss_column(name: str) -> str:
    """The metrics.csv column of objective ``name``'s loss (``loss_<name>``, dashes as underscores)."""
    return "loss_" + name.replace("-", "_")


def format_number(x: float) -> str:
    """Four significant digits, or ``nan`` / ``inf`` as they are."""
    return f"{x:.4g}" if math.isfinite(x) else str(x)


class _DropStepLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "step_line", False)


@contextmanager
def run_logging(log_path: Path, progress: bool) -> Iterator[None]:
    """Log to ``train.log`` (everything) and stdout (step lines only without a progress bar)."""
    file_handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    if progress:
        console.addFilter(_DropStepLines())
    old_level, old_propagate = LOG.level, LOG.propagate
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    LOG.addHandler(file_handler)
    LOG.addHandler(console)
    try:
        yield
    finally:
        LOG.removeHandler(file_handler)
        LOG.removeHandler(console)
        file_handler.close()
        LOG.setLevel(old_level)
        LOG.propagate = old_propagate


@contextmanager
def rank_logging(ctx: DistContext) -> Iterator[None]:
    """Ranks other than 0 write no file: their errors go to stderr, prefixed with the rank."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    console.setFormatter(logging.Formatter(f"[rank {ctx.rank}/{ctx.world_size}] %(message)s"))
    old_level, old_propagate = LOG.level, LOG.propagate
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    LOG.addHandler(console)
    try:
        yield
    finally:
        LOG.removeHandler(console)
        LOG.setLevel(old_level)
        LOG.propagate = old_propagate


def metrics_columns(rows: list[dict[str, Any]]) -> list[str]:
    """``epoch, steps, samples``, the loss terms, ``loss_total``, the accuracies (sorted), then
    ``samples_per_s, seconds, data_seconds``."""
    seen: list[str] = []
    for row in rows:
        for key in row:
            if key not in seen:
                seen.append(key)
    head = ["epoch", "steps", "samples"] + [k for k in seen if k.startswith("loss_") and k != "loss_total"]
    tail = ["samples_per_s", "seconds", "data_seconds"]
    accs = sorted(k for k in seen if k.startswith("acc_"))
    return head + ["loss_total"] + accs + tail


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as ``metrics.csv`` at ``path`` (atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=metrics_columns(rows), restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_bytes_atomic(path, buffer.getvalue().encode(), fsync=True)


def plot_losses(path: Path, rows: list[dict[str, Any]]) -> None:
    """Loss terms and total per epoch (and the accuracies beside them) as a PNG at ``path``."""
    if not rows:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    columns = metrics_columns(rows)
    loss_keys = [k for k in columns if k.startswith("loss_")]
    acc_keys = [k for k in columns if k.startswith("acc_")]
    ncols = 2 if acc_keys else 1
    fig = Figure(figsize=(6 * ncols, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)
    ax = axes[0][0]
    for key in loss_keys:
        ax.plot(epochs, [row.get(key, float("nan")) for row in rows], marker="o",
                linewidth=2.5 if key == "loss_total" else 1.5, label=key[5:])
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (epoch mean)")
    ax.set_title("losses (total = weighted sum)")
    ax.legend()
    ax.grid(alpha=0.3)
    if acc_keys:
        ax = axes[0][1]
        for key in acc_keys:
            ax.plot(epochs, [row.get(key, float("nan")) for row in rows], marker="o", label=key[4:])
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_title("accuracies")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue(), fsync=True)


__all__ = ["LOG", "format_number", "loss_column", "metrics_columns", "plot_losses", "rank_logging", "run_logging",
           "write_metrics"]
