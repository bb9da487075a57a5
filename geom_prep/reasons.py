"""The fixed keys under which skipped molecules and dropped conformers are counted.

Molecule-level reasons mean the molecule is not in the store; conformer-level reasons (prefix
``conformer_``) mean one conformer was left out and the molecule may still be kept.
"""

# molecule level
UNPARSABLE_SMILES = "unparsable_smiles"
UNPARSABLE_RECORD = "unparsable_record"
NO_PICKLE_PATH = "no_pickle_path"
MISSING_PICKLE = "missing_pickle"
UNREADABLE_PICKLE = "unreadable_pickle"
UNSAFE_PICKLE = "unsafe_pickle"  # names a callable outside what a GEOM pickle holds: refused, nothing ran
PICKLE_PATH_OUTSIDE = "pickle_path_outside_folder"  # summary's pickle_path is absolute or leaves the folder
NO_CONFORMERS = "no_conformers"
TOO_FEW_CONFORMERS = "too_few_conformers"
TOO_MANY_CONFORMERS = "too_many_conformers"
TOO_FEW_VALID_CONFORMERS = "too_few_valid_conformers"
MISSING_ENERGY = "missing_energy"
UNSUPPORTED_MOLECULE = "unsupported_molecule"
EMBEDDING_FAILED = "embedding_failed"
TIMEOUT = "timeout"  # conformer generation took longer than --conf-timeout
NO_MMFF_PARAMETERS = "no_mmff_parameters"
EXCLUDED_DOWNSTREAM = "excluded_downstream"
UNEXPECTED_ERROR = "unexpected_error"

# conformer level
CONFORMER_CHANGED_GRAPH = "conformer_changed_graph"
CONFORMER_UNREADABLE = "conformer_unreadable"

CONFORMER_PREFIX = "conformer_"


def is_conformer_level(reason: str) -> bool:
    return reason.startswith(CONFORMER_PREFIX)


class Skip(Exception):
    """Raised while building a molecule: skip it, counted under ``reason``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
