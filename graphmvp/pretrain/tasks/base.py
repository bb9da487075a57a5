"""The plug-in contract of 2D pretraining tasks (the ``"2d"`` objective kind).

A 2D task couples one registered objective (:data:`graphmvp.objectives.OBJECTIVES`, kind ``"2d"``)
with what the training loop needs around it, registered in :data:`TASKS_2D` under the objective's
name by a module of this package:

``dataset_options(cfg) -> dict``
    :class:`~graphmvp.data.pretrain_dataset.PretrainDataset` keyword arguments that make the
    batches carry the task's inputs: the built-in ``attrmask`` / ``contextpred`` flags, or
    ``transforms`` (:class:`~graphmvp.data.pretrain_dataset.SampleTransform` instances whose
    payloads reach the batch as ``batch.extras[name]``).
``run(model, objective, batch) -> (loss | None, metrics)``
    the task's loss on one batch (None: the batch has nothing for the task).
``options``
    the task's own hyperparameters and their defaults (the paper's): ``{name: default}``. A run
    sets them with ``PretrainConfig.options`` (``--opt NAME=VALUE``; presets set them too);
    :func:`task_options` gives the resolved values. An objective constructor parameter whose name
    is an option receives its value (see :func:`graphmvp.pretrain.model.objective_kwargs`).
``begin_epoch(model, objective, dataset, epoch)`` (optional)
    called by the trainer before the steps of every epoch, after ``dataset.set_epoch`` (e.g. to
    hand state restored by ``--resume`` to the dataset's transforms).
``end_epoch(model, objective, dataset, epoch)`` (optional)
    called by the trainer after the steps of every epoch (e.g. JOAO's update of its augmentation
    distribution); state it changes must live in the objective's ``state_dict`` (buffers) so that
    ``--resume`` restores it.
``item_count(batch) -> int`` (optional)
    how many items the task's loss is a mean over in ``batch`` (masked atoms, context pairs,
    ...); None: a per-sample mean. Under DDP a rank's term is weighted by its share of the global
    count, so the ranks' average is the mean over the global batch's items.
``in_batch``
    the loss compares the samples of a batch with each other (negatives, prototypes): under DDP
    those comparisons stay within each rank's piece of the global batch (documented limit),
    unless ``global_loss``.
``global_loss``
    ``run`` passes its per-sample rows through :func:`graphmvp.distributed.gather_pieces` before
    comparing them, so under DDP its loss is that of the global batch, identical on every rank:
    the trainer back-propagates it whole on every rank (as GraphMVP's contrastive term) instead
    of weighting per-rank shares, and keeps the objective's own modules out of synchronised
    batch norm (they see the gathered rows). One process: ``gather_pieces`` is the identity.
``describe``
    one line for ``--help`` and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from graphmvp.registry import Registry


@dataclass(frozen=True)
class Task2D:
    """What the training loop needs to know about a 2D task (see the module docstring)."""

    dataset_options: Callable[[Any], dict[str, Any]]
    run: Callable[[Any, Any, Any], tuple[Any, dict]]
    options: Mapping[str, Any] = field(default_factory=dict)
    end_epoch: Optional[Callable[[Any, Any, Any, int], None]] = None
    begin_epoch: Optional[Callable[[Any, Any, Any, int], None]] = None
    describe: str = ""
    item_count: Optional[Callable[[Any], int]] = None
    in_batch: bool = False
    global_loss: bool = False


#: 2D-task objective name -> :class:`Task2D`
TASKS_2D: Registry = Registry("2D task")


def task_of(cfg: Any) -> Optional[Task2D]:
    """The :class:`Task2D` of the 2D objective in ``cfg.loss`` (None without one)."""
    name = cfg.objective("2d")
    return None if name is None else TASKS_2D.get(name)


def coerce_option(name: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default`` (int -> float allowed, bool strict);
    raises ``ValueError`` naming the option when it does not fit."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"option {name}={value!r}: expected true or false")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"option {name}={value!r}: expected an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"option {name}={value!r}: expected a number")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError(f"option {name}={value!r}: expected a string")
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
        raise ValueError(f"option {name}={value!r}: expected a list")
    return value


def task_options(cfg: Any) -> dict[str, Any]:
    """The 2D task's options: its defaults updated with ``cfg.options`` (values coerced)."""
    task = task_of(cfg)
    if task is None:
        return {}
    values = dict(task.options)
    for key, value in (cfg.options or {}).items():
        values[key] = coerce_option(key, task.options.get(key), value)
    return values


__all__ = ["TASKS_2D", "Task2D", "coerce_option", "task_of", "task_options"]
