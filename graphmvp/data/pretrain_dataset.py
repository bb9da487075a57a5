"""The GraphMVP pretraining dataset: (masked 2D graph, masked 3D conformer) samples over a store.

Samples
    ``conformer_sampling="all"`` (upstream): every (molecule, conformer) pair is a sample, in
    store order (molecule 0's conformers, then molecule 1's, ...). ``"random"``: one sample per
    molecule; its conformer is drawn uniformly anew in every epoch. With ``views="2d"`` a
    molecule without conformers still gives one sample (``conf_index = -1``); with
    ``views="2d3d"`` it is an error, raised when the dataset is built.

Randomness
    Every random choice for sample ``idx`` in epoch ``e`` comes from one generator,
    ``np.random.default_rng([seed, e, idx])``, drawn in a fixed order: conformer (``"random"``
    only), subgraph mask, AttrMask, ContextPred centre. A sample is therefore the same whatever
    the DataLoader's worker count or order, different across samples and epochs, and an
    interrupted run resumes exactly. Call :meth:`PretrainDataset.set_epoch` before iterating an
    epoch (with ``persistent_workers=True`` the workers would keep the old epoch: don't).

Per sample
    1. the subgraph mask (:func:`graphmvp.data.masking.subgraph_keep`, ratio ``mask_ratio``)
       picks the kept atoms; BOTH views keep exactly these atoms, in the same (ascending) order;
    2. the 2D view is the induced subgraph of the molecule's graph on them;
    3. for ``"2d3d"``, the 3D view holds their atomic numbers and positions in the chosen
       conformer and the radius-neighbour edges computed on those positions alone
       (:func:`graphmvp.data.neighbors.radius_neighbors`, cutoff / nearest ``max_neighbors``);
    4. optional AttrMask and ContextPred inputs are cut from the masked 2D graph;
    5. each :class:`SampleTransform` of ``transforms`` (the inputs of further 2D tasks: GraphCL
       views, masked-prediction targets, ...) adds its payload under its ``name`` in
       ``sample.extras``, in the order given, drawing from the same generator after the draws
       above (so adding a transform never changes the other parts of a sample).

Samples are small numpy containers (:class:`PretrainSample`); :func:`graphmvp.data.collate.collate`
concatenates them into one batched DGL graph per view (faster than one DGL graph per sample and
``dgl.batch``). Cost on a 2-core EPYC with molecules in memory (``preload``), ~44 atoms:
~0.11-0.15 ms per 2D+3D sample (~0.2-0.25 ms with AttrMask + ContextPred) plus ~7.5 ms to
collate 256 of them, i.e. ~45 ms per batch of 256. Streaming each molecule from the HDF5 store
instead (``preload`` off, or ``"auto"`` on a large store) adds ~25 us per sample when the file's
pages are cached (~0.1-0.25 ms when they have to come from disk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
from torch.utils.data import Dataset

from graphmvp.data.masking import _check_mask_ratio, induced_subgraph, subgraph_keep
from graphmvp.data.neighbors import radius_neighbors
from graphmvp.data.store import MoleculeArrays
from graphmvp.data.transforms_2d import AttrMask, AttrMaskResult, ContextPair, ContextPred
from graphmvp.molgraph import MolGraph

VIEWS = ("2d3d", "2d")
CONFORMER_SAMPLING = ("all", "random")

#: ``preload="auto"`` loads a store into memory when its ``preload_bytes()`` (a ConformerStore's
#: file size) is at most this, and streams it otherwise: 256 MiB is ~70k GEOM-drugs molecules with
#: 5 conformers and hydrogens (~3.6 KB each), so upstream's 50k x 5 set is still loaded, while the
#: full GEOM-drugs (300k) and larger sets stream. Read at call time (a process may change it).
PRELOAD_AUTO_MAX_BYTES = 256 * 2**20


def resolve_preload(store: Sequence, preload: bool | str, max_bytes: int | None = None) -> bool:
    """Whether :class:`PretrainDataset` loads ``store`` into memory (its ``preload`` policy).

    A sequence already in memory (list, tuple, :class:`~graphmvp.data.store.MoleculeArrays`) is
    never loaded again. ``True`` / ``False``: load / stream. ``"auto"``: load a store that tells
    its in-memory size (``preload_bytes()``) when that is at most ``max_bytes`` (default:
    :data:`PRELOAD_AUTO_MAX_BYTES`); other sequences are left as they are.
    """
    if not (isinstance(preload, (bool, np.bool_)) or preload == "auto"):
        raise ValueError(f"preload={preload!r}: expected True, False or 'auto'")
    if isinstance(store, (list, tuple, MoleculeArrays)):
        return False
    if isinstance(preload, str):
        size = getattr(store, "preload_bytes", None)
        if not callable(size):
            return False
        limit = PRELOAD_AUTO_MAX_BYTES if max_bytes is None else int(max_bytes)
        return int(size()) <= limit
    return bool(preload)


@dataclass(frozen=True)
class SampleInfo:
    """What a :class:`SampleTransform` may know about the sample besides its graph.

    ``molecule``: the full :class:`~graphmvp.data.store.Molecule` (all atoms, before the subgraph
    mask); ``kept_atoms`` [n] int64: ids in ``molecule`` of the atoms of the (masked) graph, in the
    graph's order; ``epoch``: the dataset's current epoch (0-based).
    """

    mol_index: int
    conf_index: int
    kept_atoms: np.ndarray
    molecule: Any
    epoch: int


@runtime_checkable
class SampleTransform(Protocol):
    """A per-sample input builder of a 2D task, plugged into :class:`PretrainDataset`.

    ``name``: the key of its payload in ``PretrainSample.extras`` and ``PretrainBatch.extras``.
    ``__call__(graph, rng, info)``: the payload for one sample, from the sample's (masked) 2D
    graph, its random generator and :class:`SampleInfo`. The payload is any picklable object whose
    class has a ``collate(payloads, layout)`` classmethod or staticmethod returning the batch
    form (``layout``: :class:`graphmvp.data.collate.BatchLayout`, where each sample's nodes and
    edges start in the batched 2D graph); see :func:`graphmvp.data.collate.collate`.
    """

    name: ClassVar[str] | str

    def __call__(self, graph: MolGraph, rng: np.random.Generator, info: SampleInfo) -> Any: ...


@dataclass
class PretrainSample:
    """One pretraining sample, as numpy arrays (n kept atoms).

    ``graph``: the masked 2D graph. 3D view (None for ``views="2d"``): ``atomic_num`` [n] int64
    (true Z), ``pos`` [n, 3] float32, ``edge_index_3d`` [2, e3] int64 with row 0 = src = the
    neighbour j, row 1 = dst = the receiving atom i. ``kept_atoms`` [n] int64: ids of the kept
    atoms in the full molecule. ``attrmask`` / ``context``: optional 2D-task inputs.
    ``conf_index`` is the conformer's index within its molecule (-1: no conformer used).
    ``extras``: transform name -> payload (see :class:`SampleTransform`).
    """

    mol_index: int
    conf_index: int
    kept_atoms: np.ndarray
    graph: MolGraph
    atomic_num: np.ndarray | None = None
    pos: np.ndarray | None = None
    edge_index_3d: np.ndarray | None = None
    attrmask: AttrMaskResult | None = None
    context: ContextPair | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_atoms(self) -> int:
        return self.graph.num_atoms


def _conformer_counts(store: Sequence) -> np.ndarray:
    counts = getattr(store, "num_conformers", None)
    if callable(counts):  # a ConformerStore: read from the offsets, no molecule is loaded
        return np.asarray(counts(), dtype=np.int64)
    return np.array([store[i].num_conformers for i in range(len(store))], dtype=np.int64)


def _describe(store: Sequence, i: int) -> str:
    smiles = store.smiles(i) if callable(getattr(store, "smiles", None)) else store[i].smiles
    return f"molecule {i} ({smiles})"


class PretrainDataset(Dataset):
    """GraphMVP pretraining samples over a sequence of :class:`~graphmvp.data.store.Molecule`.

    Args:
        store: a :class:`~graphmvp.data.store.ConformerStore` or any sequence of molecules.
        views: ``"2d3d"`` (2D graph + 3D conformer) or ``"2d"`` (2D graph only).
        conformer_sampling: ``"all"`` (one sample per conformer) or ``"random"`` (one sample per
            molecule, conformer drawn per epoch).
        mask_ratio: subgraph mask ratio M in [0, 1) (0 = keep all atoms).
        seed: base seed of all random choices.
        cutoff, max_neighbors: 3D neighbour rule (Angstrom, nearest neighbours kept per atom).
        attrmask, attrmask_rate: add AttrMask inputs (GraphMVP-G), masking rate.
        contextpred: add ContextPred inputs (GraphMVP-C).
        attrmask_edges: AttrMask also masks the bonds at masked atoms (off, as upstream).
        contextpred_k, contextpred_r1, contextpred_r2: ContextPred radii (5, 4, 7 upstream).
        transforms: further per-sample inputs (:class:`SampleTransform`), names unique.
        preload: ``"auto"`` (default): load the store into memory when the dataset is built if
            it is small (at most :data:`PRELOAD_AUTO_MAX_BYTES`, see :func:`resolve_preload`),
            stream it otherwise; ``True``: load it whatever its size; ``False``: stream. A
            :class:`~graphmvp.data.store.ConformerStore` loads into
            :class:`~graphmvp.data.store.MoleculeArrays` (its own arrays, no Python object per
            molecule: at most the file's size, ~3.6 KB per GEOM molecule with 5 conformers, and
            shared with forked DataLoader workers; ~5 us per molecule access); other sequences
            into a list. Streaming keeps memory flat in the store size (what grows is 32 bytes
            per molecule of store offsets and 8-16 of this dataset's counts) and reads a random
            molecule in ~25 us (see :class:`~graphmvp.data.store.ConformerStore`).
    """

    def __init__(
        self,
        store: Sequence,
        views: str = "2d3d",
        conformer_sampling: str = "all",
        mask_ratio: float = 0.15,
        seed: int = 0,
        cutoff: float = 10.0,
        max_neighbors: int = 32,
        attrmask: bool = False,
        attrmask_rate: float = 0.15,
        contextpred: bool = False,
        attrmask_edges: bool = False,
        contextpred_k: int = 5,
        contextpred_r1: int = 4,
        contextpred_r2: int = 7,
        preload: bool | str = "auto",
        transforms: Sequence[SampleTransform] = (),
    ):
        if views not in VIEWS:
            raise ValueError(f"views={views!r}: expected one of {', '.join(VIEWS)}")
        if conformer_sampling not in CONFORMER_SAMPLING:
            raise ValueError(
                f"conformer_sampling={conformer_sampling!r}: expected one of {', '.join(CONFORMER_SAMPLING)}"
            )
        _check_mask_ratio(mask_ratio)
        if not cutoff > 0:
            raise ValueError(f"cutoff={cutoff!r}: must be > 0 (Angstrom)")
        if int(max_neighbors) < 1:
            raise ValueError(f"max_neighbors={max_neighbors!r}: must be >= 1")
        if int(seed) < 0:
            raise ValueError(f"seed={seed!r}: must be >= 0 (numpy seeds are non-negative)")
        #: the store was loaded into memory (see ``preload``)
        self.preloaded = resolve_preload(store, preload)
        if self.preloaded:
            store = store.load() if callable(getattr(store, "load", None)) else list(store)
        self.store = store
        self.views = views
        self.conformer_sampling = conformer_sampling
        self.mask_ratio = float(mask_ratio)
        self.seed = int(seed)
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.attrmask = AttrMask(attrmask_rate, attrmask_edges) if attrmask else None
        self.contextpred = ContextPred(contextpred_k, contextpred_r1, contextpred_r2) if contextpred else None
        self.transforms = tuple(transforms)
        names = [t.name for t in self.transforms]
        if len(set(names)) != len(names):
            raise ValueError(f"transforms {names}: names must be unique")
        for name in names:
            if name in ("attrmask", "context"):
                raise ValueError(f"transform name {name!r} is reserved for the built-in inputs")
        self.epoch = 0

        self.conformers_per_molecule = _conformer_counts(store)
        if views == "2d3d":
            missing = np.flatnonzero(self.conformers_per_molecule == 0)
            if missing.size:
                raise ValueError(
                    f"views='2d3d' needs 3D positions, but {_describe(store, int(missing[0]))} has no "
                    f"conformer ({missing.size} molecule(s) without conformers in total); use views='2d' "
                    "or a store prepared with conformers"
                )
        if conformer_sampling == "all":
            per_mol = np.maximum(self.conformers_per_molecule, 1)  # 2d: a molecule without conformers counts once
            self._sample_offset = np.zeros(len(per_mol) + 1, dtype=np.int64)
            np.cumsum(per_mol, out=self._sample_offset[1:])
        else:
            self._sample_offset = None

    # -- epochs and indices ----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random choices the samples use."""
        if int(epoch) < 0:
            raise ValueError(f"epoch={epoch!r}: must be >= 0")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self._sample_offset is None:
            return len(self.store)
        return int(self._sample_offset[-1])

    def sample_rng(self, idx: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of all random choices of sample ``idx`` in ``epoch`` (default: current)."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(idx)])

    def locate(self, idx: int) -> tuple[int, int | None]:
        """(molecule index, conformer index within it) of sample ``idx``; the conformer is None
        for ``"random"`` (drawn per epoch) and -1 for a molecule without conformers."""
        if self._sample_offset is None:
            return idx, None
        mol = int(np.searchsorted(self._sample_offset, idx, side="right")) - 1
        conf = idx - int(self._sample_offset[mol])
        if self.conformers_per_molecule[mol] == 0:
            conf = -1
        return mol, conf

    # -- samples ---------------------------------------------------------------------------------
    def __getitem__(self, idx: int) -> PretrainSample:
        n = len(self)
        idx = int(idx)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"sample {idx} out of range for a dataset of {n}")
        rng = self.sample_rng(idx)
        mol_index, conf = self.locate(idx)
        mol = self.store[mol_index]
        n_conf = mol.num_conformers
        if conf is None:  # "random": one conformer per molecule and epoch
            conf = int(rng.integers(n_conf)) if n_conf > 0 else -1
        if self.views == "2d3d" and conf < 0:
            raise ValueError(f"views='2d3d' needs 3D positions, but {_describe(self.store, mol_index)} has none")

        keep = subgraph_keep(mol.num_atoms, mol.edge_index, self.mask_ratio, rng)
        graph = induced_subgraph(mol.graph, keep)
        sample = PretrainSample(mol_index=mol_index, conf_index=conf, kept_atoms=keep, graph=graph)

        if self.views == "2d3d":
            pos = np.ascontiguousarray(mol.positions[conf][keep], dtype=np.float32)
            idx_i, idx_j = radius_neighbors(pos, cutoff=self.cutoff, max_neighbors=self.max_neighbors)
            sample.atomic_num = graph.atomic_num.astype(np.int64)
            sample.pos = pos
            sample.edge_index_3d = np.stack([np.asarray(idx_j, np.int64), np.asarray(idx_i, np.int64)])
        if self.attrmask is not None:
            sample.attrmask = self.attrmask(graph, rng)
        if self.contextpred is not None:
            sample.context = self.contextpred(graph, rng)
        if self.transforms:
            info = SampleInfo(mol_index=mol_index, conf_index=conf, kept_atoms=keep, molecule=mol, epoch=self.epoch)
            for transform in self.transforms:
                sample.extras[transform.name] = transform(graph, rng, info)
        return sample
