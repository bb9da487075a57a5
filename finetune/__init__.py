"""Downstream fine-tuning of the pretrained 2D encoder: MoleculeNet, your own data, drug-target
affinity; ``graphmvp-finetune`` on the command line.

Modules (one idea each): :mod:`graphmvp.finetune.tasks` (registry of tasks and task types),
:mod:`graphmvp.finetune.data` (finding, reading, featurising and caching data files), :mod:`graphmvp.finetune.splits`
(scaffold / random / balanced / column splits), :mod:`graphmvp.finetune.metrics` (ROC-AUC, RMSE, MAE, CI,
Pearson, Spearman in numpy), :mod:`graphmvp.finetune.losses` (masked BCE, masked MSE),
:mod:`graphmvp.finetune.model` (GIN + pooling + head, loading the pretrained encoder), :mod:`graphmvp.finetune.dta`
(DeepDTA loaders, protein CNN, affinity model), :mod:`graphmvp.finetune.problems` (batches and predictions
per kind of task), :mod:`graphmvp.finetune.config` (options and defaults), :mod:`graphmvp.finetune.trainer` (the loop
and the run folder), :mod:`graphmvp.finetune.table` (paper-style tables), :mod:`graphmvp.finetune.cli`.

>>> from graphmvp.finetune.config import FinetuneConfig
>>> from graphmvp.finetune.trainer import finetune
>>> summary = finetune(FinetuneConfig(task="freesolv", data_file="freesolv.csv", seeds=(0, 1, 2)))
"""
