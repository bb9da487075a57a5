"""GraphMVP's Table 1 on the real data of ``../shared/data``, next to what a practitioner would use
instead, in one resumable command:

    python benchmarks/moleculenet_table.py --work runs/table [--report-only]

Rows: no pretraining (a randomly initialised GIN), each released checkpoint of
``checkpoints/manifest.json`` except the demo's (or ``--init LABEL=PATH`` for a local pretraining
run), and the peers of :mod:`graphmvp.finetune.peers` (ECFP4 + random forest, ECFP4 + Tanimoto SVM/SVR,
chemprop's D-MPNN with its CLI defaults; the optional ``[bench]`` extra).

Columns: ROC-AUC on bbbp, tox21, sider, clintox, bace (and hiv with ``--tasks ... hiv``); RMSE on
esol, lipophilicity, freesolv; MSE and CI on davis (and kiba). Every row of a column is measured on
the same split: the GIN rows by ``graphmvp-finetune --protocol paper`` (scaffold 80/10/10 split,
Hu et al.'s deterministic one; the GraphMVP paper's epochs, batch size, lr and dropout per task
type, see :data:`graphmvp.finetune.tasks.TASK_TYPES`), the peers through :func:`graphmvp.finetune.peers.peer_data`,
which reads and splits the data with the trainer's own code. DTA uses DeepDTA's setting-1 folds;
the peers do not run there (they are molecule-only baselines).

A unit of work is one (task, method, seed). Each finished unit is one small JSON file under
``--results`` (default ``benchmarks/results/moleculenet_table/``, kept in git so that a table
survives the machine), written atomically; a rerun skips the units that have one, so a killed run
loses at most the unit in flight. The run folders of the GIN units (metrics.csv, config.json,
split.json) go to ``--work``. Any number of processes can share the work: each claims a unit before
running it (an ``flock`` on ``WORK/TASK/ROW/seedN.lock``, released when its holder exits, even
killed) and skips the units another process holds or has finished, so two processes started side by
side on the same ``--work`` and ``--results`` take the next free unit each and finish together
whatever the units cost (``--shard i/N``, every N-th unit, still splits the units statically, for
machines that do not share a file system). After every unit the report (``--report``, default
``docs/results.md``) is rewritten from all units found: test at the best-validation epoch and at the
last epoch, mean (std) over the seeds present (the count is shown where it is below 3), and the
paper's Table 1 figures beside them. ``--list`` prints every unit as done or todo (and running, with
the PID, when claimed), and the compute the todo units will take, estimated from the finished ones
(:func:`estimate`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from graphmvp.finetune.table import Entry, format_table  # noqa: E402
from graphmvp.finetune.tasks import TASK_TYPES, get_task  # noqa: E402
from graphmvp.io import LockedError, lock_holder, write_text_atomic, writer_lock  # noqa: E402

log = logging.getLogger("moleculenet_table")

#: task -> file under ../shared/data (the registry reads chemprop's layout and DeepDTA's folders)
DATA_FILES = {
    "bbbp": "moleculenet/bbbp.csv.gz",
    "tox21": "moleculenet/tox21.csv.gz",
    "sider": "moleculenet/sider.csv.gz",
    "clintox": "moleculenet/clintox.csv.gz",
    "bace": "moleculenet/bace.csv.gz",
    "hiv": "moleculenet/hiv.csv.gz",
    "esol": "moleculenet/esol.csv.gz",
    "lipophilicity": "moleculenet/lipo.csv.gz",
    "freesolv": "moleculenet/freesolv.csv.gz",
    "davis": "dta/davis",
    "kiba": "dta/kiba",
}
DEFAULT_TASKS = ("freesolv", "esol", "bace", "bbbp", "clintox", "sider", "lipophilicity", "tox21", "davis")
PEER_METHODS = ("ecfp4_rf", "ecfp4_svm", "chemprop")
NO_PRETRAINING = "no pretraining"
DEMO_CHECKPOINTS = ("graphmvp-bench1k",)

#: GraphMVP paper, Table 1 (ROC-AUC x100) and its regression/DTA table (../shared/reference/GRAPHMVP.md)
PAPER = {
    "roc_auc": {
        "no pretraining": {"bbbp": 65.4, "tox21": 74.9, "sider": 58.0, "clintox": 58.8, "hiv": 75.3, "bace": 72.6},
        "AttrMask": {"bbbp": 70.2, "tox21": 74.2, "sider": 60.4, "clintox": 68.6, "hiv": 74.3, "bace": 77.2},
        "ContextPred": {"bbbp": 71.2, "tox21": 73.3, "sider": 59.3, "clintox": 73.7, "hiv": 75.8, "bace": 78.6},
        "GraphMVP": {"bbbp": 68.5, "tox21": 74.5, "sider": 62.3, "clintox": 79.0, "hiv": 74.8, "bace": 76.8},
        "GraphMVP-G": {"bbbp": 70.8, "tox21": 75.9, "sider": 60.2, "clintox": 79.1, "hiv": 76.0, "bace": 79.3},
        "GraphMVP-C": {"bbbp": 72.4, "tox21": 74.4, "sider": 63.9, "clintox": 77.5, "hiv": 77.0, "bace": 81.2},
    },
    "rmse": {
        "no pretraining": {"esol": 1.178, "lipophilicity": 0.744},
        "GraphMVP-C": {"esol": 1.029, "lipophilicity": 0.681},
    },
    "mse": {
        "no pretraining": {"davis": 0.286, "kiba": 0.206},
        "GraphMVP-C": {"davis": 0.276, "kiba": 0.168},
    },
}


@dataclass(frozen=True)
class Method:
    """A row: ``kind`` "gin" (``init`` None = random initialisation) or "peer"."""

    label: str
    kind: str
    init: Optional[str] = None

    @property
    def slug(self) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.label)


@dataclass(frozen=True)
class Unit:
    task: str
    method: Method
    seed: int

    def result_path(self, results: Path) -> Path:
        return results / self.task / self.method.slug / f"seed{self.seed}.json"

    def run_folder(self, work: Path) -> Path:
        """The GIN unit's run folder; its sibling ``seedN.lock`` is every unit's claim."""
        return work / self.task / self.method.slug / f"seed{self.seed}"

    def claimed_by(self, work: Path) -> Optional[int]:
        """The PID of the live process holding its claim, else None (for ``--list``)."""
        return lock_holder(self.run_folder(work))


# ------------------------------------------------------------------------------------ methods


def released_checkpoints(manifest_path: Optional[Path] = None) -> list[Method]:
    """Every checkpoint of the manifest except the demo's, by name (the fine-tuner resolves it)."""
    return [Method(name, "gin", name) for name in released_presets(manifest_path)]


