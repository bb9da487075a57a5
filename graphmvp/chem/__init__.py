"""Chemistry labels for 2D pretraining targets: refined-BRICS motifs, GROVER contextual atom
labels, RDKit functional-group flags, and their vocabularies.

Functions work on RDKit molecules directly; :mod:`graphmvp.data.annotations` precomputes them
for a whole store (``graphmvp-prep labels``) and reads them back. Documentation: docs/labels.md.
"""

from graphmvp.chem.contextual import CONTEXTUAL_RULES_VERSION, contextual_label, contextual_labels
from graphmvp.chem.functional_groups import (
    FUNCTIONAL_GROUP_NAMES,
    FUNCTIONAL_GROUP_RULES_VERSION,
    NUM_FUNCTIONAL_GROUPS,
    functional_group_flags,
)
from graphmvp.chem.kinds import LABEL_KINDS, all_kinds, label_kind, parse_kinds
from graphmvp.chem.motifs import MOTIF_RULES_VERSION, MotifDecomposition, motif_decomposition, motif_labels
from graphmvp.chem.vocab import DEFAULT_MIN_COUNT, OTHER, OTHER_INDEX, KeyCounts, Vocabulary, VocabularyError

__all__ = [
    "CONTEXTUAL_RULES_VERSION",
    "DEFAULT_MIN_COUNT",
    "FUNCTIONAL_GROUP_NAMES",
    "FUNCTIONAL_GROUP_RULES_VERSION",
    "LABEL_KINDS",
    "MOTIF_RULES_VERSION",
    "NUM_FUNCTIONAL_GROUPS",
    "OTHER",
    "OTHER_INDEX",
    "KeyCounts",
    "MotifDecomposition",
    "Vocabulary",
    "VocabularyError",
    "all_kinds",
    "contextual_label",
    "contextual_labels",
    "functional_group_flags",
    "label_kind",
    "motif_decomposition",
    "motif_labels",
    "parse_kinds",
]
