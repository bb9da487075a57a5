"""Pretraining objectives, registered in :data:`OBJECTIVES` by name."""

from .registry import OBJECTIVE_KINDS, OBJECTIVES, Metrics
from .contrastive import EBMNCE, InfoNCE, DualContrastive, cyclic_shift_index, ebm_nce_one_way, infonce_one_way
from .generative import (
    RECONSTRUCTION_CRITERIA,
    RR,
    VRR,
    Reconstructor,
    VariationalReconstructor,
    representation_decoder,
)
from .attrmask import AttributeMasking
from .contextpred import ContextPrediction, segment_mean
from .gptgnn import GPTGNNAttributeGeneration  # noqa: F401  (registration)
from .graphlog import GraphLoG  # noqa: F401  (registration)
from .grover import GroverContextual, GroverMotif  # noqa: F401  (registration)
from .edgepred import EdgePrediction  # noqa: F401  (registration)
from .infomax import Infomax  # noqa: F401  (registration)
from .graphcl import GraphCL, JOAO  # noqa: F401  (registration)

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_KINDS",
    "Metrics",
    "DualContrastive",
    "EBMNCE",
    "InfoNCE",
    "cyclic_shift_index",
    "ebm_nce_one_way",
    "infonce_one_way",
    "RECONSTRUCTION_CRITERIA",
    "VRR",
    "RR",
    "VariationalReconstructor",
    "Reconstructor",
    "representation_decoder",
    "AttributeMasking",
    "ContextPrediction",
    "segment_mean",
]