def parse_init(text: str) -> Method:
    if "=" not in text:
        raise SystemExit(f"--init {text!r}: give LABEL=PATH (a pretraining run folder or model_2d.pt)")
    label, path = text.split("=", 1)
    if not Path(path).expanduser().exists():
        raise SystemExit(f"--init {text!r}: {path} does not exist")
    return Method(label, "gin", str(Path(path).expanduser()))


def plan(tasks: list[str], methods: list[Method], seeds: list[int]) -> list[Unit]:
    """Seeds outermost, so that one complete seed of the table exists before the next starts;
    within a seed, tasks in the given order (cheap first) and the methods in row order."""
    return [Unit(t, m, s) for s in seeds for t in tasks for m in methods
            if not (m.kind == "peer" and get_task(t).task_type == "dta")]


# -------------------------------------------------------------------------------- running units


def _config(unit: Unit, shared: Path, work: Path, threads: int, overrides: dict):
    from graphmvp.finetune.config import FinetuneConfig

    return FinetuneConfig(
        task=unit.task, data_file=str(shared / DATA_FILES[unit.task]), protocol="paper",
        init=unit.method.init, method=unit.method.label, seeds=(unit.seed,),
        out=str(unit.run_folder(work)), overwrite=True,
        threads=threads, progress=False, **overrides.get(get_task(unit.task).task_type, {}),
    )


def run_gin(unit: Unit, shared: Path, work: Path, threads: int, overrides: dict) -> dict:
    from graphmvp.finetune.trainer import finetune

    cfg = _config(unit, shared, work, threads, overrides)
    summary = finetune(cfg, command=["benchmarks/moleculenet_table.py", unit.task, unit.method.label, str(unit.seed)])
    per_seed = summary["per_seed"][0]
    return {
        "metric": summary["metric"],
        "test_at_best_valid": {m: v["test_at_best_valid"]["mean"] for m, v in summary["metrics"].items()},
        "test_at_last_epoch": {m: v["test_at_last_epoch"]["mean"] for m, v in summary["metrics"].items()},
        "valid_at_best": {m: v["valid_at_best"]["mean"] for m, v in summary["metrics"].items()},
        "best_epoch": per_seed.get("best_epoch"),
        "epochs": summary["epochs"],
        "run": cfg.out,
        "config": json.loads((Path(cfg.out) / "config.json").read_text())["config"],
    }


def run_peer_unit(unit: Unit, shared: Path, work: Path, threads: int, overrides: dict) -> dict:
    from graphmvp.finetune.peers import peer_data, run_peer, score_peer

    cfg = _config(unit, shared, work, threads, overrides)
    data = peer_data(cfg, unit.seed)
    preds = run_peer(unit.method.label, data, unit.seed)
    scores = score_peer(data, preds)
    # a peer has no epochs: its single model (chemprop's own best-validation checkpoint) is
    # reported in both columns
    return {
        "metric": get_task(unit.task).metric,
        "test_at_best_valid": scores["test"],
        "test_at_last_epoch": scores["test"],
        "valid_at_best": scores["valid"],
        "peer_info": preds.info,
        "split_sizes": {p: len(s) for p, s in data.smiles.items()},
    }


