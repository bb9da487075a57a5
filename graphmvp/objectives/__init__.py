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
