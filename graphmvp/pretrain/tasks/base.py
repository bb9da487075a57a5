"""The declaration of a 2D pretraining method (the ``"2d"`` objective kind).

A 2D method is one module of :mod:`graphmvp.pretrain.tasks` (listed in
:data:`graphmvp.pretrain.tasks.METHOD_MODULES`) whose ``METHODS`` tuple holds one :class:`Task2D`
per objective it trains. The declaration is everything the rest of the package knows about the
method; nothing is registered as a side effect of importing the module, and nothing is matched
by parameter name:

``name``
    the objective's command-line name (``--loss NAME``); the objective class must be registered
    under it in :data:`graphmvp.objectives.OBJECTIVES` (which gives its kind, ``"2d"``).
``objective``
    the objective class, an ``nn.Module`` from :mod:`graphmvp.objectives` (a building block that
    knows nothing about configs).
``objective_args(cfg, options) -> dict``
    the objective's constructor keyword arguments, spelled out from the config and the method's
    typed options: the objective is built as ``objective(**objective_args(cfg, options))``
    (:meth:`Task2D.build_objective`), so a constructor parameter renamed without updating the
    declaration is a ``TypeError`` naming the method, never a silently used default.
``options``
    the method's own hyperparameters: a frozen dataclass whose field defaults are the paper's
    (:class:`NoOptions` for none). A run sets them with ``PretrainConfig.options``
    (``--opt NAME=VALUE``; presets set them too); a NAME the dataclass does not declare is a
    ``ConfigError`` naming the method and listing its options. :func:`options_of` gives the
    resolved instance, :func:`task_options` the same as a dict.
``dataset_options(cfg, options) -> dict``
    :class:`~graphmvp.data.pretrain_dataset.PretrainDataset` keyword arguments that make the
    batches carry the method's inputs: the built-in ``attrmask`` / ``contextpred`` flags, or
    ``transforms`` (its sample transforms, :class:`~graphmvp.data.pretrain_dataset.SampleTransform`
    instances whose payloads reach the batch as ``batch.extras[name]``).
``run(model, objective, batch) -> (loss | None, metrics)``
    the method's loss on one batch (None: the batch has nothing for the method).
``presets``
    ``{preset name: config field values}``: the method's published settings (``options`` for its
    own hyperparameters), collected into :data:`graphmvp.pretrain.presets.PRESETS`.
``begin_epoch(model, objective, dataset, epoch)`` (optional)
    called by the trainer before the steps of every epoch, after ``dataset.set_epoch`` (e.g. to
    hand state restored by ``--resume`` to the dataset's transforms).
``end_epoch(model, objective, dataset, epoch)`` (optional)
    called by the trainer after the steps of every epoch (e.g. JOAO's update of its augmentation
    distribution); state it changes must live in the objective's ``state_dict`` (buffers) so that
    ``--resume`` restores it.
``item_count(batch) -> int`` (optional)
    how many items the method's loss is a mean over in ``batch`` (masked atoms, context pairs,
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
    one line for the docs.

Adding a method: write ``graphmvp/objectives/<method>.py`` (the loss module, registered in
``OBJECTIVES`` with ``kind = "2d"``) and ``graphmvp/pretrain/tasks/<method>.py`` (its sample
transform, options dataclass, ``run``, presets and ``METHODS = (Task2D(...),)``), then add the
module's name to :data:`graphmvp.pretrain.tasks.METHOD_MODULES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from graphmvp.registry import Registry


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has no hyperparameters of its own."""


@dataclass(frozen=True, kw_only=True)
class Task2D:
    """The declaration of one 2D method (see the module docstring)."""

    name: str
    objective: type
    objective_args: Callable[[Any, Any], dict[str, Any]]
    dataset_options: Callable[[Any, Any], dict[str, Any]]
    run: Callable[[Any, Any, Any], tuple[Any, dict]]
    options: type = NoOptions
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    end_epoch: Optional[Callable[[Any, Any, Any, int], None]] = None
    begin_epoch: Optional[Callable[[Any, Any, Any, int], None]] = None
    describe: str = ""
    item_count: Optional[Callable[[Any], int]] = None
    in_batch: bool = False
    global_loss: bool = False

    def __post_init__(self) -> None:
        if getattr(self.objective, "kind", None) != "2d":
            raise TypeError(f"2D method {self.name!r}: objective {self.objective!r} is not a '2d' objective")
        options = self.options
        if not (isinstance(options, type) and dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):
            raise TypeError(f"2D method {self.name!r}: options must be a frozen dataclass, got {options!r}")
        missing = [f.name for f in dataclasses.fields(options) if f.default is dataclasses.MISSING]
        if missing:
            raise TypeError(f"2D method {self.name!r}: options {', '.join(missing)} have no default (the paper's)")

    def option_defaults(self) -> dict[str, Any]:
        """``{option name: default}``, in declaration order."""
        return {f.name: f.default for f in dataclasses.fields(self.options)}

    def resolve_options(self, values: Optional[Mapping[str, Any]] = None) -> Any:
        """The options instance: the defaults updated with ``values`` (coerced to the defaults'
        types, :func:`coerce_option`). ``ValueError`` for a name the method does not declare
        (naming the method and listing its options) or a value that does not fit."""
        defaults = self.option_defaults()
        resolved = dict(defaults)
        for key, value in (values or {}).items():
            if key not in defaults:
                known = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
                raise ValueError(f"{self.name} has no option {key!r}; its options: {known}")
            resolved[key] = coerce_option(key, defaults[key], value)
        return self.options(**resolved)

    def dataset_arguments(self, cfg: Any) -> dict[str, Any]:
        """The run's dataset keyword arguments: ``dataset_options(cfg, options_of(cfg))``."""
        return self.dataset_options(cfg, self.resolve_options(cfg.options))

    def build_objective(self, cfg: Any) -> Any:
        """The objective module of a run: ``objective(**objective_args(cfg, options_of(cfg)))``.
        A declared argument the constructor does not take is a ``TypeError`` naming the method."""
        args = self.objective_args(cfg, self.resolve_options(cfg.options))
        try:
            return self.objective(**args)
        except TypeError as e:
            raise TypeError(f"2D method {self.name!r}: {self.objective.__name__} does not take the declared "
                            f"arguments ({', '.join(args)}): {e}") from e


#: 2D objective name -> :class:`Task2D`; filled by :mod:`graphmvp.pretrain.tasks` from the
#: modules of :data:`~graphmvp.pretrain.tasks.METHOD_MODULES`
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


def options_of(cfg: Any) -> Any:
    """The resolved options instance of ``cfg``'s 2D method (None without a 2D method)."""
    task = task_of(cfg)
    return None if task is None else task.resolve_options(cfg.options)


def task_options(cfg: Any) -> dict[str, Any]:
    """The 2D method's options as a dict: its defaults updated with ``cfg.options`` (coerced);
    {} without a 2D method."""
    options = options_of(cfg)
    return {} if options is None else {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


__all__ = ["NoOptions", "TASKS_2D", "Task2D", "coerce_option", "options_of", "task_of", "task_options"]
