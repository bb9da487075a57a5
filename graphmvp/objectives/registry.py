"""The registry of pretraining objectives, and the metric type they return.

Every objective is an ``nn.Module`` registered here under its command-line name and carrying a
``kind`` class attribute that tells the training loop how to call it:

==============  ==========================================================================
``kind``        ``forward`` arguments
==============  ==========================================================================
"contrastive"   ``(z2d [B, D], z3d [B, D])``, graph-level 2D and 3D representations
"generative"    ``(z2d [B, D], z3d [B, D])``; the module holds ``to_3d`` (2D -> 3D) and
                ``to_2d`` (3D -> 2D) sub-modules so ``to_2d`` can get its own lr scale
"2d"            task-specific (see :mod:`.attrmask` and :mod:`.contextpred`)
==============  ==========================================================================

All return ``(loss, metrics)``: a scalar tensor to back-propagate and a ``dict[str, float]`` of
detached python numbers for logging.
"""

from __future__ import annotations

from typing import Dict

from graphmvp.registry import Registry

OBJECTIVES: Registry = Registry("objective")

#: the objective kinds a training loop has to know about
OBJECTIVE_KINDS = ("contrastive", "generative", "2d")

Metrics = Dict[str, float]
