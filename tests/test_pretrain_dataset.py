"""PretrainDataset + collate: sample counts, masking of both views, 3D edges, batching, 2D tasks."""

from collections import deque

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from graphmvp.data.collate import PretrainBatch, collate
from graphmvp.data.neighbors import radius_neighbors
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import Molecule
from graphmvp.features import graph_features

import dgl  # noqa: E402  (after graphmvp, which sets the backend)

SMILES = [
    ("CC(=O)Nc1ccc(O)cc1", 3),  # paracetamol, 20 atoms with H
    ("CN1C=NC2=C1C(=O)N(C(=O)N2C)C", 2),  # caffeine, 24 atoms
    ("C[NH3+].[Cl-]", 1),  # a salt: two fragments, 9 atoms
    ("CCCCCCCCCCCC", 2),  # dodecane, 38 atoms
]


def make_molecule(smiles: str, n_conf: int, seed: int = 42) -> Molecule:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conf, randomSeed=seed)) if n_conf else []
    assert len(conf_ids) == n_conf
    f = graph_features(mol)
    n = f.num_atoms
    pos = (
        np.stack([mol.GetConformer(c).GetPositions() for c in conf_ids]).astype(np.float32)
        if n_conf
        else np.zeros((0, n, 3), np.float32)
    )
    return Molecule(
        atomic_num=f.atomic_num,
        atom_features=f.atom_features,
        edge_index=f.edge_index,
        edge_features=f.edge_features,
        positions=pos,
        energy=np.zeros(n_conf),
        boltzmann_weight=np.full(n_conf, 1.0 / max(n_conf, 1)),
        conf_source_index=np.arange(n_conf, dtype=np.int32),
        smiles=smiles,
        source_id=f"test:{smiles}",
    )


@pytest.fixture(scope="module")
def molecules() -> list[Molecule]:
    return [make_molecule(s, c) for s, c in SMILES]


def is_connected(num_atoms: int, edge_index: np.ndarray) -> bool:
    adj = [[] for _ in range(num_atoms)]
    for s, d in np.asarray(edge_index).T.tolist():
        adj[s].append(d)
    seen, queue = {0}, deque([0])
    while queue:
        for b in adj[queue.popleft()]:
            if b not in seen:
                seen.add(b)
                queue.append(b)
    return len(seen) == num_atoms


def same_sample(a, b) -> bool:
    return (
        a.mol_index == b.mol_index
        and a.conf_index == b.conf_index
        and np.array_equal(a.kept_atoms, b.kept_atoms)
        and np.array_equal(a.graph.edge_index, b.graph.edge_index)
        and np.array_equal(a.pos, b.pos)
        and np.array_equal(a.edge_index_3d, b.edge_index_3d)
    )


# ------------------------------------------------------------------------------------------------
# sample counts and indexing
# ------------------------------------------------------------------------------------------------
def test_all_gives_one_sample_per_conformer(molecules):
    ds = PretrainDataset(molecules, conformer_sampling="all")
    assert len(ds) == 3 + 2 + 1 + 2
    got = [(s.mol_index, s.conf_index) for s in (ds[i] for i in range(len(ds)))]
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)]
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert same_sample(ds[-1], ds[len(ds) - 1])


def test_random_gives_one_sample_per_molecule_and_draws_conformers_per_epoch(molecules):
    ds = PretrainDataset(molecules, conformer_sampling="random")
    assert len(ds) == 4
    confs = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        s = ds[0]
        assert s.mol_index == 0 and 0 <= s.conf_index < 3
        np.testing.assert_array_equal(s.pos, molecules[0].positions[s.conf_index][s.kept_atoms])
        confs.add(s.conf_index)
    assert confs == {0, 1, 2}
    ds.set_epoch(0)
    assert [ds[i].mol_index for i in range(4)] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------
