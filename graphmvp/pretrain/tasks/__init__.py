"""2D pretraining methods: one module per method, each declaring its methods in ``METHODS``.

A method's module holds everything about it (:class:`Task2D`: objective class and its declared
constructor arguments, typed options with the paper's defaults, sample transforms, ``run``,
hooks, presets). :data:`METHOD_MODULES` is the explicit list of those modules; :data:`METHODS`
and :data:`TASKS_2D` are built from it here, and :data:`graphmvp.pretrain.presets.PRESETS` from
:data:`METHODS`, so what exists does not depend on which modules were imported first.
"""

from __future__ import annotations

import importlib

from graphmvp.objectives import OBJECTIVES
from graphmvp.pretrain.tasks.base import (
    TASKS_2D,
    NoOptions,
    Task2D,
    coerce_option,
    options_of,
    task_of,
    task_options,
)

#: the modules of :mod:`graphmvp.pretrain.tasks` that declare 2D methods, in the order their
#: presets are listed (after GraphMVP's own)
METHOD_MODULES: tuple[str, ...] = (
    "attrmask",
    "contextpred",
    "gptgnn",
    "graphlog",
    "grover",
    "edgepred",
    "infomax",
    "graphcl",
    "joao",
)


def _collect() -> tuple[Task2D, ...]:
    methods: list[Task2D] = []
    for module_name in METHOD_MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        for method in module.METHODS:
            if OBJECTIVES.get(method.name) is not method.objective:
                raise TypeError(f"2D method {method.name!r} ({module.__name__}) declares objective "
                                f"{method.objective.__name__}, but OBJECTIVES[{method.name!r}] is "
                                f"{OBJECTIVES.get(method.name).__name__}")
            methods.append(method)
    return tuple(methods)


#: every 2D method's declaration, in :data:`METHOD_MODULES` order
METHODS: tuple[Task2D, ...] = _collect()
for _method in METHODS:
    TASKS_2D.register(_method.name)(_method)
del _method

__all__ = [
    "METHODS",
    "METHOD_MODULES",
    "NoOptions",
    "TASKS_2D",
    "Task2D",
    "coerce_option",
    "options_of",
    "task_of",
    "task_options",
]
