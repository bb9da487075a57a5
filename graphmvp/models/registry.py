"""The encoder registry: 2D and 3D molecule encoders are looked up by name.

>>> from graphmvp.models import build_encoder
>>> gin = build_encoder("gin", num_layers=5, emb_dim=300)
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from graphmvp.registry import Registry

ENCODERS: Registry = Registry("encoder")


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the encoder registered as ``name`` with keyword arguments ``kwargs``.

    Raises ``ValueError`` naming the unknown encoder and the registered ones.
    """
    if name not in ENCODERS:
        known = ", ".join(ENCODERS.names()) or "none"
        raise ValueError(f"unknown encoder {name!r}; registered encoders: {known}")
    return ENCODERS.get(name)(**kwargs)
