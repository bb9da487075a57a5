"""Join the shards of one data set (``graphmvp-prep run ... --shard i/N``) into one store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import h5py

from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.pipeline import PrepResult, assemble, store_output


def merge_stores(inputs: Sequence[str], output: str, overwrite: bool = False, command: Sequence[str] = ()) -> PrepResult:
    """Concatenate shards ``0/N .. N-1/N`` of one run, in shard order.

    The shards must come from the same options (only ``--shard``, ``--workers`` and the output
    path may differ) and cover every shard exactly once. ``--n-mol``, which a shard does not apply,
    is applied here, so the result equals what a single run would have written.
    """
    t0 = time.perf_counter()
    out = Path(output).expanduser().resolve()
    with store_output(out, overwrite):
        return _merge(inputs, out, overwrite, command, t0)


def _merge(inputs: Sequence[str], out: Path, overwrite: bool, command: Sequence[str], t0: float) -> PrepResult:
    if not inputs:
        raise PrepError("merge needs at least one shard store")
    shards = {}
    reference = None
    n_candidates = 0
    for p in inputs:
        if not Path(p).is_file():
            raise PrepError(f"shard {p} does not exist")
        try:
            with h5py.File(p, "r") as f:
                cfg = PrepConfig.from_dict(json.loads(f.attrs["config"]))
                n_candidates += json.loads(f.attrs["counts"])["candidates"]
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise PrepError(f"{p}: not a conformer store written by graphmvp-prep ({e})") from None
        if cfg.shard is None:
            raise PrepError(f"{p} is not a shard (it was written without --shard)")
        if reference is None:
            reference = cfg
        elif cfg.result_defining() != reference.result_defining() or cfg.shard[1] != reference.shard[1]:
            diff = sorted(k for k, v in cfg.result_defining().items() if reference.result_defining().get(k) != v)
            raise PrepError(f"{p} was prepared with different options than {inputs[0]} ({', '.join(diff) or 'shard count'})")
        if cfg.shard[0] in shards:
            raise PrepError(f"shard {cfg.shard[0]}/{cfg.shard[1]} given twice ({shards[cfg.shard[0]]} and {p})")
        shards[cfg.shard[0]] = Path(p)
    n = reference.shard[1]
    missing = sorted(set(range(n)) - set(shards))
    if missing:
        raise PrepError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing")
    merged = PrepConfig.from_dict({**reference.to_dict(), "shard": None, "output": str(out), "overwrite": overwrite})
    counts, report = assemble([shards[i] for i in range(n)], out, merged, command, n_candidates, merged.n_mol)
    return PrepResult(store=out, report=report, counts=counts, seconds=time.perf_counter() - t0)
