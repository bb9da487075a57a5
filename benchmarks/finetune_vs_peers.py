"""Our GIN next to the baselines a practitioner would use, on identical splits (issue 14).

Methods (``--methods``, default all that can run):

* ``gin-paper-scratch`` / ``gin-default-scratch``: ``graphmvp-finetune`` with ``--protocol paper``
  (upstream's settings) or the default protocol, no pretraining; every GIN row builds
  hydrogen-free graphs (``--hydrogens drop``) unless its name says ``keeph``, and on regression
  sets a ``gin-default-*`` row pools by sum without extra features unless its name says ``mean``
  or ``rdkit2d`` (:data:`DEFAULT_REGRESSION_RECORDED`: what the default protocol did when those
  rows were recorded);
* ``gin-paper-pretrained`` / ``gin-default-pretrained``: the same from ``--init`` (default
  ``graphmvp-c-zinc50k``, the README's pick when these runs were made);
  ``gin-paper-keeph-*``: the paper protocol on graphs with explicit hydrogens (what the paper
  table would show if it fed the checkpoints the graphs they were pretrained on);
* ``gin-default-rdkit2d-scratch`` / ``gin-default-rdkit2d-pretrained``: the default protocol with
  ``--extra-features rdkit2d`` (normalised RDKit 2D descriptors beside the graph embedding);
* ``ecfp4_rf``, ``ecfp4_svm``, ``chemprop``: :mod:`graphmvp.finetune.peers` (the ``[bench]`` extra);
* ``gin-default-mean-rdkit2d-scratch`` / ``gin-default-mean-rdkit2d-keeph-pretrained``: what the
  default protocol now does on a regression set, without pretraining and from the checkpoint
  (whose hydrogens it keeps); ``gin-default-mean-rdkit2d-pretrained`` is the latter on
  hydrogen-free graphs;
* ``gin-default-mean-*``: the default protocol with mean pooling, what it used before regression
  moved to sum pooling (chemprop's D-MPNN sums its atom vectors, scaled by 1/100: the size of a
  molecule stays visible to the head). Results recorded before that change under ``gin-default-*``
  on regression sets were renamed to ``gin-default-mean-*`` (and ``gin-default-sum-*`` to
  ``gin-default-*``) in ``results.jsonl``, so that a name always means one configuration;
* ``gin-default-chemprop-*`` (``-rdkit2d-*``): the default protocol with ``--graph-features
  chemprop``: chemprop's atom and bond descriptors beside Hu et al.'s features (and the RDKit
  descriptors);
* ``gin-default-keeph-*``, ``gin-default-chemprop-keeph-*``: with ``--hydrogens keep`` (explicit
  hydrogens as atoms, as in the released checkpoints' pretraining graphs);
* ``chemprop-hu-features``: chemprop's D-MPNN and CLI defaults with our GIN's inputs (Hu et al.'s
  atom type, chirality, bond type, bond direction; ``benchmarks/chemprop_hu_features.py``): what
  chemprop's richer featurisation buys, apart from its architecture;
* ``chemprop-rdkit2d``: chemprop with ``--molecule-featurizers rdkit_2d`` (scaled on the training
  part), the counterpart of the GIN's ``--extra-features rdkit2d``.

Data sets (``--datasets``): ``freesolv``, ``esol``, ``lipo`` (scaffold split 80/10/10, RMSE),
``bbbp``, ``bace`` (scaffold split, ROC-AUC) from ``../shared/data/moleculenet`` (chemprop's CSV
layout), and ``ace:CHEMBL...`` for the MoleculeACE sets: the ``MoleculeACE`` PyPI package ships
30 ChEMBL sets (``MoleculeACE/Data/benchmark_data/*.csv``: ``smiles``, ``y``, ``split`` =
train/test); validation is a seeded (``ACE_VALID_SEED``) 10% of their training part. Give the
folder with ``--moleculeace-data`` or install the package (``pip install --no-deps MoleculeACE``).

Every (data set, method, init, seed) is one line of ``RESULTS/results.jsonl`` (``--results``,
default ``benchmarks/results/finetune_vs_peers/``, kept in git so that the figures survive the
machine; valid and test metrics, seconds); a rerun skips the lines already there, so the script
resumes where it stopped. Run folders and chemprop's files go to ``--work``. After every result
``RESULTS/RESULTS.md`` is rewritten: test metric of the primary metric at the
best-validation epoch (peers: their own selection), mean (std, ddof=0) over seeds, and seconds
per model.

Units of the paper's table (``benchmarks/moleculenet_table.py``) that are the same computation are
taken from its results (``--table-results``) instead of being run again: ``gin-paper-scratch``
(its "no pretraining"), ``gin-paper-pretrained`` (its row of ``--init``) and the peers, on
freesolv, esol, lipo, bbbp and bace. Same computation means: the same file and label column,
every option that decides the numbers equal (a GIN unit's recorded config), the same split sizes
(a peer). Such a line names its ``source``. (Checked: FreeSolv seed 0 run by both scripts gave
bit-identical test RMSEs for the GIN, chemprop and the RF.) Runs one model at a time on ``--threads`` threads (default 1) under whatever ``nice``
it is started with::

    nice -n 15 python benchmarks/finetune_vs_peers.py --work runs/vs_peers --datasets freesolv esol
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graphmvp.finetune.config import FinetuneConfig  # noqa: E402
from graphmvp.finetune.errors import FinetuneError  # noqa: E402
from graphmvp.finetune.peers import PEERS  # noqa: E402
from graphmvp.io import write_text_atomic  # noqa: E402
from graphmvp.registry import Registry  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "moleculenet"
ACE_VALID_SEED = 0
ACE_VALID_FRACTION = 0.1
DEFAULT_INIT = "graphmvp-c-zinc50k"
RESULTS = REPO / "benchmarks" / "results" / "finetune_vs_peers"
TABLE_RESULTS = REPO / "benchmarks" / "results" / "moleculenet_table"


@dataclass(frozen=True)
class BenchSet:
    """A data set of the benchmark: a CSV with a SMILES and a label column, how it is split."""

    name: str
    path: Path
    label: str
    task_type: str
    split: str = "scaffold"
    split_col: Optional[str] = None

    def config(self, **kw) -> FinetuneConfig:
        return FinetuneConfig(data_file=str(self.path), smiles_col="smiles", label_cols=self.label,
                              task_type=self.task_type, split=self.split, split_col=self.split_col, **kw)


MOLECULENET = {  # name: (file, label column, task type) in ../shared/data/moleculenet
    "freesolv": ("freesolv.csv.gz", "freesolv", "regression"),
    "esol": ("esol.csv.gz", "logSolubility", "regression"),
    "lipo": ("lipo.csv.gz", "lipo", "regression"),
    "bbbp": ("bbbp.csv.gz", "p_np", "classification"),
    "bace": ("bace.csv.gz", "Class", "classification"),
}


def moleculeace_folder(given: Optional[str]) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("MoleculeACE")
    if spec is None or not spec.submodule_search_locations:
        raise FinetuneError("MoleculeACE data: give --moleculeace-data DIR (the package's Data/benchmark_data) or "
                            "`pip install --no-deps MoleculeACE`")
    return Path(list(spec.submodule_search_locations)[0]) / "Data" / "benchmark_data"


def moleculeace_set(name: str, folder: Path, work: Path) -> BenchSet:
    """MoleculeACE's file with a split column train/valid/test (validation: a seeded 10% of train),
    written once into ``work/data``."""
    src = folder / f"{name}.csv"
    if not src.is_file():
        raise FinetuneError(f"MoleculeACE set {name}: {src} is absent (sets are named like CHEMBL2047_EC50)")
    out = work / "data" / f"ace_{name}.csv"
    if not out.is_file():
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
        train = [i for i, r in enumerate(rows) if r["split"] == "train"]
        rng = np.random.default_rng(ACE_VALID_SEED)
        valid = set(rng.choice(train, size=max(1, int(round(ACE_VALID_FRACTION * len(train)))), replace=False).tolist())
        lines = ["smiles,y,part"] + [f"{r['smiles']},{r['y']},{'valid' if i in valid else r['split']}"
                                     for i, r in enumerate(rows)]
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, "\n".join(lines) + "\n")
    return BenchSet(f"ace:{name}", out, "y", "regression", split="column", split_col="part")


def bench_set(name: str, args, work: Path) -> BenchSet:
    if name.startswith("ace:"):
        return moleculeace_set(name[4:], moleculeace_folder(args.moleculeace_data), work)
    if name not in MOLECULENET:
        raise FinetuneError(f"unknown data set {name!r}; known: {', '.join(MOLECULENET)}, ace:CHEMBL..._Ki")
    file, label, ttype = MOLECULENET[name]
    path = Path(args.data_dir) / file
    if not path.is_file():
        raise FinetuneError(f"{path} is absent (--data-dir)")
    return BenchSet(name, path, label, ttype)


# ----------------------------------------------------------------------------------- methods

#: method name -> f(bench set, seed, args, work) -> {"valid": {...}, "test": {...}, "seconds": s, ...}
METHODS: Registry = Registry("benchmark method")


#: what the default protocol gave a regression set when the ``gin-default-*`` rows that do not say
#: "mean" or "rdkit2d" were recorded (it has since moved to mean pooling + rdkit2d); pinned, so
#: that a name keeps its meaning
DEFAULT_REGRESSION_RECORDED = {"pooling": "sum", "extra_features": "none"}


def _gin(protocol: str, pretrained: bool, **options) -> Callable:
    def run(ds: BenchSet, seed: int, args, work: Path) -> dict:
        from graphmvp.finetune.trainer import finetune

        tag = "".join(f"-{v}" for v in options.values())
        out = work / "runs" / ds.name.replace(":", "_") / f"gin-{protocol}{tag}-{'pre' if pretrained else 'scratch'}-s{seed}"
        # hydrogen-free graphs unless the row says otherwise: what every row before the default
        # protocol's "pretrained" hydrogens ran with, so that a name keeps its meaning
        pinned = {"hydrogens": "drop"}
        if protocol == "default" and ds.task_type == "regression":
            pinned.update(DEFAULT_REGRESSION_RECORDED)
        cfg = ds.config(protocol=protocol, init=args.init if pretrained else None, seeds=(seed,), out=str(out),
                        overwrite=True, threads=args.threads, progress=False, **{**pinned, **options})
        t0 = time.perf_counter()
        s = finetune(cfg)
        seconds = time.perf_counter() - t0
        per = s["per_seed"][0]
        return {"valid": per["valid_at_best"], "test": per["test_at_best_valid"], "test_last": per["test_at_last_epoch"],
                "best_epoch": per["best_epoch"], "seconds": seconds, "run": str(out)}

    return run


for _protocol in ("paper", "default"):
    for _pre in (False, True):
        METHODS.register(f"gin-{_protocol}-{'pretrained' if _pre else 'scratch'}")(_gin(_protocol, _pre))
# upstream's protocol on graphs with explicit hydrogens, as the checkpoints were pretrained (issue 11)
METHODS.register("gin-paper-keeph-pretrained")(_gin("paper", True, hydrogens="keep"))
METHODS.register("gin-paper-keeph-scratch")(_gin("paper", False, hydrogens="keep"))
for _pre in (False, True):
    _end = "pretrained" if _pre else "scratch"
    METHODS.register(f"gin-default-rdkit2d-{_end}")(_gin("default", _pre, extra_features="rdkit2d"))
    # the default protocol's pooling before it became sum for regression (mean: Hu et al.'s, the checkpoints')
    METHODS.register(f"gin-default-mean-{_end}")(_gin("default", _pre, pooling="mean"))
    METHODS.register(f"gin-default-mean-rdkit2d-{_end}")(_gin("default", _pre, pooling="mean", extra_features="rdkit2d"))
    METHODS.register(f"gin-default-mean-rdkit2d-keeph-{_end}")(_gin("default", _pre, pooling="mean",
                                                                   extra_features="rdkit2d", hydrogens="keep"))
    # chemprop's atom and bond descriptors in tables of their own (--graph-features chemprop)
    METHODS.register(f"gin-default-chemprop-{_end}")(_gin("default", _pre, graph_features="chemprop"))
    METHODS.register(f"gin-default-chemprop-rdkit2d-{_end}")(_gin("default", _pre, graph_features="chemprop",
                                                                  extra_features="rdkit2d"))
    # explicit hydrogens as atoms, as in the released checkpoints' pretraining graphs
    METHODS.register(f"gin-default-keeph-{_end}")(_gin("default", _pre, hydrogens="keep"))
    METHODS.register(f"gin-default-chemprop-keeph-{_end}")(_gin("default", _pre, graph_features="chemprop",
                                                                hydrogens="keep"))


def _peer(name: str, folder: Optional[str] = None, **options) -> Callable:
    """The registered peer ``name`` with ``options``; with ``folder``, a chemprop run whose files
    go to ``work/folder/<data set>/s<seed>`` on ``--threads`` threads."""
    def run(ds: BenchSet, seed: int, args, work: Path) -> dict:
        from graphmvp.finetune.peers import peer_data, run_peer, score_peer

        data = peer_data(ds.config(seeds=(seed,), progress=False), seed)
        where = {} if folder is None else {"work_dir": str(work / folder / ds.name.replace(":", "_") / f"s{seed}"),
                                           "threads": args.threads}
        preds = run_peer(name, data, seed, **where, **options)
        return {**score_peer(data, preds), "seconds": preds.seconds}

    return run


METHODS.register("ecfp4_rf")(_peer("ecfp4_rf"))
METHODS.register("ecfp4_svm")(_peer("ecfp4_svm"))
METHODS.register("chemprop")(_peer("chemprop", "chemprop"))
#: chemprop's D-MPNN and protocol with our GIN's inputs (``chemprop_hu_features.py``)
METHODS.register("chemprop-hu-features")(_peer(
    "chemprop", "chemprop-hu", command=[sys.executable, str(REPO / "benchmarks" / "chemprop_hu_features.py")]))
#: chemprop with RDKit 2D descriptors beside its learned embedding (scaled on the training part),
#: the counterpart of ``--extra-features rdkit2d``
METHODS.register("chemprop-rdkit2d")(_peer("chemprop", "chemprop-rdkit2d",
                                           featurizer_args=["--molecule-featurizers", "rdkit_2d"]))

COLUMNS = ["ecfp4_rf", "ecfp4_svm", "chemprop", "chemprop-hu-features", "chemprop-rdkit2d", "gin-paper-scratch",
           "gin-default-scratch", "gin-paper-pretrained",
           "gin-default-pretrained", "gin-default-rdkit2d-scratch", "gin-default-rdkit2d-pretrained",
           "gin-default-chemprop-scratch", "gin-default-chemprop-pretrained", "gin-default-chemprop-rdkit2d-scratch",
           "gin-default-chemprop-rdkit2d-pretrained", "gin-default-keeph-scratch", "gin-default-keeph-pretrained",
           "gin-default-chemprop-keeph-scratch", "gin-default-chemprop-keeph-pretrained",
           "gin-default-mean-scratch", "gin-default-mean-pretrained", "gin-default-mean-rdkit2d-scratch",
           "gin-default-mean-rdkit2d-pretrained"]


def init_of(method: str, args) -> Optional[str]:
    """The checkpoint a method starts from (part of a result's identity), None for the others."""
    return args.init if method.endswith("-pretrained") else None


def column(r: dict) -> str:
    return r["method"] + (f" ({r['init']})" if r.get("init") else "")


# ----------------------------------------------------------------------------------- results


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"{path}:{i}: not JSON (an interrupted write?), ignored; the run is redone", file=sys.stderr)
    return out


