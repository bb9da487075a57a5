"""graphmvp: pretraining molecular graph encoders on 2D topology and 3D geometry, on DGL."""

import os as _os

# DGL picks its tensor backend from this variable and prints a warning when it is unset.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