def unit_epochs(unit: Unit, overrides: dict) -> Optional[int]:
    """The epochs a GIN unit trains for (the paper protocol's, or the override); None for a peer."""
    if unit.method.kind != "gin":
        return None
    return _config(unit, Path("."), Path("."), 1, overrides).resolved().epochs


def _cost_key(task: str, method: str) -> tuple[str, str]:
    """Units that cost the same: every GIN row of a task (a checkpoint changes only the start), and
    each peer of a task on its own."""
    return task, method if method in PEER_METHODS else "gin"


def estimate(todo: list[Unit], rows: list[dict], overrides: dict) -> tuple[dict[str, float], list[str]]:
    """Expected compute of the units still to run: ``({task: seconds}, [tasks with an unmeasured
    unit])``. A GIN unit costs the mean seconds per epoch of the task's finished GIN units times its
    epochs; a peer unit the mean seconds of the same peer's finished units on the task. The seconds
    are what the finished units took where they ran (two one-thread shards side by side, as a rule)."""
    per: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if not r.get("seconds"):
            continue
        key = _cost_key(r["task"], r["method"])
        per.setdefault(key, []).append(r["seconds"] / r["epochs"] if key[1] == "gin" and r.get("epochs") else r["seconds"])
    seconds: dict[str, float] = {}
    unmeasured: list[str] = []
    for u in todo:
        measured = per.get(_cost_key(u.task, u.method.label))
        if not measured:
            if u.task not in unmeasured:
                unmeasured.append(u.task)
            continue
        mean = sum(measured) / len(measured)
        seconds[u.task] = seconds.get(u.task, 0.0) + mean * (unit_epochs(u, overrides) or 1)
    return seconds, unmeasured


