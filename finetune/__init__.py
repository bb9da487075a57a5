"""Downstream fine-tuning of the pretrained 2D encoder: MoleculeNet, your own data, drug-target
affinity; ``graphmvp-finetune`` on the command line.

Modules (one idea each): :mod:`finetune.tasks` (registry of tasks and task types),
:mod:`finetune.data` (finding, reading, featurising and caching data files), :mod:`finetune.splits`
(scaffold / random / balanced / column splits), :mod:`finetune.metrics` (ROC-AUC, RMSE, MAE, CI,
Pearson, Spearman in numpy), :mod:`finetune.losses` (masked BCE, masked MSE),
:mod:`finetune.model` (GIN + pooling + head, loading the pretrained encoder), :mod:`finetune.dta`
(DeepDTA loaders, protein CNN, affinity model), :mod:`finetune.problems` (batches and predictions
per kind of task), :mod:`finetune.config` (options and defaults), :mod:`finetune.trainer` (the loop
and the run folder), :mod:`finetune.table` (paper-style tables), :mod:`finetune.cli`.

>>> from finetune.config import FinetuneConfig
>>> from finetune.trainer import finetune
>>> summary = finetune(FinetuneConfig(task="freesolv", data_file="freesolv.csv", seeds=(0, 1, 2)))
"""
