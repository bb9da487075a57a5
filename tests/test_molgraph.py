"""One molecule-graph type: the featuriser's graph, the store's Molecule and the graphs that
masking, augmentation and the 2D tasks cut are all :class:`graphmvp.molgraph.MolGraph`, with the
same fields, and ``atomic_num`` stays aligned with ``atom_features`` through every cut."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from graphmvp.data.augment import AUGMENTATIONS
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.data.masking import induced_subgraph, subgraph_keep
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ROW_FIELDS, ConformerStore, Molecule
from graphmvp.data.transforms_2d import AttrMask, ContextPred
from graphmvp.features import graph_features
from graphmvp.molgraph import MASK_ATOM_TYPE, MolGraph
from graphmvp.prep.store_writer import write_store
from graphmvp.pretrain.tasks.gptgnn import NextAtomSteps

GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(MolGraph))
#: a salt (two fragments), a chiral centre, a stereo double bond, aromatic rings, with hydrogens
SMILES = ("C[C@H](N)C(=O)O", "CC(=O)Nc1ccc(O)cc1.[Na+].[Cl-]", "F/C=C/Cl", "c1ccc2ccccc2c1")


def rdkit_molecule(smiles: str, i: int) -> tuple[MolGraph, Molecule]:
    """The featuriser's graph of ``smiles`` with hydrogens, and a Molecule of it with 2 conformers."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=2, randomSeed=7))
    graph = graph_features(mol)
    positions = np.stack([mol.GetConformer(c).GetPositions() for c in ids]).astype(np.float32)
    molecule = Molecule.from_graph(
        graph, positions=positions, energy=np.array([0.0, 1.5]), boltzmann_weight=np.array([0.9, 0.1]),
        conf_source_index=np.arange(2, dtype=np.int32), smiles=smiles, source_id=f"test#{i}", candidate_index=i,
    )
    return graph, molecule


@pytest.fixture(scope="module")
def featurised():
    return [rdkit_molecule(s, i) for i, s in enumerate(SMILES)]


@pytest.fixture(scope="module")
def store(featurised, tmp_path_factory):
    path = tmp_path_factory.mktemp("molgraph") / "mols.h5"
    write_store(path, [m for _, m in featurised], [], {"hydrogens": "keep"})
    with ConformerStore(path) as s:
        yield s


def assert_same_graph(got: MolGraph, want: MolGraph) -> None:
    for name in GRAPH_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name


def assert_aligned(graph: MolGraph) -> None:
    """Every unmasked atom's type index is its atomic number - 1."""
    unmasked = graph.atom_features[:, 0] != MASK_ATOM_TYPE
    assert graph.atomic_num.shape[0] == graph.atom_features.shape[0] == graph.num_atoms
    np.testing.assert_array_equal(graph.atom_features[unmasked, 0].astype(int) + 1, graph.atomic_num[unmasked])


def test_the_store_molecule_is_the_featurised_graph(featurised, store):
    """featurise -> write -> read (every read path): the same MolGraph fields and dtypes come back."""
    assert dataclasses.fields(Molecule)[: len(GRAPH_FIELDS)] == dataclasses.fields(MolGraph)
    assert set(GRAPH_FIELDS) <= set(ROW_FIELDS)  # every graph field is a store dataset, read as it is
    loaded = store.load()
    for i, (graph, _) in enumerate(featurised):
        assert type(graph) is MolGraph
        assert graph.atomic_num.dtype == graph.atom_features.dtype == graph.edge_features.dtype == np.uint8
        assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape == (2, graph.num_edges)
        for read in (store[i], store.molecules_at([i])[0], loaded[i], store.molecules(i, i + 1)[0]):
            assert isinstance(read, MolGraph) and isinstance(read, Molecule)
            assert_same_graph(read, graph)
            assert_same_graph(read.graph, graph)
            assert read.num_atoms == graph.num_atoms and read.num_edges == graph.num_edges
            assert read.positions.shape == (2, graph.num_atoms, 3)