def run_unit(unit: Unit, args, overrides: dict) -> dict:
    t0 = time.perf_counter()
    runner = run_gin if unit.method.kind == "gin" else run_peer_unit
    out = runner(unit, Path(args.shared), Path(args.work), args.threads, overrides)
    out.update(task=unit.task, method=unit.method.label, init=unit.method.init, seed=unit.seed,
               seconds=round(time.perf_counter() - t0, 1), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    return out


# ---------------------------------------------------------------------------------- the report


def load_results(results: Path) -> list[dict]:
    rows = []
    for path in sorted(results.glob("*/*/seed*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            log.warning("%s: unreadable, ignored (%s)", path, e)
    return rows


#: seeds of a complete cell; a cell with fewer says how many it has
FULL_SEEDS = 3


def entries(rows: list[dict], epoch_key: str, metric: str, row_order: list[str]) -> list[Entry]:
    """One :class:`Entry` per (method, task) with ``metric``: mean and population std over the seeds
    present. A non-finite seed makes the cell NaN (never averaged away)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        value = r.get(epoch_key, {}).get(metric)
        if value is None:
            continue
        groups.setdefault((r["method"], r["task"]), []).append(float(value))
    order = {m: i for i, m in enumerate(row_order)}
    out = []
    for (method, task), values in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1])):
        n = len(values)
        bad = sum(not math.isfinite(v) for v in values)
        mean = sum(values) / n if not bad else float("nan")
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / n) if not bad else float("nan")
        out.append(Entry(Path("."), task, method, metric, mean, std, n, bad))
    return out


def paper_table(metric: str, tasks: list[str]) -> str:
    figures = PAPER[metric]
    cols = [t for t in tasks if any(t in row for row in figures.values())]
    if not cols:
        return ""
    lines = ["| paper (GraphMVP, Table 1) | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for method, row in figures.items():
        lines.append(f"| {method} | " + " | ".join(f"{row[c]}" if c in row else "-" for c in cols) + " |")
    return "\n".join(lines)


GROUPS = (("classification", "roc_auc", "ROC-AUC (x100, higher is better)"),
          ("regression", "rmse", "RMSE (lower is better)"),
          ("dta", "mse", "MSE (lower is better)"),
          ("dta", "ci", "concordance index (higher is better)"))


def local_rows(rows: list[dict]) -> dict[str, str]:
    """label -> path of the rows fine-tuned from a local run: a released checkpoint's row carries its
    own name as ``init``, a ``--init LABEL=PATH`` row the path."""
    return {r["method"]: r["init"] for r in rows if r.get("init") and r["init"] != r["method"]}


def epoch_notes(rows: list[dict]) -> list[str]:
    """Where the GIN units ran other epochs than the paper's, read from their results rather than
    from the flags of the call that writes the report, so that every call writes the same page."""
    ran: dict[str, set[int]] = {}
    for r in rows:
        if r.get("epochs") is not None:  # GIN units; a peer has no epochs
            ran.setdefault(get_task(r["task"]).task_type, set()).add(int(r["epochs"]))
    notes = []
    for ttype, epochs in sorted(ran.items()):
        paper = TASK_TYPES.get(ttype).epochs
        other = sorted(epochs - {paper})
        if other:
            some = " in some units" if paper in epochs else ""
            notes.append(f"**{ttype}: {', '.join(map(str, other))} epochs instead of the paper's {paper}{some}.**")
    return notes


#: pretraining method (preset) -> its row in the paper's table (:data:`PAPER`)
PAPER_ROWS = {"attrmask": "AttrMask", "contextpred": "ContextPred", "graphmvp": "GraphMVP",
              "graphmvp-g": "GraphMVP-G", "graphmvp-c": "GraphMVP-C"}


def paper_gain(metric: str, preset: str, tasks: list[str]) -> Optional[float]:
    """The paper's average over ``tasks`` for ``preset``'s row minus its no-pretraining row's, or
    None unless the paper reports both rows on every one of the tasks."""
    figures = PAPER.get(metric, {})
    row, base = figures.get(PAPER_ROWS.get(preset, "")), figures.get(NO_PRETRAINING)
    if not row or not base or not all(t in row and t in base for t in tasks):
        return None
    return sum(row[t] - base[t] for t in tasks) / len(tasks)


#: the pretraining methods the issue's second goal sets against GraphMVP, and GraphMVP's variants
MASKING_METHODS = ("attrmask", "contextpred")
GRAPHMVP_METHODS = ("graphmvp", "graphmvp-g", "graphmvp-c")


def released_presets(manifest_path: Optional[Path] = None) -> dict[str, str]:
    """Released checkpoint name -> the pretraining method (preset) it was made with."""
    from graphmvp.checkpoints.manifest import MANIFEST_PATH, load_manifest

    return {e.name: str(e.recipe.get("preset")) for e in load_manifest(manifest_path or MANIFEST_PATH)
            if e.name not in DEMO_CHECKPOINTS}


#: a gap counts as wider than the seeds' noise beyond this many standard errors of the difference
NOISE_SE = 2.0


def beyond_noise(a: Entry, b: Entry, higher_is_better: bool) -> int:
    """+1 if cell ``a`` is better than ``b`` by more than :data:`NOISE_SE` standard errors of the
    difference of their means, -1 if worse by as much, 0 otherwise (also for a NaN cell). The
    standard error is sqrt(s_a^2/n_a + s_b^2/n_b) with each cell's sample std over its n seeds (the
    entries hold the population std, so s^2/n is std^2/(n-1)). With 3 seeds a side this is a rough
    screen, not a significance test: it separates the gaps the seeds alone could plausibly make."""
    def var_of_mean(e: Entry) -> float:
        return e.std ** 2 / (e.seeds - 1) if e.seeds > 1 else 0.0

    gap = (a.mean - b.mean) * (1.0 if higher_is_better else -1.0)
    if not math.isfinite(gap):
        return 0
    se = math.sqrt(var_of_mean(a) + var_of_mean(b))
    return 1 if gap > NOISE_SE * se else -1 if gap < -NOISE_SE * se else 0


def goals(rows: list[dict], presets: dict[str, str]) -> str:
    """Issue 11's goals, measured on complete cells only: per metric and epoch, over the tasks where
    no pretraining, every released checkpoint (``presets``: label -> pretraining method) and, for
    regression, every peer has all :data:`FULL_SEEDS` seeds; the tasks left out are named. An
    average of RMSE weights each set by its scale (FreeSolv's errors are several times ESOL's), so
    each row also says on how many of the sets it beats no pretraining, and on how many its gap
    either way is wider than the seeds' noise (:func:`beyond_noise`)."""
    parts = []
    intro = ["## The goals (issue 11), on complete cells only",
             f"A gap is counted as wider than the seeds' noise when it exceeds {NOISE_SE:g} standard errors of the "
             f"difference of the two means (each cell's sample std over its {FULL_SEEDS} seeds): a rough screen, not a "
             "significance test. Why the goals are missed and what would change it: `docs/benchmarks.md`, "
             "\"Why the table's goals are missed\"."]
    for ttype, metric, title in GROUPS[:3]:
        group = [r for r in rows if get_task(r["task"]).task_type == ttype]
        higher = TASK_TYPES.get(ttype).higher_is_better  # GROUPS[:3] hold each type's own metric
        scale, fmt, diff = (100.0, "{:.2f}", "{:+.2f}") if metric == "roc_auc" else (1.0, "{:.3f}", "{:+.3f}")
        needed = [NO_PRETRAINING, *presets] + (list(PEER_METHODS) if ttype == "regression" else [])
        tasks = sorted({r["task"] for r in group})
        better = (lambda a, b: a > b) if higher else (lambda a, b: a < b)
        for key, what in (("test_at_best_valid", "best-validation epoch"), ("test_at_last_epoch", "last epoch")):
            cell_entries = {(e.method, e.task): e for e in entries(group, key, metric, needed) if e.seeds >= FULL_SEEDS}
            cells = {k: e.mean for k, e in cell_entries.items()}
            full = [t for t in tasks if all((m, t) in cells for m in needed)]
            if not full:
                continue
            avg = {m: scale * sum(cells[(m, t)] for t in full) / len(full) for m in needed}
            base = avg[NO_PRETRAINING]
            wins = {m: sum(better(cells[(m, t)], cells[(NO_PRETRAINING, t)]) for t in full) for m in presets}
            clear = {m: [beyond_noise(cell_entries[(m, t)], cell_entries[(NO_PRETRAINING, t)], higher) for t in full]
                     for m in presets}
            # the paper reports test at the best-validation epoch only
            paper = {m: paper_gain(metric, presets[m], full) for m in presets} if key == "test_at_best_valid" else {}
            show_paper = any(g is not None for g in paper.values())
            head = ["row", "average", "against no pretraining", "sets where better than no pretraining",
                    "sets better / worse by more than the seeds' noise"]
            if show_paper:
                head.append("the paper's gain over its no pretraining, same sets")
            paper_cell = {m: ["-" if paper[m] is None else diff.format(paper[m])] if show_paper else [] for m in presets}
            table = [[NO_PRETRAINING, fmt.format(base), "", "", ""] + [""] * show_paper]
            table += [[m, fmt.format(avg[m]), diff.format(avg[m] - base), f"{wins[m]} of {len(full)}",
                       f"{clear[m].count(1)} / {clear[m].count(-1)}"] + paper_cell[m] for m in presets]
            lines = [f"### {title.split(' (')[0]}, test at the {what}: average over {', '.join(full)}"
                     + (f" (incomplete, left out: {', '.join(t for t in tasks if t not in full)})" if len(full) < len(tasks) else ""),
                     "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in table]
            above = [m for m in presets if better(avg[m], base)]
            lines += ["", f"- Every pretrained row better than no pretraining: {'met' if len(above) == len(presets) else 'missed'} "
                      f"({len(above)} of {len(presets)})."]
            masking = [m for m in presets if presets[m] in MASKING_METHODS]
            if masking:
                best_masking = max(masking, key=avg.get) if higher else min(masking, key=avg.get)
                for m in (m for m in presets if presets[m] in GRAPHMVP_METHODS):
                    ok = not better(avg[best_masking], avg[m])
                    lines.append(f"- {m} as good as or better than the better of AttrMask and ContextPred ({best_masking}, "
                                 f"{fmt.format(avg[best_masking])}): {'met' if ok else 'missed'} ({fmt.format(avg[m])}).")
            if ttype == "regression":
                best_gin = min(presets, key=avg.get)
                best_peer = min(PEER_METHODS, key=avg.get)
                ok = not better(avg[best_peer], avg[best_gin])
                lines.append(f"- The best pretrained GIN ({best_gin}, {fmt.format(avg[best_gin])}) at least level with the "
                             f"best peer ({best_peer}, {fmt.format(avg[best_peer])}): {'met' if ok else 'missed'}.")
            parts.append("\n".join(lines))
    return "\n\n".join(intro + parts) if parts else ""


def mean_ranks(rows: list[dict], presets: dict[str, str]) -> str:
    """Which released checkpoint to use: each set where no pretraining and every released checkpoint
    have all :data:`FULL_SEEDS` seeds ranks those rows by its headline metric (ROC-AUC, RMSE, MSE;
    1 = best, ties share the mean of their places, a non-finite mean comes last); a row's figure is
    its mean rank over the sets. The pick is the checkpoint with the lowest mean rank at the
    best-validation epoch, the last epoch's mean rank breaking a tie. Peers are left out: the
    question is which encoder to fine-tune, not whether to fine-tune one."""
    needed = [NO_PRETRAINING, *presets]
    ranks: dict[str, dict[str, list[float]]] = {"test_at_best_valid": {}, "test_at_last_epoch": {}}
    sets = []
    for task in sorted({r["task"] for r in rows}):
        ttype = get_task(task).type
        metric = ttype.metric
        group = [r for r in rows if r["task"] == task]
        cells = {key: {e.method: e.mean for e in entries(group, key, metric, needed) if e.seeds >= FULL_SEEDS}
                 for key in ranks}
        if not all(m in cells[key] for key in ranks for m in needed):
            continue
        sets.append(task)
        sign = -1.0 if ttype.higher_is_better else 1.0
        for key, by_method in cells.items():
            score = {m: sign * v if math.isfinite(v) else math.inf for m, v in by_method.items() if m in needed}
            for m in needed:
                ahead = sum(s < score[m] for s in score.values())
                level = sum(s == score[m] for s in score.values())
                ranks[key].setdefault(m, []).append(ahead + (level + 1) / 2)
    if not sets:
        return ""
    mean = {key: {m: sum(v) / len(v) for m, v in by_method.items()} for key, by_method in ranks.items()}
    order = {m: (mean["test_at_best_valid"][m], mean["test_at_last_epoch"][m]) for m in presets}
    picks = [m for m in presets if order[m] == min(order.values())]
    rank_of = lambda r: f"{r:g}"  # noqa: E731  (1, 2.5: a tie's shared place)
    lines = [f"## Which checkpoint to use: mean rank over {len(sets)} complete sets", "",
             f"Each set ranks the {len(needed)} GIN rows by its headline metric (1 = best); peers are left out.", "",
             "| row | " + " | ".join(f"{t} (best valid.)" for t in sets) + " | mean rank, best-validation epoch | mean rank, last epoch |",
             "|---|" + "---|" * (len(sets) + 2)]
    lines += [f"| {m} | " + " | ".join(rank_of(r) for r in ranks["test_at_best_valid"][m])
              + f" | {mean['test_at_best_valid'][m]:.2f} | {mean['test_at_last_epoch'][m]:.2f} |" for m in needed]
    names = " and ".join(f"**{m}**" for m in picks)
    lines += ["", f"Pick: {names if len(picks) == 1 else 'a tie between ' + names} "
              "(lowest mean rank at the best-validation epoch; the last epoch breaks a tie)."]
    if mean["test_at_best_valid"][NO_PRETRAINING] <= mean["test_at_best_valid"][picks[0]]:
        lines.append(f"No released checkpoint ranks ahead of {NO_PRETRAINING} "
                     f"({mean['test_at_best_valid'][NO_PRETRAINING]:.2f}): on these sets, fine-tune from scratch.")
    return "\n".join(lines)


def _hiv_reason(rows: list[dict]) -> str:
    """Why hiv is not run: its size against tox21's, and its cost scaled from tox21's finished GIN
    units (both sets run 100 epochs, so a unit's time grows with the molecule count)."""
    hiv, tox21 = 41127, 7831  # molecules in ../shared/data/moleculenet's hiv and tox21
    size = f"{hiv:,} molecules, {hiv / tox21:.1f} times tox21's {tox21:,}"
    gin = [r for r in rows if r["task"] == "tox21" and r["method"] not in PEER_METHODS and r.get("seconds")]
    if not gin:
        return size + "; its cost is estimated once tox21 has a finished GIN unit"
    minutes = sum(r["seconds"] for r in gin) / len(gin) / 60
    units = len({r["method"] for r in gin}) * FULL_SEEDS
    hours = minutes * hiv / tox21 / 60
    return (f"{size}; at tox21's measured {minutes:.0f} min per GIN unit (mean of {len(gin)} units, 100 epochs, one "
            f"thread, two processes side by side) a unit would take about {hours:.1f} h, and its {units} GIN units "
            f"about {hours * units:.0f} core-hours before the peers")


#: the issue's optional columns, and why they are not run (a text, or a function of the finished
#: rows); a task leaves this list once it has results
NOT_RUN = {
    "hiv": _hiv_reason,
    "kiba": "118,254 pairs of 2,111 drugs; a training epoch takes 583 s on one core (`benchmarks/dta_step_time.py "
            "--data ../shared/data/dta/kiba`: 232 distinct drugs per batch of 256, against Davis' 67), so about "
            "3.2 h per unit at the table's 20 epochs and 58 core-hours for its 18 units",
}


def not_run(rows: list[dict]) -> str:
    """The :data:`NOT_RUN` columns that have no results, with the reason."""
    measured = {r["task"] for r in rows}
    missing = [(t, why(rows) if callable(why) else why) for t, why in NOT_RUN.items() if t not in measured]
    if not missing:
        return ""
    return "## Not run\n\n" + "\n".join(f"- {t}: {why}." for t, why in missing)


def render_report(rows: list[dict], row_order: list[str], header: str, presets: Optional[dict[str, str]] = None) -> str:
    """The report page; with ``presets`` (released checkpoint -> pretraining method) it ends with
    the issue's goals (:func:`goals`)."""
    parts = [header, *epoch_notes(rows)]
    for ttype, metric, title in GROUPS:
        group_rows = [r for r in rows if get_task(r["task"]).task_type == ttype]
        if not group_rows:
            continue
        tasks = sorted({r["task"] for r in group_rows})
        parts.append(f"## {title}")
        for key, what in (("test_at_best_valid", "test at the best-validation epoch"),
                          ("test_at_last_epoch", "test at the last epoch")):
            es = entries(group_rows, key, metric, row_order)
            if es:
                parts.append(f"### {what}\n\n" + format_table(es, fmt="markdown", epoch="best" if key == "test_at_best_valid" else "last",
                                                                  full_seeds=FULL_SEEDS))
        if metric in PAPER:
            paper = paper_table(metric, tasks)
            if paper:
                parts.append("### the paper's figures (its own data files and GPU runs)\n\n" + paper)
    local = local_rows(rows)
    if local:
        parts.append("Rows from a local pretraining run (`--init LABEL=PATH`), not a released checkpoint: "
                     + "; ".join(f"`{label}` = `{path}`" for label, path in sorted(local.items())) + ".")
    skipped = not_run(rows)
    if skipped:
        parts.append(skipped)
    if presets:
        measured = goals(rows, presets)
        if measured:
            parts.append(measured)
        ranked = mean_ranks(rows, presets)
        if ranked:
            parts.append(ranked)
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    parts.append(f"{len(rows)} units measured, {seconds / 3600:.1f} h of compute in total.")
    return "\n\n".join(parts) + "\n"


REPORT_HEADER = """# Fine-tuning results on real data

Generated by `python benchmarks/moleculenet_table.py` from the unit results in
`benchmarks/results/moleculenet_table/` (one JSON per task, method and seed); rerun it to
resume or to refresh this page. Do not edit by hand.

Protocol (GIN rows): `graphmvp-finetune --protocol paper`, the GraphMVP paper's: scaffold split
80/10/10 (Hu et al.'s deterministic order), Adam, batch 256, classification lr 1e-3 / dropout 0.5
/ 100 epochs, regression lr 1e-3 / dropout 0.2 / 100 epochs (MSE on raw targets), DTA lr 5e-4 /
dropout 0.2 on DeepDTA's setting-1 folds (validation = a seeded 20% of the training folds; a
training batch encodes each distinct drug and protein once, `--dta-drug-batch unique`); GIN
5 x 300, mean pooling, linear head; downstream graphs without hydrogens; seeds 0-2. Peer rows
(ECFP4 + RF, ECFP4 + Tanimoto SVM/SVR, chemprop 2.3.1 D-MPNN with its CLI defaults) are trained
and scored on the same rows of the same split (`finetune/peers.py`); a peer has one model per
seed, so its best-validation and last-epoch figures are the same. A method with fewer than 3
seeds so far says its seed count in the cell. Cells: mean(std) over seeds, population std.
"""


def manifest_rows(rows: list[dict], method: str) -> dict:
    """The results of ``method`` per task, as recorded in its manifest entry."""
    out = {}
    for task in sorted({r["task"] for r in rows if r["method"] == method}):
        mine = [r for r in rows if r["method"] == method and r["task"] == task]
        metric = mine[0]["metric"]
        cell = {"metric": metric, "seeds": sorted(r["seed"] for r in mine)}
        for key in ("test_at_best_valid", "test_at_last_epoch"):
            (e,) = entries(mine, key, metric, [method])
            cell[key] = {"mean": round(e.mean, 4), "std": round(e.std, 4)}
        out[task] = cell
    return out


def update_manifest(rows: list[dict], manifest_path: Optional[Path] = None) -> list[str]:
    """Write every released checkpoint's rows into its manifest entry (``finetuning``); the
    manifest is validated before it replaces the old one. Returns the names updated."""
    from graphmvp.checkpoints.manifest import MANIFEST_PATH, load_manifest
    from graphmvp.io import atomic_path

    path = manifest_path or MANIFEST_PATH
    data = json.loads(path.read_text())
    names = []
    for entry in data["checkpoints"]:
        earned = manifest_rows(rows, entry["name"])
        if earned:
            entry["finetuning"] = {"protocol": "graphmvp-finetune --protocol paper, scaffold split, seeds 0-2",
                                   "source": "benchmarks/moleculenet_table.py (docs/results.md)", "tasks": earned}
            names.append(entry["name"])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        load_manifest(tmp)
    return names


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Optional[list[str]] = None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, type=Path, help="folder for the GIN units' run folders")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "moleculenet_table",
                   help="one JSON per finished unit (default: in the repository)")
    p.add_argument("--report", type=Path, default=REPO / "docs" / "results.md")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help=f"default: {' '.join(DEFAULT_TASKS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--init", action="append", default=[], metavar="LABEL=PATH",
                   help="a local pretraining run (folder or model_2d.pt) as a row (repeat)")
    p.add_argument("--no-checkpoints", action="store_true", help="leave out the manifest's released checkpoints")
    p.add_argument("--peers", nargs="*", default=list(PEER_METHODS), help=f"default: {' '.join(PEER_METHODS)}")
    p.add_argument("--no-baseline", action="store_true", help="leave out the no-pretraining row")
    p.add_argument("--rows", nargs="+", default=None, metavar="LABEL",
                   help="run only these rows, by label (e.g. no_pretraining graphmvp-c-zinc50k chemprop); "
                        "the report still shows every row that has results")
    p.add_argument("--dta-epochs", type=int, default=None, help="override the paper's 200 DTA epochs (stated in the report)")
    p.add_argument("--epochs", type=int, default=None, help="override every task's epochs (smoke runs; stated in the report)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per unit (default 1; run one process per core)")
    p.add_argument("--shard", default=None, metavar="i/N", help="run only units k with k %% N == i (processes sharing a file system need no shards: they claim units)")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the results, run nothing")
    p.add_argument("--update-manifest", action="store_true",
                   help="write each released checkpoint's results into its checkpoints/manifest.json entry, run nothing")
    p.add_argument("--list", action="store_true", help="print the units and whether each is done (or running), run nothing")
    p.add_argument("--keep-going", action="store_true", help="log a failed unit and go on (default: stop)")
    return p.parse_args(argv)