# the subgraph mask on both views
# ------------------------------------------------------------------------------------------------
def test_mask_keeps_same_atoms_in_both_views(molecules):
    ds = PretrainDataset(molecules, mask_ratio=0.15, seed=3)
    for i in range(len(ds)):
        s = ds[i]
        mol = molecules[s.mol_index]
        n = mol.num_atoms
        assert s.num_atoms == len(s.kept_atoms) == int(n * 0.85) + 1
        np.testing.assert_array_equal(s.graph.atom_features, mol.atom_features[s.kept_atoms])
        np.testing.assert_array_equal(s.graph.atomic_num, mol.atomic_num[s.kept_atoms])
        np.testing.assert_array_equal(s.atomic_num, mol.atomic_num[s.kept_atoms])
        np.testing.assert_array_equal(s.pos, mol.positions[s.conf_index][s.kept_atoms])
        assert s.pos.dtype == np.float32 and s.atomic_num.dtype == np.int64
        # 2D edges: exactly the molecule's bonds between kept atoms, relabelled
        kept = set(s.kept_atoms.tolist())
        want = {(a, b) for a, b in mol.edge_index.T.tolist() if a in kept and b in kept}
        got = {(int(s.kept_atoms[a]), int(s.kept_atoms[b])) for a, b in s.graph.edge_index.T.tolist()}
        assert got == want and s.graph.num_edges == len(want)
        if mol.smiles != "C[NH3+].[Cl-]":
            assert is_connected(s.num_atoms, s.graph.edge_index)


def test_salt_gets_the_right_count(molecules):
    salt = molecules[2]
    assert salt.num_atoms == 9
    for seed in range(10):
        s = PretrainDataset([salt], mask_ratio=0.4, seed=seed)[0]
        assert s.num_atoms == int(9 * 0.6) + 1  # 6


def test_mask_ratio_zero_keeps_everything(molecules):
    s = PretrainDataset(molecules, mask_ratio=0.0)[3]
    np.testing.assert_array_equal(s.kept_atoms, np.arange(molecules[1].num_atoms))
    np.testing.assert_array_equal(s.graph.edge_index, molecules[1].edge_index)


def test_reproducible_and_different_across_epochs_and_seeds(molecules):
    a = PretrainDataset(molecules, seed=7)
    b = PretrainDataset(molecules, seed=7)
    for i in range(len(a)):
        assert same_sample(a[i], b[i])
    order = [a[i] for i in reversed(range(len(a)))][::-1]  # order of access does not matter
    assert all(same_sample(x, a[i]) for i, x in enumerate(order))
    b.set_epoch(1)
    assert any(not np.array_equal(a[i].kept_atoms, b[i].kept_atoms) for i in range(len(a)))
    b.set_epoch(0)
    assert all(same_sample(a[i], b[i]) for i in range(len(a)))
    c = PretrainDataset(molecules, seed=8)
    assert any(not np.array_equal(a[i].kept_atoms, c[i].kept_atoms) for i in range(len(a)))
    # the documented generator: conformer choice of "random" comes first from it
    r = PretrainDataset(molecules, conformer_sampling="random", seed=7)
    r.set_epoch(4)
    assert r[0].conf_index == int(np.random.default_rng([7, 4, 0]).integers(3))


def test_3d_edges_are_radius_neighbours_of_kept_atoms(molecules):
    ds = PretrainDataset(molecules, cutoff=4.0, max_neighbors=6)
    for i in range(len(ds)):
        s = ds[i]
        idx_i, idx_j = radius_neighbors(s.pos, cutoff=4.0, max_neighbors=6)
        np.testing.assert_array_equal(s.edge_index_3d, np.stack([idx_j, idx_i]))
    assert ds[0].edge_index_3d.shape[1] > 0


# ------------------------------------------------------------------------------------------------
# collate
# ------------------------------------------------------------------------------------------------
def test_collate_batches_views_with_offsets(molecules):
    ds = PretrainDataset(molecules, seed=1)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    assert isinstance(batch, PretrainBatch) and batch.batch_size == 8
    n = [s.num_atoms for s in samples]
    e2 = [s.graph.num_edges for s in samples]
    e3 = [s.edge_index_3d.shape[1] for s in samples]
    offset = np.concatenate([[0], np.cumsum(n)[:-1]])
    g2, g3 = batch.graph_2d, batch.graph_3d
    assert g2.batch_size == g3.batch_size == 8
    assert g2.batch_num_nodes().tolist() == n == g3.batch_num_nodes().tolist()
    assert g2.batch_num_edges().tolist() == e2 and g3.batch_num_edges().tolist() == e3
    assert g2.num_nodes() == g3.num_nodes() == sum(n)
    np.testing.assert_array_equal(batch.mol_index, [s.mol_index for s in samples])
    np.testing.assert_array_equal(batch.conf_index, [s.conf_index for s in samples])

    atom = g2.ndata["atom"]
    assert atom.dtype == torch.int64 and g2.edata["bond"].dtype == torch.int64
    np.testing.assert_array_equal(atom, np.concatenate([s.graph.atom_features for s in samples]))
    np.testing.assert_array_equal(g2.edata["bond"], np.concatenate([s.graph.edge_features for s in samples]))
    src, dst = g2.edges()
    np.testing.assert_array_equal(
        np.stack([src, dst]), np.concatenate([s.graph.edge_index + o for s, o in zip(samples, offset)], axis=1)
    )
    # 3D: same node order, true Z, positions; edges per molecule, never across molecules
    np.testing.assert_array_equal(g3.ndata["Z"], np.concatenate([s.atomic_num for s in samples]))
    np.testing.assert_array_equal(g3.ndata["Z"] - 1, atom[:, 0])  # same atoms as the 2D view
    assert g3.ndata["pos"].dtype == torch.float32
    np.testing.assert_array_equal(g3.ndata["pos"], np.concatenate([s.pos for s in samples]))
    src3, dst3 = g3.edges()
    graph_of_node = np.repeat(np.arange(8), n)
    np.testing.assert_array_equal(graph_of_node[src3.numpy()], graph_of_node[dst3.numpy()])
    for b, graph in enumerate(dgl.unbatch(g3)):
        idx_i, idx_j = radius_neighbors(samples[b].pos)
        s_, d_ = graph.edges()
        np.testing.assert_array_equal(s_, idx_j)
        np.testing.assert_array_equal(d_, idx_i)
    assert batch.attrmask_atom is None and batch.cp_substruct is None
    moved = batch.to("cpu")
    assert moved.graph_3d.num_edges() == g3.num_edges() and torch.equal(moved.mol_index, batch.mol_index)


