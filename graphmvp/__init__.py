"""graphmvp: pretraining molecular graph encoders on 2D topology and 3D geometry, on DGL."""

import os as _os

# DGL picks its tensor backend from this variable and prints a warning when it is unset.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"

# Loaded on first use, so that `import graphmvp` stays free of torch/dgl.
_LAZY = {"load_pretrained": "graphmvp.pretrained", "embed": "graphmvp.pretrained"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphmvp' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
