"""2D pretraining tasks: importing this package registers every task in :data:`TASKS_2D`.

One module per task; each registers a :class:`Task2D` under its objective's name and, where the
method has published defaults, a preset (:func:`graphmvp.pretrain.presets.register_preset`).
"""

from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D, coerce_option, task_of, task_options
from graphmvp.pretrain.tasks import attrmask, contextpred  # noqa: F401  (registration)

__all__ = ["TASKS_2D", "Task2D", "coerce_option", "task_of", "task_options"]
