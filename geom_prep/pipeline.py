"""One preparation run: candidates -> chunks (in parallel, resumable) -> one store.

The candidate list (after the seeded shuffle) is cut into chunks of ``chunk_size`` positions.
Each processed chunk is written, atomically, as a small store in ``OUTPUT.parts/``; a killed run
restarted with the same command finds those files and processes only the missing chunks. When
all are there they are concatenated, in order, into ``OUTPUT.tmp-PID`` and renamed to OUTPUT, so
the result does not depend on the number of workers or on interruptions. A shard ``i/N`` takes
the i-th contiguous slice of the candidate list; merging the shards in order gives the store of a
single run.

Files written next to the store ``X.h5``: ``X.h5.skipped.tsv`` (every skipped molecule and dropped
conformer with its source, SMILES and reason), ``X.h5.config.json`` (the resolved config) and
``X.h5.log`` (appended by every run).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
from rdkit import RDLogger
from tqdm import tqdm

from graphmvp.data.store import ConformerStore, SkipRecord
from graphmvp.prep.config import LEGACY_DEFAULTS, NothingPrepared, PrepConfig, PrepError
from graphmvp.prep.exclude import load_excluded
from graphmvp.prep.reasons import UNEXPECTED_ERROR, Skip, is_conformer_level
from graphmvp.prep.sources import Candidate, Source, build_source
from graphmvp.prep.store_writer import concatenate_stores, write_store
from graphmvp.io import LockedError, atomic_path, write_text_atomic, writer_lock

log = logging.getLogger("graphmvp.prep")

RUN_FILE = "run.json"


@dataclass
class PrepResult:
    store: Path
    report: Path
    counts: dict
    seconds: float

    @property
    def molecules_per_second(self) -> float:
        return self.counts["candidates"] / self.seconds if self.seconds > 0 else float("inf")


def side_file(store: Path, suffix: str) -> Path:
    return store.with_name(store.name + suffix)


def parts_dir(store: Path) -> Path:
    return side_file(store, ".parts")


def chunk_path(parts: Path, chunk_id: int) -> Path:
    return parts / f"chunk_{chunk_id:06d}.h5"


# -- worker side -------------------------------------------------------------------------------
_STATE: dict = {}


def _init_worker(state: dict) -> None:
    RDLogger.DisableLog("rdApp.*")
    _STATE.clear()
    _STATE.update(state)


def build_candidates(source: Source, candidates: Sequence[Candidate], positions: range):
    """Build the molecules at ``positions`` of the run's candidate list; never raises for one
    bad molecule (it becomes a ``SkipRecord``)."""
    mols, skips = [], []
    for pos in positions:
        cand = candidates[pos]
        try:
            mol, drops = source.build(cand, pos)
        except Skip as s:
            skips.append(SkipRecord(pos, cand.source_id, cand.smiles, s.reason, s.detail))
            continue
        except Exception as e:  # noqa: BLE001 - one bad molecule must not end a long run
            skips.append(SkipRecord(pos, cand.source_id, cand.smiles, UNEXPECTED_ERROR, f"{type(e).__name__}: {e}"))
            continue
        mols.append(mol)
        skips.extend(SkipRecord(pos, cand.source_id, mol.smiles, r, d) for r, d in drops)
    return mols, skips


def _process_chunk(task: tuple[int, int, int]) -> tuple[int, int, int]:
    chunk_id, start, stop = task
    mols, skips = build_candidates(_STATE["source"], _STATE["candidates"], range(start, stop))
    write_store(chunk_path(_STATE["parts"], chunk_id), mols, skips, _STATE["config"], n_candidates=stop - start)
    return chunk_id, stop - start, len(mols)


# -- driver side -------------------------------------------------------------------------------
class bounded_imap:
    """``pool.imap(fn, tasks)`` in order, but with at most ``window`` tasks handed to the pool at a
    time: the pool's queues never hold more, so stopping early has only the tasks in flight to
    wait for (each bounded by the per-molecule time limit) and never kills a worker mid-write."""

    def __init__(self, pool, fn, tasks, window: int):
        self.pool, self.fn, self.window = pool, fn, max(1, window)
        self.todo = iter(tasks)
        self.pending: deque = deque()

    def _fill(self) -> None:
        while len(self.pending) < self.window:
            task = next(self.todo, None)
            if task is None:
                return
            self.pending.append(self.pool.apply_async(self.fn, (task,)))

    def __iter__(self):
        self._fill()
        while self.pending:
            result = self.pending.popleft().get()
            self._fill()
            yield result

    def drain(self) -> None:
        """Wait for the tasks in flight (their results are not needed)."""
        while self.pending:
            self.pending.popleft().wait()


def stop_pool(pool, results: bounded_imap, finished: bool) -> None:
    """Shut the pool down. After the loop ended normally or stopped early: no new task, the few in
    flight finish, the workers exit (close + join: no terminate, which was seen to deadlock).
    After an error or an interrupt: terminate."""
    if finished:
        pool.close()
        results.drain()
    else:
        pool.terminate()
    pool.join()


def _setup_logging(log_path: Path) -> logging.Handler:
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _prepare_parts(parts: Path, cfg: PrepConfig, chunk_size: int, fingerprint: dict) -> None:
    """Create the parts folder, or check that an existing one belongs to this same run (same
    options, shard, chunking, and an unchanged input file)."""
    run = {
        "config": cfg.result_defining(),
        "shard": list(cfg.shard) if cfg.shard else None,
        "chunk_size": chunk_size,
        "input": fingerprint,
    }
    run_file = parts / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        # an option added since that run was started: it ran with the option's legacy behaviour
        old["config"] = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k in run["config"]}, **old.get("config", {})}
        if old == run:
            return
        if not cfg.overwrite:
            changed = sorted(k for k in set(old["config"]) | set(run["config"]) if old["config"].get(k) != run["config"].get(k))
            changed += [k for k in ("shard", "chunk_size") if old.get(k) != run[k]]
            if old.get("input") != run["input"]:
                changed.append(f"input file {run['input']['file']} changed")
            raise PrepError(
                f"{parts} holds an unfinished run with different options ({', '.join(changed)}); "
                "rerun that command to finish it, or pass --overwrite to discard it"
            )
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_file, json.dumps(run, indent=2, sort_keys=True))


def _chunk_kept(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f["molecules/smiles"].shape[0])


def write_report(store: Path, skipped: list[SkipRecord]) -> Path:
    """``STORE.skipped.tsv``: one row per skipped molecule or dropped conformer."""
    report = side_file(store, ".skipped.tsv")
    clean = lambda s: str(s).replace("\t", " ").replace("\n", " ")  # noqa: E731
    lines = ["candidate_index\tlevel\tsource_id\tsmiles\treason\tdetail"]
    for s in skipped:
        level = "conformer" if is_conformer_level(s.reason) else "molecule"
        lines.append("\t".join([str(s.candidate_index), level, clean(s.source_id), clean(s.smiles), s.reason, clean(s.detail)]))
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report


def assemble(
    inputs: Sequence[Path],
    store: Path,
    cfg: PrepConfig,
    command: Sequence[str],
    n_candidates: int,
    max_molecules: int | None,
) -> tuple[dict, Path]:
    """Concatenate finished pieces into ``store`` (atomically) and write its report and config.

    If no molecule survived a whole run (not a shard, which may legitimately hold none), nothing is
    left at ``store`` and :class:`NothingPrepared` is raised (the report is still written)."""
    with atomic_path(store) as tmp_store:
        counts = concatenate_stores(inputs, tmp_store, cfg.to_dict(), command, n_candidates, max_molecules)
        with ConformerStore(tmp_store) as s:
            report = write_report(store, s.skipped())
        write_text_atomic(side_file(store, ".config.json"), cfg.to_json() + "\n")
        if counts["kept"] == 0 and not cfg.shard:
            top = ", ".join(f"{r} {n}" for r, n in sorted(counts["skipped"].items(), key=lambda kv: -kv[1])[:3])
            raise NothingPrepared(f"no molecule of {counts['candidates']} could be prepared ({top}); see {report}")
    return counts, report


@contextmanager
def store_output(store: Path, overwrite: bool) -> Iterator[None]:
    """Make ``store`` writable by this process alone: its folder is created if missing, a second
    writer of the same store is refused naming the first one's PID (``STORE.lock``), and an
    existing store is kept unless ``overwrite``. Every problem is a :class:`PrepError`."""
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepError(f"cannot create the output folder {store.parent} ({e.strerror})") from None
    if store.parent.exists() and not store.parent.is_dir():
        raise PrepError(f"output folder {store.parent} is not a folder")
    try:
        with writer_lock(store):
            if store.exists() and not overwrite:
                raise PrepError(f"{store} exists; pass --overwrite to replace it")
            yield
    except LockedError as e:
        raise PrepError(str(e)) from None


def prepare(config: PrepConfig, command: Sequence[str] = ()) -> PrepResult:
    """Run one preparation (see the module docstring). Raises ``PrepError`` for bad input."""
    t0 = time.perf_counter()
    cfg = config.resolved()
    store = Path(cfg.output)
    with store_output(store, cfg.overwrite):
        handler = _setup_logging(side_file(store, ".log"))
        try:
            return _prepare(cfg, store, list(command), t0)
        finally:
            log.removeHandler(handler)
            handler.close()


def shuffled_order(n: int, seed: int) -> np.ndarray:
    """The order in which a run visits its ``n`` candidates (``--seed``; upstream shuffles too)."""
    return np.random.default_rng(seed).permutation(n)


def _prepare(cfg: PrepConfig, store: Path, command: list[str], t0: float) -> PrepResult:
    log.info("graphmvp-prep %s", " ".join(command) or "(python API)")
    log.info("config %s", cfg.to_json().replace("\n", " "))
    excluded = load_excluded(cfg.exclude, cfg.exclude_ignore_stereo) if cfg.exclude else frozenset()
    source = build_source(cfg, excluded)
    candidates = source.candidates()
    if not candidates:
        raise PrepError(f"{cfg.input}: no molecules found")
    if cfg.shuffle:
        candidates = [candidates[i] for i in shuffled_order(len(candidates), cfg.seed)]
    first, last = 0, len(candidates)
    if cfg.shard:
        i, n = cfg.shard
        first, last = len(candidates) * i // n, len(candidates) * (i + 1) // n
    cap = None if cfg.shard else cfg.n_mol
    chunk_size = cfg.chunk_size_for(last - first)
    chunks = [(cid, s, min(s + chunk_size, last)) for cid, s in enumerate(range(first, last, chunk_size))]
    log.info("%d candidates from %s; this run: positions %d..%d in %d chunks", len(candidates), cfg.input, first, last, len(chunks))

    parts = parts_dir(store)
    _prepare_parts(parts, cfg, chunk_size, source.fingerprint())
    kept = {cid: _chunk_kept(chunk_path(parts, cid)) for cid, _, _ in chunks if chunk_path(parts, cid).is_file()}
    if kept:
        log.info("resuming: %d of %d chunks already done", len(kept), len(chunks))

    def needed_chunks() -> int | None:
        """Number of leading chunks that hold the first ``cap`` molecules, once they are done."""
        total = 0
        for k, (cid, _, _) in enumerate(chunks):
            if cid not in kept:
                return None
            total += kept[cid]
            if cap is not None and total >= cap:
                return k + 1
        return len(chunks)

    state = {"source": source, "candidates": candidates, "parts": parts, "config": cfg.to_dict()}
    todo = [c for c in chunks if c[0] not in kept]
    done_candidates = sum(stop - start for cid, start, stop in chunks if cid in kept)
    bar = tqdm(total=last - first, initial=done_candidates, unit="mol", desc="prep", dynamic_ncols=True, disable=None, file=sys.stderr)
    try:
        if todo and needed_chunks() is None:
            if cfg.workers == 1:
                _init_worker(state)
                results = map(_process_chunk, todo)
                pool = None
            else:
                ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
                pool = ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(state,))
                results = bounded_imap(pool, _process_chunk, todo, 2 * cfg.workers)
            finished = False
            try:
                for cid, n_cand, n_kept in results:
                    kept[cid] = n_kept
                    bar.update(n_cand)
                    bar.set_postfix(kept=sum(kept.values()), refresh=False)
                    if needed_chunks() is not None:
                        break
                finished = True
            finally:
                if pool is not None:
                    stop_pool(pool, results, finished)
    finally:
        bar.close()

    n_used = needed_chunks()
    inputs = [chunk_path(parts, cid) for cid, _, _ in chunks[:n_used]]
    try:
        counts, report = assemble(inputs, store, cfg, command, last - first, cap)
    except NothingPrepared:
        # the run is complete (the report says why nothing was kept): a rerun with a mended input
        # must start afresh, not be refused as "an unfinished run with different options"
        shutil.rmtree(parts, ignore_errors=True)
        raise
    shutil.rmtree(parts, ignore_errors=True)
    seconds = time.perf_counter() - t0
    log.info("wrote %s: %s in %.1f s", store, counts, seconds)
    return PrepResult(store=store, report=report, counts=counts, seconds=seconds)
