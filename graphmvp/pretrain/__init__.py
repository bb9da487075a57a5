"""GraphMVP pretraining: typed config and presets, the model computing the loss, the training loop.

>>> from graphmvp.pretrain import pretrain, resolve_config
>>> result = pretrain(resolve_config("graphmvp", store="mols.h5", out="runs/gmvp"))  # doctest: +SKIP
>>> result.model_2d  # the GIN weights fine-tuning loads  # doctest: +SKIP

Command line: ``graphmvp-pretrain`` (:mod:`graphmvp.pretrain.cli`).
"""

from graphmvp.pretrain.config import (
    ALPHA_FOR_KIND,
    PRESETS,
    ConfigError,
    PretrainConfig,
    check_inputs,
    malloc_mmap_threshold,
    parse_loss,
    resolve_config,
)
from graphmvp.pretrain.model import ENCODER_FORMAT, TASKS_2D, GraphMVPModel, StepOutput, dataset_options
from graphmvp.pretrain.trainer import NonFiniteLossError, RunResult, epoch_batches, pretrain

__all__ = [
    "ALPHA_FOR_KIND",
    "ENCODER_FORMAT",
    "PRESETS",
    "TASKS_2D",
    "ConfigError",
    "GraphMVPModel",
    "NonFiniteLossError",
    "PretrainConfig",
    "RunResult",
    "StepOutput",
    "check_inputs",
    "dataset_options",
    "epoch_batches",
    "malloc_mmap_threshold",
    "parse_loss",
    "pretrain",
    "resolve_config",
]
