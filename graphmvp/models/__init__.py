"""Molecule encoders (2D GIN, 3D SchNet), their layers and graph-level readouts.

Encoders map a DGL graph to NODE representations [N, D]; pooling to one vector per graph is
:func:`graph_readout`. Importing this package registers the encoders in :data:`ENCODERS`
("gin", "graphgps", "schnet"). ``schnetpack`` itself is imported only when a SchNet is built.
"""

from graphmvp.models.gin import GIN, JK_MODES
from graphmvp.models.gin_conv import GINConv
from graphmvp.models.gine_conv import GINEConv
from graphmvp.models.gps_layer import GPSLayer, PaddedLayout
from graphmvp.models.graphgps import GraphGPS
from graphmvp.models.readout import READOUTS, graph_readout
from graphmvp.models.registry import ENCODERS, build_encoder
from graphmvp.models.rwse import RWSE_STEPS, batched_rwse, node_rwse, rwse
from graphmvp.models.schnet import SchNetEncoder, ShiftedSoftplus

__all__ = [
    "ENCODERS",
    "GIN",
    "GINConv",
    "GINEConv",
    "GPSLayer",
    "GraphGPS",
    "JK_MODES",
    "PaddedLayout",
    "READOUTS",
    "RWSE_STEPS",
    "SchNetEncoder",
    "ShiftedSoftplus",
    "batched_rwse",
    "build_encoder",
    "graph_readout",
    "node_rwse",
    "rwse",
]
