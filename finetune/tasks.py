"""The registry of downstream tasks: where each data set comes from and how it is read.

Every task is a :class:`TaskSpec` registered in :data:`TASKS` under its command-line name
(``graphmvp-finetune --task NAME``). A spec states, for one data file: the download URL(s), the
file name in the cache, the SHA-256 when it is known in advance (otherwise it is learnt on the
first download and recorded in the cache's checksum manifest, see :mod:`graphmvp.finetune.data`), the
SMILES column, the label columns, the columns that are not labels, the task type and the metric.

Task types (:data:`TASK_TYPES`) carry the protocol defaults of the GraphMVP paper
(``../shared/reference/GRAPHMVP.md``, "Fine-tuning"):

==============  ===========  ==========  =======  =========  ======  ==========
type            loss         metric      dropout  epochs     lr      batch size
==============  ===========  ==========  =======  =========  ======  ==========
classification  masked BCE   ROC-AUC     0.5      100        1e-3    256
regression      MSE          RMSE        0.2      100        1e-3    256
dta             MSE          MSE         0.2      200        5e-4    256
==============  ===========  ==========  =======  =========  ======  ==========

MoleculeNet files are those of DeepChem's bucket (the layout of ``DATA_SOURCES.md``); Malaria and
CEP come from the neural-fingerprint repository; Davis and KIBA from DeepDTA's ``data`` folder.
``chem_dataset_dir`` names the folder of Hu et al.'s ``chem_dataset`` bundle
(``dataset/<dir>/raw/<file>``) that holds the same raw file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from graphmvp.registry import Registry

MOLECULENET_BASE = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"
NEURAL_FINGERPRINT_BASE = "https://raw.githubusercontent.com/HIPS/neural-fingerprint/master/data/"
DEEPDTA_BASE = "https://raw.githubusercontent.com/hkmztrk/DeepDTA/master/data/"

#: the files of one DeepDTA data set, relative to its folder (see graphmvp.finetune.dta)
DEEPDTA_FILES = (
    "ligands_can.txt",
    "proteins.txt",
    "Y",
    "folds/train_fold_setting1.txt",
    "folds/test_fold_setting1.txt",
)


@dataclass(frozen=True)
class TaskType:
    """Protocol defaults and metric direction of a kind of task.

    ``metric``: the primary metric (model selection on validation, the reported number);
    ``higher_is_better``: its direction; ``metrics``: every metric reported per split.
    """

    name: str
    loss: str
    metric: str
    higher_is_better: bool
    metrics: tuple[str, ...]
    dropout: float
    epochs: int
    lr: float
    batch_size: int


#: task type name -> :class:`TaskType`
TASK_TYPES: Registry = Registry("task type")
for _tt in (
    TaskType("classification", "masked_bce", "roc_auc", True, ("roc_auc",), 0.5, 100, 1e-3, 256),
    TaskType("regression", "mse", "rmse", False, ("rmse", "mae"), 0.2, 100, 1e-3, 256),
    TaskType("dta", "mse", "mse", False, ("mse", "rmse", "ci", "pearson", "spearman"), 0.2, 200, 5e-4, 256),
):
    TASK_TYPES.register(_tt.name)(_tt)


@dataclass(frozen=True)
class ColumnLayout:
    """The columns of one published form of a task's file.

    ``label_cols`` None means "every column that is neither the SMILES column nor in
    ``drop_cols``". The same molecules circulate in several layouts: DeepChem's original files
    and, for example, chemprop's benchmark CSVs, whose first column is ``smiles`` and whose label
    columns are renamed (ESOL's ``measured log solubility in mols per litre`` is
    ``logSolubility`` there).
    """

    name: str
    smiles_col: str
    label_cols: Optional[tuple[str, ...]]

    def fits(self, header: "list[str] | tuple[str, ...]") -> bool:
        """Whether a file with these column names holds this layout."""
        wanted = (self.smiles_col, *(self.label_cols or ()))
        return all(c in header for c in wanted)


@dataclass(frozen=True)
class TaskSpec:
    """One downstream data set.

    ``label_cols`` None means "every column that is neither the SMILES column nor in
    ``drop_cols``" (ToxCast's 617 assays, SIDER's 27 classes); ``num_labels`` is then the count
    the published file has (a different count is reported as a warning, not an error).
    ``file_name`` is the name in the cache; for DTA tasks it is the data set's folder and
    ``files`` lists the files in it. ``smiles_col`` and ``label_cols`` are the columns of the
    original file (layout ``"moleculenet"``); ``alt_layouts`` are other published forms of the
    same data that a ``--data-file`` may have (see :meth:`layout_for`).
    """

    name: str
    task_type: str
    file_name: str
    urls: tuple[str, ...]
    smiles_col: Optional[str]
    label_cols: Optional[tuple[str, ...]]
    drop_cols: tuple[str, ...] = ()
    num_labels: Optional[int] = None
    sha256: Optional[str] = None
    chem_dataset_dir: Optional[str] = None
    files: tuple[str, ...] = ()
    label_transform: str = "none"
    description: str = ""
    alt_layouts: tuple[ColumnLayout, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def type(self) -> TaskType:
        return TASK_TYPES.get(self.task_type)

    @property
    def metric(self) -> str:
        return self.type.metric

    def layouts(self) -> tuple[ColumnLayout, ...]:
        """Every known column layout of this task's file, the original one first."""
        if self.smiles_col is None:
            return ()
        return (ColumnLayout("moleculenet", self.smiles_col, self.label_cols), *self.alt_layouts)

    def layout_for(self, header: "list[str] | tuple[str, ...]", source: str) -> ColumnLayout:
        """The first layout whose columns are all in ``header``; ``ValueError`` naming what each
        layout expects otherwise."""
        for layout in self.layouts():
            if layout.fits(header):
                return layout
        expected = "; ".join(
            f"{lay.name}: {', '.join(repr(c) for c in (lay.smiles_col, *(lay.label_cols or ('(every other column)',))))}"
            for lay in self.layouts()
        )
        shown = ", ".join(repr(c) for c in list(header)[:12]) + (", ..." if len(header) > 12 else "")
        raise ValueError(
            f"{source}: its columns ({shown}) match no known layout of task {self.name!r} ({expected}); "
            "name them with --smiles-col and --label-cols"
        )