def test_a_molecule_goes_wherever_a_graph_goes(featurised, store):
    mol = store[1]
    plain = mol.graph
    assert type(plain) is MolGraph and all(getattr(plain, f) is getattr(mol, f) for f in GRAPH_FIELDS)
    # batching, masking and the 2D transforms give the same result for the Molecule and its graph
    g1, g2 = batch_mol_graphs([mol]), batch_mol_graphs([plain])
    assert torch.equal(g1.ndata["atom"], g2.ndata["atom"]) and torch.equal(g1.edata["bond"], g2.edata["bond"])
    assert [t.tolist() for t in g1.edges()] == [t.tolist() for t in g2.edges()]
    keep = subgraph_keep(mol.num_atoms, mol.edge_index, 0.3, np.random.default_rng(0))
    sub = induced_subgraph(mol, keep)
    assert type(sub) is MolGraph  # a cut drops the conformers
    assert_same_graph(sub, induced_subgraph(plain, keep))
    a, b = AttrMask(0.3)(mol, np.random.default_rng(1)), AttrMask(0.3)(plain, np.random.default_rng(1))
    assert np.array_equal(a.atom, b.atom) and np.array_equal(a.index, b.index)
    # pickling a Molecule keeps it whole (a StoredMolecule reads its text first)
    back = pickle.loads(pickle.dumps(mol))
    assert type(back) is Molecule and back.smiles == SMILES[1]
    assert_same_graph(back, featurised[1][0])


def test_samples_hold_plain_graphs_even_when_nothing_is_cut(store):
    """With every atom kept the sample's graph is still a plain MolGraph, so a sample does not
    carry the molecule's conformers, text or store handle to the DataLoader's main process."""
    ds = PretrainDataset(store, views="2d3d", mask_ratio=0.0, preload=False)
    for idx in range(len(ds)):
        s = ds[idx]
        mol = store[s.mol_index]
        assert type(s.graph) is MolGraph and s.graph.num_atoms == mol.num_atoms
        assert_same_graph(s.graph, mol)
        np.testing.assert_array_equal(s.atomic_num, mol.atomic_num.astype(np.int64))


def test_cut_and_masked_graphs_keep_atomic_num_aligned(featurised):
    rng = np.random.default_rng(3)
    for graph, _ in featurised:
        assert_aligned(graph)
        for ratio in (0.15, 0.5):
            keep = subgraph_keep(graph.num_atoms, graph.edge_index, ratio, rng)
            sub = induced_subgraph(graph, keep)
            np.testing.assert_array_equal(sub.atomic_num, graph.atomic_num[keep])
            assert_aligned(sub)
        pair = ContextPred(k=2, r1=1, r2=3)(graph, rng)
        np.testing.assert_array_equal(pair.substruct.atomic_num, graph.atomic_num[pair.substruct_atoms])
        for name in AUGMENTATIONS.names():
            out = AUGMENTATIONS.get(name)(graph, 0.4, rng)
            assert type(out) is MolGraph
            assert_aligned(out)
        masked = AUGMENTATIONS.get("attr_mask")(graph, 0.5, rng)
        assert (masked.atom_features[:, 0] == MASK_ATOM_TYPE).sum() == int(0.5 * graph.num_atoms)
        np.testing.assert_array_equal(masked.atomic_num, graph.atomic_num)  # masked atoms keep their true Z
        steps = NextAtomSteps(prefixes=3)(graph, rng)
        for j, (k, step) in enumerate(zip(steps.lengths.tolist(), steps.graphs)):
            np.testing.assert_array_equal(step.atomic_num, graph.atomic_num[steps.order[: k + 1]])
            # the atom to generate is masked in the features, its true Z (= label + 1) is kept
            assert step.atom_features[k, 0] == MASK_ATOM_TYPE and step.atomic_num[k] == steps.label[j] + 1
            assert_aligned(step)