def methods_of(args) -> list[Method]:
    methods = [] if args.no_baseline else [Method(NO_PRETRAINING, "gin", None)]
    if not args.no_checkpoints:
        methods += released_checkpoints()
    methods += [parse_init(t) for t in args.init]
    methods += [Method(p, "peer") for p in args.peers]
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"two rows share a label: {labels}")
    return methods


def only_rows(methods: list[Method], rows: Optional[list[str]]) -> list[Method]:
    """The methods named in ``rows`` (by label or slug, e.g. "no pretraining" or no_pretraining), in
    row order; all of them when ``rows`` is None."""
    if rows is None:
        return methods
    by_name = {m.slug: m for m in methods} | {m.label: m for m in methods}
    unknown = [r for r in rows if r not in by_name]
    if unknown:
        raise SystemExit(f"--rows {' '.join(unknown)}: not a row of this table "
                         f"(rows: {', '.join(m.slug for m in methods)})")
    wanted = {by_name[r].label for r in rows}
    return [m for m in methods if m.label in wanted]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for t in args.tasks:
        if t not in DATA_FILES:
            raise SystemExit(f"--tasks {t}: not a task of this table ({', '.join(DATA_FILES)})")
    methods = methods_of(args)
    overrides = {t: {"epochs": args.epochs} for t in ("classification", "regression", "dta")} if args.epochs else {}
    if args.dta_epochs:
        overrides["dta"] = {"epochs": args.dta_epochs}
    units = plan(args.tasks, only_rows(methods, args.rows), args.seeds)
    if args.shard:
        i, n = (int(x) for x in args.shard.split("/"))
        units = units[i::n]
    # every row the results may hold, in one order whichever rows this invocation runs
    row_order = list(dict.fromkeys([NO_PRETRAINING, *(m.label for m in released_checkpoints()),
                                    *(m.label for m in methods if m.label not in PEER_METHODS), *PEER_METHODS]))

    def report() -> None:
        write_text_atomic(args.report, render_report(load_results(args.results), row_order, REPORT_HEADER,
                                                     released_presets()))

    todo = [u for u in units if not u.result_path(args.results).is_file()]
    if args.list:
        for u in units:
            state = "todo" if u in todo else "done"
            holder = u.claimed_by(args.work) if state == "todo" else None
            print(f"{state}  {u.task:<14} {u.method.label:<28} seed {u.seed}"
                  + (f"  (running, PID {holder})" if holder else ""))
        seconds, unmeasured = estimate(todo, load_results(args.results), overrides)
        by_task = ", ".join(f"{t} {s / 3600:.1f}" for t, s in seconds.items())
        print(f"{len(todo)} of {len(units)} units to run, about {sum(seconds.values()) / 3600:.1f} core-hours"
              + (f" ({by_task})" if by_task else "")
              + (f"; not estimated (no finished unit of the same kind): {', '.join(unmeasured)}" if unmeasured else ""))
        return 0
    if args.report_only:
        report()
        return 0
    if args.update_manifest:
        print("updated:", ", ".join(update_manifest(load_results(args.results))) or "no released checkpoint has results")
        return 0
    log.info("%d units, %d done, %d to run", len(units), len(units) - len(todo), len(todo))
    failed = 0
    for k, unit in enumerate(todo, 1):
        log.info("[%d/%d] %s / %s / seed %d", k, len(todo), unit.task, unit.method.label, unit.seed)
        path = unit.result_path(args.results)
        with ExitStack() as claim:
            folder = unit.run_folder(args.work)
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                claim.enter_context(writer_lock(folder))
            except LockedError:
                log.info("  skipped: another process is running it")
                continue
            if path.is_file():  # finished by another process since this one listed its units
                log.info("  skipped: another process has finished it")
                continue
            try:
                result = run_unit(unit, args, overrides)
            except Exception as e:  # noqa: BLE001 - one failed unit is logged; --keep-going goes on
                failed += 1
                log.error("unit %s / %s / seed %d failed: %s\n%s", unit.task, unit.method.label, unit.seed, e,
                          traceback.format_exc())
                if not args.keep_going:
                    return 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
        log.info("  %s: test %s at best valid %.4f, last %.4f (%.0f s)", unit.task, result["metric"],
                 result["test_at_best_valid"][result["metric"]], result["test_at_last_epoch"][result["metric"]],
                 result["seconds"])
        report()
    report()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