#: task name -> :class:`TaskSpec`
TASKS: Registry = Registry("task")


def _register(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.name)(spec)


def _mn(file_name: str) -> tuple[str, ...]:
    return (MOLECULENET_BASE + file_name,)


def _chemprop(*label_cols: str) -> tuple[ColumnLayout, ...]:
    """chemprop's benchmark CSV layout: ``smiles`` first, then the (renamed) label columns."""
    return (ColumnLayout("chemprop", "smiles", label_cols or None),)


TOX21_LABELS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)

# -- classification (Hu et al.'s eight) ---------------------------------------------------------
_register(TaskSpec("bbbp", "classification", "BBBP.csv", _mn("BBBP.csv"), "smiles", ("p_np",),
                   drop_cols=("num", "name"), chem_dataset_dir="bbbp",
                   description="blood-brain barrier penetration (2,050 molecules, 1 task)"))
_register(TaskSpec("tox21", "classification", "tox21.csv.gz", _mn("tox21.csv.gz"), "smiles", TOX21_LABELS,
                   drop_cols=("mol_id",), chem_dataset_dir="tox21",
                   description="Tox21 nuclear-receptor and stress-response assays (7,831 molecules, 12 tasks)"))
_register(TaskSpec("toxcast", "classification", "toxcast_data.csv.gz", _mn("toxcast_data.csv.gz"), "smiles", None,
                   num_labels=617, chem_dataset_dir="toxcast",
                   description="ToxCast in-vitro assays (8,576 molecules, 617 tasks)"))
_register(TaskSpec("sider", "classification", "sider.csv.gz", _mn("sider.csv.gz"), "smiles", None,
                   num_labels=27, chem_dataset_dir="sider",
                   description="SIDER side effects by organ class (1,427 molecules, 27 tasks)"))
_register(TaskSpec("clintox", "classification", "clintox.csv.gz", _mn("clintox.csv.gz"), "smiles",
                   ("FDA_APPROVED", "CT_TOX"), chem_dataset_dir="clintox",
                   description="FDA approval and clinical-trial toxicity (1,478 molecules, 2 tasks)"))
_register(TaskSpec("muv", "classification", "muv.csv.gz", _mn("muv.csv.gz"), "smiles", None,
                   drop_cols=("mol_id",), num_labels=17, chem_dataset_dir="muv",
                   description="Maximum Unbiased Validation (93,087 molecules, 17 MUV-xxx tasks)"))
