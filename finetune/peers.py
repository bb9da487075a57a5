"""The baselines a practitioner would use instead of the GIN, on exactly the GIN's split.

Every peer is a callable registered in :data:`PEERS` under its name::

    peer(data: PeerData, seed: int) -> PeerPredictions

:class:`PeerData` holds the SMILES and labels ([n, T], NaN = missing) of the train, valid and
test parts and the task type; :func:`peer_data` builds it from a :class:`FinetuneConfig` through
the same code the trainer uses (:func:`graphmvp.finetune.problems.build_problem` and the problem's split of
the seed), so the rows are those of ``seed_<s>/split.json``. :func:`score_peer` scores the
predictions with :func:`graphmvp.finetune.metrics.compute_metrics` - the metrics of the fine-tuning runs
(ROC-AUC per task averaged over the tasks with both classes; RMSE/MAE over the valid labels).

Peers (scikit-learn and chemprop are the optional ``[bench]`` extra, imported when a peer runs):

``ecfp4_rf``
    ECFP4 (Morgan radius 2, 2,048 bits, RDKit) + a random forest of 500 trees (seeded); one
    forest per task, trained on the rows that have that task's label. Classification predicts
    the positive-class probability.
``ecfp4_svm``
    ECFP4 + a support vector machine on the Tanimoto kernel (precomputed), one per task on its
    labelled rows. Regression: SVR on targets standardised with the training rows' mean and std.
    Classification: SVC, scored by its decision function. ``C`` is chosen per task from
    (0.1, 1, 10) on the validation part (the only hyper-parameter with a large effect).
``chemprop``
    chemprop 2.3.1's D-MPNN, its CLI defaults (50 epochs, its best-validation-loss checkpoint),
    trained with ``chemprop train`` as a subprocess on one file whose ``split`` column
    (``--splits-column``) holds our parts; one multi-task model (chemprop masks missing labels).
    Valid and test predictions come from ``chemprop predict`` with the trained model.

A task whose training rows hold a single class (or a single value) predicts that constant.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.metrics import compute_metrics
from graphmvp.finetune.splits import PARTS
from graphmvp.finetune.tasks import TASK_TYPES
from graphmvp.registry import Registry

BENCH_HINT = "pip install graphmvp[bench]"
FP_RADIUS = 2
FP_BITS = 2048
RF_TREES = 500
SVM_C_GRID = (0.1, 1.0, 10.0)


@dataclass
class PeerData:
    """SMILES and labels ([n, T] float, NaN = missing) of each split part."""

    smiles: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    task_type: str
    name: str = "data"

    def __post_init__(self) -> None:
        if self.task_type not in ("classification", "regression"):
            raise FinetuneError(f"peers handle classification and regression, not {self.task_type!r}")
        for p in PARTS:
            y = np.asarray(self.labels[p], dtype=np.float64)
            self.labels[p] = y[:, None] if y.ndim == 1 else y
            if len(self.smiles[p]) != self.labels[p].shape[0]:
                raise FinetuneError(f"{self.name}: {len(self.smiles[p])} {p} SMILES but {self.labels[p].shape[0]} label rows")
            if len(self.smiles[p]) == 0:
                raise FinetuneError(f"{self.name}: the {p} part is empty")

    @property
    def num_tasks(self) -> int:
        return int(self.labels["train"].shape[1])


@dataclass
class PeerPredictions:
    """Predictions [n, T] of the valid and test parts, training seconds and details."""

    valid: np.ndarray
    test: np.ndarray
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


Peer = Callable[[PeerData, int], PeerPredictions]

#: peer name -> ``f(data, seed) -> PeerPredictions``
PEERS: Registry = Registry("peer")


def _optional(module: str, peer: str):
    """Import an optional dependency of a peer, or fail naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise FinetuneError(f"peer {peer!r} needs {module.split('.')[0]} ({e}); install it with `{BENCH_HINT}`") from None