def test_collate_in_a_dataloader(molecules):
    ds = PretrainDataset(molecules, conformer_sampling="random")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False, collate_fn=collate)
    batches = list(loader)
    assert [b.batch_size for b in batches] == [3, 1]
    assert torch.equal(batches[0].graph_2d.ndata["atom"], collate([ds[0], ds[1], ds[2]]).graph_2d.ndata["atom"])


def test_attrmask_in_batch(molecules):
    ds = PretrainDataset(molecules, attrmask=True, attrmask_rate=0.15, seed=2)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    n = np.array([s.num_atoms for s in samples])
    counts = [int(0.15 * k + 1) for k in n]
    assert batch.attrmask_index.shape[0] == sum(counts)
    atom = batch.graph_2d.ndata["atom"]  # unmasked features
    np.testing.assert_array_equal(batch.attrmask_label, atom[batch.attrmask_index, 0])
    masked = batch.attrmask_atom
    assert masked.shape == atom.shape and masked.dtype == torch.int64
    assert (masked[batch.attrmask_index] == torch.tensor([119, 0])).all()
    rest = np.setdiff1d(np.arange(atom.shape[0]), batch.attrmask_index.numpy())
    assert torch.equal(masked[rest], atom[rest])
    graph_of_node = np.repeat(np.arange(len(samples)), n)
    assert np.bincount(graph_of_node[batch.attrmask_index.numpy()], minlength=len(samples)).tolist() == counts
    assert batch.attrmask_bond is None


def test_attrmask_edges_in_batch(molecules):
    ds = PretrainDataset(molecules, views="2d", attrmask=True, attrmask_edges=True, seed=2)
    batch = collate([ds[i] for i in range(len(ds))])
    src, dst = batch.graph_2d.edges()
    is_masked = torch.zeros(batch.graph_2d.num_nodes(), dtype=torch.bool)
    is_masked[batch.attrmask_index] = True
    expected = torch.nonzero(is_masked[src] | is_masked[dst]).flatten()
    assert torch.equal(batch.attrmask_edge_index, expected)
    assert torch.equal(batch.attrmask_edge_label, batch.graph_2d.edata["bond"][expected, 0])
    assert (batch.attrmask_bond[expected] == torch.tensor([5, 0])).all()