_register(TaskSpec("hiv", "classification", "HIV.csv", _mn("HIV.csv"), "smiles", ("HIV_active",),
                   drop_cols=("activity",), chem_dataset_dir="hiv",
                   description="HIV replication inhibition (41,127 molecules, 1 task)"))
_register(TaskSpec("bace", "classification", "bace.csv", _mn("bace.csv"), "mol", ("Class",),
                   chem_dataset_dir="bace", alt_layouts=_chemprop("Class"),
                   description="BACE-1 inhibition (1,513 molecules, 1 task; pIC50 and Model are not labels)"))

# -- regression (GraphMVP's five) ----------------------------------------------------------------
_register(TaskSpec("esol", "regression", "delaney-processed.csv", _mn("delaney-processed.csv"), "smiles",
                   ("measured log solubility in mols per litre",), chem_dataset_dir="esol",
                   alt_layouts=_chemprop("logSolubility"),
                   description="ESOL water solubility, log mol/L (1,128 molecules)"))
_register(TaskSpec("freesolv", "regression", "SAMPL.csv", _mn("SAMPL.csv"), "smiles", ("expt",),
                   chem_dataset_dir="freesolv", alt_layouts=_chemprop("freesolv"),
                   description="FreeSolv hydration free energy, kcal/mol (642 molecules)"))
_register(TaskSpec("lipophilicity", "regression", "Lipophilicity.csv", _mn("Lipophilicity.csv"), "smiles",
                   ("exp",), chem_dataset_dir="lipophilicity", alt_layouts=_chemprop("lipo"),
                   description="octanol/water distribution coefficient logD at pH 7.4 (4,200 molecules)"))
_register(TaskSpec("malaria", "regression", "malaria-processed.csv",
                   (NEURAL_FINGERPRINT_BASE + "2015-06-03-malaria/malaria-processed.csv",), "smiles", ("activity",),
                   chem_dataset_dir="malaria",
                   description="P. falciparum inhibition, log EC50 (9,999 molecules)"))
_register(TaskSpec("cep", "regression", "cep-processed.csv",
                   (NEURAL_FINGERPRINT_BASE + "2015-06-02-cep-pce/cep-processed.csv",), "smiles", ("PCE",),
                   chem_dataset_dir="cep",
                   description="Harvard Clean Energy Project power conversion efficiency (29,978 molecules)"))

# -- drug-target affinity (DeepDTA setting 1) ---------------------------------------------------
_register(TaskSpec("davis", "dta", "davis", (DEEPDTA_BASE + "davis/",), None, None, files=DEEPDTA_FILES,
                   label_transform="pkd",
                   description="Davis kinase Kd (68 drugs x 442 proteins), label pKd = -log10(Kd / 1e9)"))
_register(TaskSpec("kiba", "dta", "kiba", (DEEPDTA_BASE + "kiba/",), None, None, files=DEEPDTA_FILES,
                   label_transform="none",
                   description="KIBA kinase scores (2,111 drugs x 229 proteins, 118,254 pairs)"))


#: other names a task is known by (the file names of chemprop's benchmark CSVs)
TASK_ALIASES = {"lipo": "lipophilicity"}


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name`` (or of an alias in :data:`TASK_ALIASES`); ``ValueError`` naming
    it and the known tasks otherwise."""
    name = TASK_ALIASES.get(name, name)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS.names())}")
    return TASKS.get(name)


def get_task_type(name: str) -> TaskType:
    if name not in TASK_TYPES:
        raise ValueError(f"unknown task type {name!r}; allowed: {', '.join(TASK_TYPES.names())}")
    return TASK_TYPES.get(name)


def describe_tasks() -> str:
    """One line per registered task (what ``graphmvp-finetune tasks`` prints)."""
    lines = []
    for name in TASKS.names():
        spec = TASKS.get(name)
        lines.append(f"{name:<14} {spec.task_type:<15} {spec.metric:<8} {spec.description}")
    return "\n".join(lines)


__all__ = [
    "ColumnLayout",
    "DEEPDTA_FILES",
    "TASKS",
    "TASK_TYPES",
    "TaskSpec",
    "TaskType",
    "describe_tasks",
    "get_task",
    "get_task_type",
]