# ------------------------------------------------------------------------------- fingerprints


def ecfp4(smiles: Sequence[str], bits: int = FP_BITS, radius: int = FP_RADIUS) -> np.ndarray:
    """Morgan bit vectors [n, bits] (uint8) of ``smiles``; an unparsable SMILES is a
    :class:`FinetuneError` naming it."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    from graphmvp.finetune.extra_features import parsed_molecules

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    out = np.zeros((len(smiles), bits), dtype=np.uint8)
    for i, mol in parsed_molecules(smiles):
        DataStructs.ConvertToNumpyArray(gen.GetFingerprint(mol), out[i])
    return out


def tanimoto_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto similarity [n, m] between the bit vectors ``a`` [n, d] and ``b`` [m, d]:
    ``|a & b| / (|a| + |b| - |a & b|)``; two empty vectors are identical (1)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)
    return k


# ------------------------------------------------------------------------------ per-task fits


def _per_task(data: PeerData, fit_predict: Callable) -> tuple[np.ndarray, np.ndarray, list]:
    """Run ``fit_predict(task, train_rows, y_train) -> (valid [nv], test [nt], info)`` for each
    task on the training rows that have its label; constant tasks predict their value."""
    y = data.labels["train"]
    n_valid, n_test = data.labels["valid"].shape[0], data.labels["test"].shape[0]
    valid = np.zeros((n_valid, data.num_tasks))
    test = np.zeros((n_test, data.num_tasks))
    infos = []
    for t in range(data.num_tasks):
        rows = np.flatnonzero(~np.isnan(y[:, t]))
        yt = y[rows, t]
        if rows.size == 0 or np.unique(yt).size < 2:
            const = float(yt[0]) if rows.size else 0.0
            valid[:, t], test[:, t] = const, const
            infos.append({"task": t, "constant": const})
            continue
        v, s, info = fit_predict(t, rows, yt)
        valid[:, t], test[:, t] = v, s
        infos.append({"task": t, **info})
    return valid, test, infos


def _fingerprints(data: PeerData) -> dict[str, np.ndarray]:
    return {p: ecfp4(data.smiles[p]) for p in PARTS}


@PEERS.register("ecfp4_rf")
def ecfp4_rf(data: PeerData, seed: int, n_trees: int = RF_TREES) -> PeerPredictions:
    ensemble = _optional("sklearn.ensemble", "ecfp4_rf")
    t0 = time.perf_counter()
    fp = _fingerprints(data)
    classify = data.task_type == "classification"

    def fit_predict(t, rows, yt):
        cls = ensemble.RandomForestClassifier if classify else ensemble.RandomForestRegressor
        model = cls(n_estimators=n_trees, random_state=seed, n_jobs=1)
        model.fit(fp["train"][rows], yt)
        if classify:
            return model.predict_proba(fp["valid"])[:, 1], model.predict_proba(fp["test"])[:, 1], {}
        return model.predict(fp["valid"]), model.predict(fp["test"]), {}

    valid, test, infos = _per_task(data, fit_predict)
    return PeerPredictions(valid, test, time.perf_counter() - t0, {"trees": n_trees, "tasks": infos})


@PEERS.register("ecfp4_svm")
def ecfp4_svm(data: PeerData, seed: int, c_grid: Sequence[float] = SVM_C_GRID) -> PeerPredictions:
    svm = _optional("sklearn.svm", "ecfp4_svm")
    t0 = time.perf_counter()
    fp = _fingerprints(data)
    k_train = tanimoto_kernel(fp["train"], fp["train"])
    k_valid = tanimoto_kernel(fp["valid"], fp["train"])
    k_test = tanimoto_kernel(fp["test"], fp["train"])
    classify = data.task_type == "classification"
    ttype = TASK_TYPES.get(data.task_type)
    y_valid = data.labels["valid"]

    def fit_predict(t, rows, yt):
        shift, scale = (0.0, 1.0) if classify else (float(yt.mean()), float(yt.std()) or 1.0)
        best = None
        for c in c_grid:
            if classify:
                model = svm.SVC(kernel="precomputed", C=c, random_state=seed)
            else:
                model = svm.SVR(kernel="precomputed", C=c)
            model.fit(k_train[np.ix_(rows, rows)], (yt - shift) / scale)
            predict = model.decision_function if classify else model.predict
            v = predict(k_valid[:, rows]) * scale + shift
            value = compute_metrics([ttype.metric], y_valid[:, t], v)[ttype.metric]
            if best is None or (not np.isnan(value) and (np.isnan(best[0]) or
                                                        (value > best[0] if ttype.higher_is_better else value < best[0]))):
                best = (value, c, v, predict(k_test[:, rows]) * scale + shift)
        return best[2], best[3], {"C": best[1]}

    valid, test, infos = _per_task(data, fit_predict)
    return PeerPredictions(valid, test, time.perf_counter() - t0, {"C_grid": list(c_grid), "tasks": infos})


# ------------------------------------------------------------------------------------ chemprop


def _write_csv(path: Path, smiles: Sequence[str], labels: np.ndarray, columns: Sequence[str],
               split: Optional[Sequence[str]] = None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", *columns, *(["split"] if split is not None else [])])
        for i, (smi, row) in enumerate(zip(smiles, labels)):
            w.writerow([smi, *("" if np.isnan(v) else repr(float(v)) for v in row), *([split[i]] if split is not None else [])])


def _read_predictions(path: Path, n: int, columns: Sequence[str]) -> np.ndarray:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != n:
        raise FinetuneError(f"{path}: {len(rows)} predictions for {n} molecules")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise FinetuneError(f"{path}: no prediction column(s) {missing}; columns are {list(rows[0])}")
    # chemprop writes a NaN output as an empty cell: its model diverged (e.g. on unscaled descriptors)
    blank = [i for i, r in enumerate(rows) if any(not (r[c] or "").strip() for c in columns)]
    if blank:
        raise FinetuneError(f"{path}: no prediction for {len(blank)} of {n} molecules (first: line {blank[0] + 2}, "
                            f"{rows[blank[0]].get('smiles', '?')}); chemprop's model gave NaN, it diverged "
                            f"(log: {path.parent / 'chemprop.log'})")
    try:
        return np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise FinetuneError(f"{path}: a prediction is not a number ({e})") from None


def chemprop_command() -> list[str]:
    """How to call chemprop's CLI with this interpreter's chemprop."""
    _optional("chemprop", "chemprop")
    exe = Path(sys.executable).with_name("chemprop")
    return [str(exe)] if exe.exists() else [shutil.which("chemprop") or "chemprop"]


def _run(cmd: list[str], log_path: Path, env: dict) -> None:
    with open(log_path, "a") as log_file:
        log_file.write("$ " + " ".join(cmd) + "\n")
        log_file.flush()
        done = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        raise FinetuneError(f"chemprop failed (exit {done.returncode}): {tail[0]} (full log: {log_path})")


@PEERS.register("chemprop")
def chemprop_dmpnn(data: PeerData, seed: int, epochs: Optional[int] = None, work_dir: Optional[str] = None,
                   threads: int = 1, command: Optional[Sequence[str]] = None,
                   featurizer_args: Sequence[str] = ()) -> PeerPredictions:
    """chemprop's CLI defaults (``epochs`` None) on our split; files and logs in ``work_dir``
    (a temporary folder, removed afterwards, when None). ``command``: what runs chemprop's
    command line (default :func:`chemprop_command`; e.g. a launcher that changes its featurisers);
    ``featurizer_args``: options given to both ``train`` and ``predict`` (e.g.
    ``["--molecule-featurizers", "rdkit_2d"]``)."""
    cmd = list(command) if command is not None else chemprop_command()
    columns = [f"task_{t}" for t in range(data.num_tasks)]
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="chemprop-")
        work = Path(tmp)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    try:
        names = {"train": "train", "valid": "val", "test": "test"}  # chemprop's --splits-column values
        _write_csv(work / "data.csv", [s for p in PARTS for s in data.smiles[p]],
                   np.concatenate([data.labels[p] for p in PARTS]), columns,
                   [names[p] for p in PARTS for _ in data.smiles[p]])
        for p in ("valid", "test"):
            _write_csv(work / f"{p}.csv", data.smiles[p], data.labels[p], columns)
        out = work / "model"
        if out.exists():
            shutil.rmtree(out)
        train = [*cmd, "train", "--data-path", str(work / "data.csv"), "--splits-column", "split",
                 "--task-type", data.task_type,
                 "--smiles-columns", "smiles", "--target-columns", *columns, "--output-dir", str(out),
                 "--pytorch-seed", str(seed), "--data-seed", str(seed), "--accelerator", "cpu", "--devices", "1",
                 "--num-workers", "0", *featurizer_args]
        if epochs is not None:
            train += ["--epochs", str(epochs)]
        _run(train, work / "chemprop.log", env)
        models = sorted(out.rglob("best*.pt"))
        if not models:
            raise FinetuneError(f"chemprop wrote no best*.pt model under {out} (log: {work / 'chemprop.log'})")
        preds = {}
        for p in ("valid", "test"):
            target = work / f"{p}_predictions.csv"
            _run([*cmd, "predict", "--test-path", str(work / f"{p}.csv"), "--smiles-columns", "smiles",
                  "--model-paths", str(models[0]), "--preds-path", str(target), "--accelerator", "cpu",
                  "--devices", "1", "--num-workers", "0", *featurizer_args], work / "chemprop.log", env)
            preds[p] = _read_predictions(target, len(data.smiles[p]), columns)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return PeerPredictions(preds["valid"], preds["test"], time.perf_counter() - t0,
                           {"epochs": epochs or "chemprop default", "model": str(models[0].relative_to(work))})


# ----------------------------------------------------------------------------- data and scores


def peer_data(config, seed: int) -> PeerData:
    """The parts of ``seed`` of a :class:`~graphmvp.finetune.config.FinetuneConfig`'s data, read and split
    by the trainer's own code (same molecules, same rows)."""
    from graphmvp.finetune.problems import build_problem

    cfg = config.resolved()
    problem = build_problem(cfg)
    if problem.kind != "molecule":
        raise FinetuneError(f"peers handle molecule tasks, not {problem.kind}")
    parts = problem.parts(seed)
    smiles = problem.dataset.smiles
    return PeerData({p: [smiles[i] for i in parts[p]] for p in PARTS},
                    {p: problem.labels(parts[p]) for p in PARTS}, cfg.task_type, cfg.task_name)


def run_peer(name: str, data: PeerData, seed: int, **options) -> PeerPredictions:
    """Run the registered peer ``name`` (a :class:`FinetuneError` names the known ones)."""
    if name not in PEERS:
        raise FinetuneError(f"unknown peer {name!r}; known: {', '.join(PEERS.names())}")
    return PEERS.get(name)(data, seed, **options)


def score_peer(data: PeerData, preds: PeerPredictions) -> dict[str, dict[str, float]]:
    """``{"valid": {metric: value}, "test": {...}}`` with the fine-tuning runs' metrics."""
    names = TASK_TYPES.get(data.task_type).metrics
    return {p: compute_metrics(names, data.labels[p], getattr(preds, p)) for p in ("valid", "test")}


__all__ = [
    "BENCH_HINT",
    "PEERS",
    "PeerData",
    "PeerPredictions",
    "chemprop_command",
    "chemprop_dmpnn",
    "ecfp4",
    "ecfp4_rf",
    "ecfp4_svm",
    "peer_data",
    "run_peer",
    "score_peer",
    "tanimoto_kernel",
]