def test_contextpred_in_batch(molecules):
    ds = PretrainDataset(molecules, contextpred=True, mask_ratio=0.0, seed=4)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    valid = [b for b, s in enumerate(samples) if s.context.has_context]
    assert batch.cp_sample.tolist() == valid
    assert batch.cp_substruct.batch_size == batch.cp_context.batch_size == len(valid) == batch.cp_center.shape[0]
    sub_n = batch.cp_substruct.batch_num_nodes().numpy()
    ctx_n = batch.cp_context.batch_num_nodes().numpy()
    sub_off = np.concatenate([[0], np.cumsum(sub_n)[:-1]])
    ctx_off = np.concatenate([[0], np.cumsum(ctx_n)[:-1]])
    ov_seg = batch.cp_overlap_segment.numpy()
    ov_idx = batch.cp_overlap_index.numpy()
    assert np.all(np.diff(ov_seg) >= 0) and set(ov_seg.tolist()) == set(range(len(valid)))
    for k, b in enumerate(valid):
        pair = samples[b].context
        graph = samples[b].graph
        # centre: a node id inside the k-th substructure, holding the centre atom's features
        c = int(batch.cp_center[k])
        assert sub_off[k] <= c < sub_off[k] + sub_n[k]
        centre_atom = pair.substruct_atoms[c - sub_off[k]]
        np.testing.assert_array_equal(batch.cp_substruct.ndata["atom"][c], graph.atom_features[centre_atom])
        # overlap: node ids of the k-th context graph whose atoms are substructure atoms
        ov = ov_idx[ov_seg == k] - ctx_off[k]
        assert np.all((ov >= 0) & (ov < ctx_n[k]))
        atoms = pair.context_atoms[ov]
        assert set(atoms.tolist()) == set(pair.context_atoms.tolist()) & set(pair.substruct_atoms.tolist())
    # the salt's fragments are too small for a context ring: no pair
    salt_samples = [b for b, s in enumerate(samples) if s.mol_index == 2]
    assert salt_samples and not any(b in valid for b in salt_samples)


def test_contextpred_dodecane_by_hand():
    # heavy atoms only, no mask: ring r1=4 < d <= 7 around the drawn centre, checked by hand rules
    mol = Chem.MolFromSmiles("CCCCCCCCCCCC")
    f = graph_features(mol)
    m = Molecule(f.atomic_num, f.atom_features, f.edge_index, f.edge_features, np.zeros((0, 12, 3), np.float32),
                 np.zeros(0), np.zeros(0), np.zeros(0, np.int32), "CCCCCCCCCCCC", "test")
    ds = PretrainDataset([m], views="2d", mask_ratio=0.0, contextpred=True)
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[0]
        centre = int(s.context.substruct_atoms[s.context.center])
        d = np.abs(np.arange(12) - centre)
        np.testing.assert_array_equal(s.context.substruct_atoms, np.flatnonzero(d <= 5))
        np.testing.assert_array_equal(s.context.context_atoms, np.flatnonzero((d > 4) & (d <= 7)))
        np.testing.assert_array_equal(s.context.context_atoms[s.context.overlap], np.flatnonzero(d == 5))
        assert s.conf_index == -1 and s.pos is None


# ------------------------------------------------------------------------------------------------
# 2D-only data and errors
# ------------------------------------------------------------------------------------------------
def test_2d_view_without_positions(molecules):
    no_conf = make_molecule("CCO", 0)
    with pytest.raises(ValueError, match=r"molecule 1 \(CCO\)"):
        PretrainDataset([molecules[0], no_conf], views="2d3d")
    ds = PretrainDataset([molecules[0], no_conf], views="2d")
    assert len(ds) == 3 + 1
    s = ds[3]
    assert s.mol_index == 1 and s.conf_index == -1 and s.pos is None and s.edge_index_3d is None
    batch = collate([ds[0], s])
    assert batch.graph_3d is None and batch.conf_index.tolist() == [0, -1]


def test_bad_arguments(molecules):
    for kwargs, word in [
        ({"views": "3d"}, "views"),
        ({"conformer_sampling": "best"}, "conformer_sampling"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"cutoff": 0.0}, "cutoff"),
        ({"max_neighbors": 0}, "max_neighbors"),
        ({"attrmask": True, "attrmask_rate": 0.0}, "rate"),
    ]:
        with pytest.raises(ValueError, match=word):
            PretrainDataset(molecules, **kwargs)
    ds = PretrainDataset(molecules)
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    mixed = [ds[0], PretrainDataset(molecules, views="2d")[0]]
    with pytest.raises(ValueError, match="one dataset configuration"):
        collate(mixed)


def test_any_sequence_with_and_without_preload(molecules):
    class Seq:  # a minimal read-only sequence, like a ConformerStore
        def __len__(self):
            return len(molecules)

        def __getitem__(self, i):
            if not 0 <= i < len(molecules):
                raise IndexError(i)
            return molecules[i]

    a = PretrainDataset(Seq(), preload=True)
    b = PretrainDataset(Seq(), preload=False)
    c = PretrainDataset(molecules)
    assert isinstance(a.store, list) and isinstance(b.store, Seq)
    assert len(a) == len(b) == len(c) == 8
    assert all(same_sample(a[i], c[i]) and same_sample(b[i], c[i]) for i in range(8))
