"""2D pretraining tasks: importing this package registers every task in :data:`TASKS_2D`.

One module per task; each registers a :class:`Task2D` under its objective's name and, where the
method has published defaults, a preset (:func:`graphmvp.pretrain.presets.register_preset`).
"""

from graphmvp.pretrain.tasks.base import TASKS_2D, Task2D, coerce_option, task_of, task_options
from graphmvp.pretrain.tasks import attrmask, contextpred  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import gptgnn  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import graphlog  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import grover  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import edgepred  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import infomax  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import graphcl  # noqa: F401  (registration)
from graphmvp.pretrain.tasks import joao  # noqa: F401  (registration)

__all__ = ["TASKS_2D", "Task2D", "coerce_option", "task_of", "task_options"]
