"""The files that let a run resume: ``last.pt`` (the whole state) and the exported 2D encoder.

``last.pt`` (:data:`STATE_FORMAT`) holds both encoders and all objective heads, the optimiser,
epochs done, global step, best loss/epoch, the torch/numpy/python RNG states and the metrics so
far; tensors and plain python values only, so ``torch.load(path, weights_only=True)`` reads it.
:func:`load_state` reads it back for ``--resume`` and refuses a file of another format or a run
whose result-defining options differ. Every file is written to a temporary name, then renamed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphmvp.io import atomic_path
from graphmvp.pretrain.config import ConfigError, PretrainConfig

STATE_FORMAT = "graphmvp-pretrain-state-v1"
#: config fields that do not change the weights but may differ on ``--resume`` beyond
#: :data:`~graphmvp.pretrain.config.VOLATILE_FIELDS` (a run may move between devices)
RESUME_MAY_CHANGE = ("device",)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch (and CUDA on a CUDA device), numpy and python RNG states, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if device.type == "cuda":  # VRR's noise is drawn on the device
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def check_resumable(cfg: PretrainConfig, state: dict[str, Any], last: Path) -> None:
    """Raise ConfigError unless ``state`` is a pretraining state saved with the same result-defining options."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"--resume: {last} is not a graphmvp pretraining state ({STATE_FORMAT})")
    saved = PretrainConfig.from_dict(state["config"]).result_defining()
    now = cfg.result_defining()
    for key in RESUME_MAY_CHANGE:
        saved.pop(key, None)
        now.pop(key, None)
    diff = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in now if saved.get(k) != now.get(k)]
    if diff:
        raise ConfigError(f"--resume: options differ from the run in {last.parent}: " + "; ".join(diff))


def load_state(cfg: PretrainConfig, last: Path) -> dict[str, Any]:
    """``last.pt`` read for ``--resume`` and checked against ``cfg``; ConfigError (one line) when it
    cannot be read, is not a state or was saved with other options."""
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
        check_resumable(cfg, state, last)
    except ConfigError:
        raise
    except Exception as e:  # a missing, truncated or foreign file
        raise ConfigError(f"--resume: cannot read {last} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return state


def save_encoder(export: dict[str, Any], out: Path, improved: bool) -> None:
    """The exported 2D encoder as ``model_2d.pt``, and as ``best_model_2d.pt`` when ``improved``."""
    atomic_torch_save(export, out / "model_2d.pt")
    if improved:
        atomic_torch_save(export, out / "best_model_2d.pt")


def save_state(out: Path, *, cfg: PretrainConfig, hydrogens: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               epochs_done: int, global_step: int, best_loss: float, best_epoch: int | None, stopped: bool,
               metrics: list[dict[str, Any]], device: torch.device, world_size: int) -> None:
    """Write ``out/last.pt``: everything a resumed run restores (see the module docstring)."""
    state = {
        "format": STATE_FORMAT,
        "config": cfg.to_dict(),
        "hydrogens": hydrogens,
        "model": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epochs_done": epochs_done,
        "global_step": global_step,
        "best_loss": best_loss,
        "best_epoch": best_epoch,
        "stopped_at_max_steps": stopped,
        "metrics": [dict(row) for row in metrics],
        "rng": rng_state(device),
        "world_size": world_size,
    }
    atomic_torch_save(state, out / "last.pt")


__all__ = ["RESUME_MAY_CHANGE", "STATE_FORMAT", "atomic_torch_save", "check_resumable", "load_state", "rng_state",
           "save_encoder", "save_state", "set_rng_state"]