def append_result(path: Path, record: dict) -> None:
    with open(path, "a") as f:  # one line per result: a kill can at worst leave a partial last line
        f.write(json.dumps(record) + "\n")
        f.flush()


def unique(results: list[dict]) -> list[dict]:
    """The first result of every (data set, method, init, seed): two processes sharing a results
    file may both run a unit; the later copy is ignored."""
    seen, out = set(), []
    for r in results:
        key = (r["dataset"], r["method"], r.get("init"), r["seed"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def markdown(results: list[dict]) -> str:
    results = unique(results)
    metric_of = {r["dataset"]: r["metric"] for r in results}
    order = {m: i for i, m in enumerate(COLUMNS)}
    methods = sorted({column(r) for r in results}, key=lambda c: (order.get(c.split(" ")[0], len(order)), c))
    lines = ["| data (metric) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for ds in sorted(metric_of, key=lambda d: list(metric_of).index(d)):
        cells = []
        for m in methods:
            rs = [r for r in results if r["dataset"] == ds and column(r) == m]
            if not rs:
                cells.append("")
                continue
            v = np.array([r["test"][r["metric"]] for r in rs])
            sec = np.mean([r["seconds"] for r in rs])
            cells.append(f"{v.mean():.3f} ({v.std():.3f}) n={len(rs)}, {sec:.0f} s")
        lines.append(f"| {ds} ({metric_of[ds]}) | " + " | ".join(cells) + " |")
    return ("Test metric at the best-validation epoch (peers: their own selection), mean (population std) "
            "over seeds; n = seeds done; seconds per model (1 thread, shared machine).\n\n" + "\n".join(lines) + "\n")


# ------------------------------------------------------------------- units of the paper's table

#: our data set -> the task of benchmarks/moleculenet_table.py (same file of ../shared/data/moleculenet)
TABLE_TASKS = {"freesolv": "freesolv", "esol": "esol", "lipo": "lipophilicity", "bbbp": "bbbp", "bace": "bace"}
#: config options that name a run or say how it executes; the others decide its numbers
RUN_ONLY = frozenset({"task", "smiles_col", "label_cols", "method", "out", "overwrite", "threads", "progress",
                      "device", "save_model", "eval_train", "use_cache"})
#: options added after table units were recorded, with the value those units ran with
ADDED_LATER = {"graph_features": "hu"}


def _table_folder(method: str, args) -> Optional[str]:
    if method in PEERS:  # a peer's row has the peer's own name in both scripts
        return method
    return {"gin-paper-scratch": "no_pretraining", "gin-paper-pretrained": args.init}.get(method)


def borrow(ds: BenchSet, method: str, seed: int, args) -> Optional[dict]:
    """The unit as the paper's table (``--table-results``) recorded it, when it computed exactly
    this one: ``gin-paper-*`` (the table runs the paper protocol) and the peers, on a MoleculeNet
    set. A GIN unit's recorded config must equal ours in every option that decides the numbers and
    read the same label column; a peer's split sizes must equal ours. Else None (run it here)."""
    task, folder = TABLE_TASKS.get(ds.name), _table_folder(method, args)
    if args.table_results is None or task is None or folder is None:
        return None
    path = Path(args.table_results) / task / folder / f"seed{seed}.json"
    if not path.is_file():
        return None
    from graphmvp.finetune.problems import resolve_columns
    from graphmvp.finetune.tasks import get_task

    rec = json.loads(path.read_text())
    # a peer's record holds no config: the table ran it on its default file (../shared/data/moleculenet)
    theirs = FinetuneConfig.from_dict({**ADDED_LATER, **rec["config"]}) if "config" in rec else \
        FinetuneConfig(task=task, data_file=str(SHARED / MOLECULENET[ds.name][0]), protocol="paper", seeds=(seed,))
    theirs = theirs.resolved()
    if Path(theirs.data_file).resolve() != Path(ds.path).resolve():
        return None
    if resolve_columns(get_task(task), theirs, ds.path)["label_cols"] != [ds.label]:
        return None
    peer = method in PEERS
    if peer:
        from graphmvp.finetune.peers import peer_data

        data = peer_data(ds.config(seeds=(seed,), progress=False), seed)
        if rec.get("split_sizes") != {p: len(v) for p, v in data.smiles.items()}:
            return None
    else:
        ours = ds.config(protocol="paper", init=init_of(method, args), seeds=(seed,)).resolved().to_dict()
        recorded = theirs.to_dict()
        differ = {k for k, v in ours.items() if k not in RUN_ONLY and recorded.get(k) != v}
        if differ:
            print(f"  {path}: not the same unit ({', '.join(sorted(differ))} differ); running it here", flush=True)
            return None
    out = {"valid": rec["valid_at_best"], "test": rec["test_at_best_valid"], "seconds": rec["seconds"],
           "source": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)}
    if not peer:
        out.update(test_last=rec["test_at_last_epoch"], best_epoch=rec.get("best_epoch"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="work folder: runs/, chemprop/, data/")
    p.add_argument("--results", default=str(RESULTS), help="folder of results.jsonl and RESULTS.md (default: in the repository)")
    p.add_argument("--datasets", nargs="+", default=["freesolv", "esol", "lipo"])
    p.add_argument("--methods", nargs="+", default=COLUMNS, help=f"default: {' '.join(COLUMNS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--init", default=DEFAULT_INIT, help=f"pretrained checkpoint of gin-*-pretrained (default {DEFAULT_INIT})")
    p.add_argument("--data-dir", default=str(SHARED), help="chemprop-layout MoleculeNet CSVs (default ../shared/data/moleculenet)")
    p.add_argument("--moleculeace-data", help="MoleculeACE's Data/benchmark_data folder (default: the installed package's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table-results", default=str(TABLE_RESULTS),
                   help="units of benchmarks/moleculenet_table.py to take instead of running them when they are the "
                        "same computation (gin-paper-*, peers; see borrow()); '' = run everything here")
    p.add_argument("--borrow-only", action="store_true",
                   help="take the table's units that are the same computation, run nothing (the table runs the rest)")
    args = p.parse_args(argv)
    args.table_results = args.table_results or None
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    results_path = results_dir / "results.jsonl"
    try:
        for m in args.methods:
            METHODS.get(m)
        sets = [bench_set(d, args, work) for d in args.datasets]
    except (FinetuneError, KeyError) as e:
        print(f"finetune_vs_peers: error: {e}", file=sys.stderr)
        return 2
    from graphmvp.finetune.tasks import TASK_TYPES

    for ds in sets:
        for method in args.methods:
            for seed in args.seeds:
                done = {(r["dataset"], r["method"], r.get("init"), r["seed"]) for r in read_results(results_path)}
                if (ds.name, method, init_of(method, args), seed) in done:
                    continue
                print(f"{ds.name} / {method} / seed {seed} ...", flush=True)
                try:
                    rec = borrow(ds, method, seed, args)
                    if rec is None:
                        if args.borrow_only:
                            print("  not in the table (yet): left for later", flush=True)
                            continue
                        rec = METHODS.get(method)(ds, seed, args, work)
                except FinetuneError as e:
                    print(f"  skipped: {e}", file=sys.stderr)
                    break
                rec = {"dataset": ds.name, "method": method, "init": init_of(method, args), "seed": seed,
                       "metric": TASK_TYPES.get(ds.task_type).metric, **rec}
                append_result(results_path, rec)
                print(f"  test {rec['metric']} {rec['test'][rec['metric']]:.4f}  ({rec['seconds']:.0f} s)"
                      + (f", taken from {rec['source']}" if "source" in rec else ""), flush=True)
                write_text_atomic(results_dir / "RESULTS.md", markdown(read_results(results_path)))
    write_text_atomic(results_dir / "RESULTS.md", markdown(read_results(results_path)))
    print((results_dir / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
