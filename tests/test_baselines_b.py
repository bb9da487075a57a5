"""Baselines GPT-GNN, GraphLoG, G-Contextual and G-Motif: hand-derived inputs and losses, labels
carried through the subgraph mask, state restored by the state dict, and short runs of each
preset alone and with the 3D terms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from graphmvp.prep.store_writer import write_store
from graphmvp.chem.contextual import contextual_labels
from graphmvp.chem.functional_groups import functional_group_flags
from graphmvp.data.annotations import AtomLabels, build_labels
from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset, SampleInfo
from graphmvp.data.store import ConformerStore, Molecule
from graphmvp.features import graph_features, parse_smiles
from graphmvp.molgraph import MolGraph
from graphmvp.objectives.graphlog import (
    GraphLoG,
    ema_prototype_update,
    hierarchical_prototype_nce,
    inter_graph_nce,
    intra_graph_nce,
    rpcl_level,
)
from graphmvp.objectives.grover import GroverContextual, GroverMotif
from graphmvp.pretrain import pretrain, resolve_config
from graphmvp.pretrain.config import ConfigError
from graphmvp.pretrain.model import GraphMVPModel, dataset_options
from graphmvp.pretrain.presets import PRESETS
from graphmvp.pretrain.tasks import TASKS_2D
from graphmvp.pretrain.tasks.gptgnn import GenerationSteps, NextAtomSteps, bfs_order

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = [
    "CC(=O)Nc1ccc(O)cc1", "CCO", "CC(=O)O", "c1ccccc1O", "CCN(CC)CC", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "OCC(O)CO", "COc1ccccc1", "CC#N", "Nc1ccccc1C(=O)O", "O=C(O)c1ccccc1O", "CN1CCCC1c1cccnc1",
    "CC(C)(C)OC(=O)N", "ClCCl", "c1ccc2ccccc2c1", "CCOC(=O)C", "NC(=O)N", "CS(=O)C", "OC1CCCCC1", "Brc1ccccc1",
]
PARACETAMOL = SMILES[0]  # atoms: 0 C, 1 C, 2 O, 3 N, 4-7 c, 8 O, 9-10 c


def _molecule(i: int, smiles: str, rng, hydrogens: bool) -> Molecule:
    mol = parse_smiles(smiles)
    f = graph_features(Chem.AddHs(mol) if hydrogens else mol)
    n = f.atomic_num.shape[0]
    return Molecule(
        atomic_num=f.atomic_num, atom_features=f.atom_features, edge_index=f.edge_index,
        edge_features=f.edge_features, positions=(rng.normal(size=(1, n, 3)) * 1.5).astype(np.float32),
        energy=np.zeros(1), boltzmann_weight=np.ones(1), conf_source_index=np.zeros(1, np.int32),
        smiles=smiles, source_id=smiles, candidate_index=i,
    )


def _graph(smiles: str) -> MolGraph:
    return graph_features(parse_smiles(smiles))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """20 molecules with explicit hydrogens, one random conformer each, and their label sidecar."""
    path = tmp_path_factory.mktemp("baselines_b") / "mols.h5"
    rng = np.random.default_rng(0)
    write_store(path, [_molecule(i, s, rng, True) for i, s in enumerate(SMILES)], [], {"hydrogens": "keep"})
    build_labels(path, kinds=["contextual", "functional_groups"], min_count=1)
    return path


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory) -> Path:
    """The same molecules without hydrogens and without a label sidecar."""
    path = tmp_path_factory.mktemp("baselines_b_bare") / "bare.h5"
    rng = np.random.default_rng(1)
    write_store(path, [_molecule(i, s, rng, False) for i, s in enumerate(SMILES)], [], {"hydrogens": "drop"})
    return path


TINY = dict(num_layers=2, emb_dim=32, schnet_filters=16, schnet_interactions=1, schnet_gaussians=10,
            progress=False, log_every=1000, threads=1, deterministic=True)


def _config(store, out, preset, **kw):
    return resolve_config(preset, store=str(store), out=str(out), **{**TINY, **kw})


# -- GPT-GNN ----------------------------------------------------------------------------------------
class _FixedDraws:
    """A generator stand-in with given draws (checks what is asked)."""

    def __init__(self, integers: list[tuple[int, int]], choice=None):
        self._integers = list(integers)
        self._choice = choice

    def integers(self, n):
        want_n, value = self._integers.pop(0)
        assert n == want_n
        return value

    def choice(self, a, size, replace):
        want_a, want_size, values = self._choice
        assert (a, size, replace) == (want_a, want_size, False)
        return np.array(values)


def test_bfs_order_by_hand():
    g = _graph(PARACETAMOL)
    # from N (3): its neighbours 1, 4; then 1's 0, 2; 4's 5, 10; 5's 6; 10's 9; 6's 7; 7's 8
    assert bfs_order(11, g.edge_index, 3, _FixedDraws([])).tolist() == [3, 1, 4, 0, 2, 5, 10, 6, 9, 7, 8]
    salt = _graph("C[NH3+].[Cl-]")  # 0 C, 1 N, 2 Cl: from Cl the queue runs dry; the draw picks atom 1 of [0, 1]
    assert bfs_order(3, salt.edge_index, 2, _FixedDraws([(2, 1)])).tolist() == [2, 1, 0]


def test_next_atom_steps_by_hand():
    g = _graph(PARACETAMOL)
    # start atom 3, prefix lengths choice(10) -> [3, 1] + 1 = k in (2, 4)
    steps = NextAtomSteps(prefixes=2)(g, _FixedDraws([(11, 3)], (10, 2, [3, 1])))
    assert steps.order.tolist() == [3, 1, 4, 0, 2, 5, 10, 6, 9, 7, 8]
    assert steps.lengths.tolist() == [2, 4]
    # k=2: generate order[2] = atom 4 (aromatic C, type 5); k=4: order[4] = atom 2 (carbonyl O, type 7)
    assert steps.label.tolist() == [5, 7]
    assert steps.target.tolist() == [2, 4]
    first, second = steps.graphs
    # k=2: atoms (3, 1, 4) = N, C, masked; bonds N-C (single) and N-c4 (single) -> local (0,1), (0,2)
    assert first.atom_features.tolist() == [[6, 0], [5, 0], [119, 0]]
    assert sorted(map(tuple, first.edge_index.T.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    # k=4: atoms (3, 1, 4, 0, 2), the last (O) masked; bonds N-C1, N-c4, C1-C0, C1=O2
    assert second.atom_features[:, 0].tolist() == [6, 5, 5, 5, 119]
    assert second.atomic_num.tolist() == [7, 6, 6, 6, 8]  # the masked atom keeps its true Z
    edges = {tuple(e): tuple(b) for e, b in zip(second.edge_index.T.tolist(), second.edge_features.tolist())}
    assert set(edges) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (1, 4), (4, 1)}
    assert edges[(1, 4)][0] == 1  # the masked atom keeps its double bond to the prefix
    # graph context: the prefix alone (order[:k]), no masked atom
    plain = NextAtomSteps(prefixes=2, context="graph")(g, _FixedDraws([(11, 3)], (10, 2, [3, 1])))
    assert plain.target is None and plain.label.tolist() == [5, 7]
    assert [p.atom_features[:, 0].tolist() for p in plain.graphs] == [[6, 5], [6, 5, 5, 5]]


def test_generation_steps_collate_and_loss():
    graphs = [_graph(PARACETAMOL), _graph("CCO"), _graph("[Na+]")]
    transform = NextAtomSteps(prefixes=3)
    payloads = [transform(g, np.random.default_rng(i)) for i, g in enumerate(graphs)]
    assert [len(p.graphs) for p in payloads] == [3, 2, 0]  # CCO: 2 prefixes at most; one atom: none
    batch = GenerationSteps.collate(payloads, layout=None)
    sizes = [g.num_atoms for p in payloads for g in p.graphs]
    assert batch.graph.batch_size == 5 and batch.graph.batch_num_nodes().tolist() == sizes
    assert batch.sample.tolist() == [0, 0, 0, 1, 1]
    # every target is its graph's last node and carries the mask token; labels are the true types
    assert batch.target.tolist() == (np.cumsum(sizes) - 1).tolist()
    assert batch.graph.ndata["atom"][batch.target, 0].tolist() == [119] * 5
    want = [int(graphs[b].atom_features[p.order[k], 0]) for b, p in enumerate(payloads[:2]) for k in p.lengths]
    assert batch.label.tolist() == want


# -- GraphLoG: the losses on hand-made representations ---------------------------------------------
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def test_inter_graph_nce_matches_numpy():
    rng = np.random.default_rng(3)
    g, m = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss, acc = inter_graph_nce(torch.tensor(g), torch.tensor(m), tau=0.04)
    logits = _unit(m) @ _unit(g).T / 0.04
    want = np.mean([-_log_softmax(logits[j])[j] for j in range(4)])
    assert float(loss) == pytest.approx(want, rel=1e-9)
    assert float(acc) == pytest.approx(np.mean(logits.argmax(1) == np.arange(4)))


@pytest.mark.parametrize("positive", ["counterpart", "masked-set"])
def test_intra_graph_nce_matches_numpy(positive):
    rng = np.random.default_rng(4)
    h, hm = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    node_graph = np.array([0, 0, 0, 1, 1, 1, 1])
    masked = np.array([1, 3, 5])
    loss, acc = intra_graph_nce(torch.tensor(h), torch.tensor(hm), torch.tensor(node_graph), torch.tensor(masked),
                                tau=0.04, positive=positive)
    losses, hits = [], []
    for m in masked:
        atoms = np.flatnonzero(node_graph == node_graph[m])  # the atoms of m's molecule
        logits = _unit(h[atoms]) @ _unit(hm[m]) / 0.04
        pos = atoms == m if positive == "counterpart" else np.isin(atoms, masked)
        logp = _log_softmax(logits)
        losses.append(-np.log(np.exp(logp[pos]).sum()))
        hits.append(pos[logits.argmax()])
    assert float(loss) == pytest.approx(np.mean(losses), rel=1e-9)
    assert float(acc) == pytest.approx(np.mean(hits))


def _hierarchy():
    """3 levels of 2D prototypes (lowest first) with their parents."""
    top = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]          # row 2 inactive
    mid = [[1.0, 0.2], [1.0, -0.2], [0.2, 1.0]]          # parents 0, 0, 1
    low = [[1.0, 0.1], [1.0, 0.3], [1.0, -0.3], [0.1, 1.0]]  # parents 0, 0, 1, 2
    protos = torch.zeros(3, 4, 2, dtype=torch.float64)
    protos[0] = torch.tensor(low)
    protos[1, :3] = torch.tensor(mid)
    protos[2, :3] = torch.tensor(top)
    active = torch.tensor([[True] * 4, [True, True, True, False], [True, True, False, False]])
    parent = torch.tensor([[0, 0, 1, 2], [0, 0, 1, 0]])
    return protos, active, parent


def test_prototype_assignment_is_top_down():
    protos, active, parent = _hierarchy()
    z = torch.tensor([[1.0, 0.25], [1.0, -0.05], [0.5, 1.0]], dtype=torch.float64)
    _, chosen = hierarchical_prototype_nce(z, protos, active, parent, tau=0.04)
    # (1, 0.25): top 0 -> mid 0 -> low 1 (of low 0, 1). (1, -0.05): top 0 -> mid 1 (-11.3 deg is
    # nearer than +11.3) -> low 2, its only child, although low 0 is nearer overall. (0.5, 1): 1 -> 2 -> 3.
    assert chosen[2].tolist() == [0, 0, 1]
    assert chosen[1].tolist() == [0, 1, 2]
    assert chosen[0].tolist() == [1, 2, 3]


def test_prototype_loss_matches_numpy():
    protos, active, parent = _hierarchy()
    tau = 0.5
    z = np.array([[1.0, 0.25], [1.0, -0.05], [0.5, 1.0]])
    loss, _ = hierarchical_prototype_nce(torch.tensor(z), protos, active, parent, tau=tau)
    p = [_unit(protos[level].numpy()) for level in range(3)]
    act = active.numpy()
    par = parent.numpy()
    upper_picks = {1: [0, 0, 1], 0: [0, 1, 2]}  # the picks of level + 1 (test_prototype_assignment_is_top_down)
    want = 0.0
    for level, picks in ((2, [0, 0, 1]), (1, [0, 1, 2]), (0, [1, 2, 3])):
        terms = []
        for b in range(3):
            allowed = act[level].copy()
            if level < 2:  # the children of the level above's pick
                allowed &= par[level] == upper_picks[level][b]
            idx = np.flatnonzero(allowed)
            logits = _unit(z[b]) @ p[level][idx].T / tau
            terms.append(-_log_softmax(logits)[list(idx).index(picks[b])])
        want += np.mean(terms)
    for level in (0, 1):  # every active prototype against the level above, positive = its parent
        rows, upper = np.flatnonzero(act[level]), np.flatnonzero(act[level + 1])
        logits = p[level][rows] @ p[level + 1][upper].T / tau
        want += np.mean([-_log_softmax(logits[r])[list(upper).index(par[level, row])] for r, row in enumerate(rows)])
    assert float(loss) == pytest.approx(want, rel=1e-9)


def test_prototype_initialisation_steps_by_hand():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    counts = torch.zeros(2)
    ema_prototype_update(protos, counts, torch.tensor([[2.0, 0.1], [3.0, -0.1], [0.1, 5.0]]), decay=0.5)
    assert counts.tolist() == [2.0, 1.0]
    assert torch.allclose(protos, torch.tensor([[1.75, 0.0], [0.05, 3.0]]))
    # competitive learning: x0 = (1, 0) wins row 0 (stays), pushes the rival row 1 to (-0.5, 1.5);
    # x1 = (0.9, 0.1) wins row 0 -> (0.95, 0.05), pushes row 1 to (-1.2, 2.2)
    upper, active, parent = rpcl_level(torch.tensor([[1.0, 0.0], [0.9, 0.1]]),
                                       torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), rounds=1, decay=0.5)
    assert torch.allclose(upper, torch.tensor([[0.95, 0.05], [-1.2, 2.2], [-1.0, 0.0]]))
    assert active.tolist() == [True, False, False] and parent.tolist() == [0, 0]


def _graphlog_inputs(seed=0, d=8):
    rng = torch.Generator().manual_seed(seed)
    node_graph = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    h = torch.randn(9, d, generator=rng)
    hm = h + 0.3 * torch.randn(9, d, generator=rng)
    g = torch.stack([h[node_graph == b].mean(0) for b in range(3)])
    gm = torch.stack([hm[node_graph == b].mean(0) for b in range(3)])
    return h, hm, g, gm, node_graph, torch.tensor([1, 4, 6, 8])


def test_graphlog_state_dict_restores_the_prototypes():
    torch.manual_seed(0)
    objective = GraphLoG(emb_dim=8, num_prototypes=6, hierarchy=3, init_passes=2, rpcl_rounds=5)
    inputs = _graphlog_inputs()
    _, before = objective(*inputs)
    assert "graphlog_proto" not in before and not objective.prototypes_ready
    reps = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    objective.initialize_prototypes(lambda p: (reps[i : i + 10] for i in range(0, 40, 10)), torch.Generator().manual_seed(2))
    assert objective.prototypes_ready
    counts = objective.active_counts()
    assert 1 <= counts[0] <= 6 and all(c >= 1 for c in counts)
    # every active prototype below the top has an active parent
    for level in range(2):
        rows = torch.nonzero(objective.proto_active[level]).flatten()
        assert bool(objective.proto_active[level + 1, objective.proto_parent[level, rows]].all())
    loss, metrics = objective(*inputs)
    assert "graphlog_proto" in metrics
    assert float(loss) == pytest.approx(metrics["graphlog_node"] + metrics["graphlog_graph"] + 0.1 * metrics["graphlog_proto"], rel=1e-5)

    restored = GraphLoG(emb_dim=8, num_prototypes=6, hierarchy=3)
    assert not restored.prototypes_ready
    restored.load_state_dict(objective.state_dict())
    assert restored.prototypes_ready and restored.active_counts() == counts
    assert torch.equal(restored.proto_parent, objective.proto_parent)
    loss2, _ = restored(*inputs)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6)


def test_graphlog_hooks_initialise_once_and_alike(store):
    cfg = _config(store, "unused", "graphlog", options={"num_prototypes": 8, "init_passes": 2, "init_batch_size": 7})
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    objective = model.objectives["2d"]
    twin = GraphMVPModel(cfg)
    twin.load_state_dict(model.state_dict())
    dataset = PretrainDataset(ConformerStore(store), views="2d", mask_ratio=0.0, seed=5, **dataset_options(cfg))
    task = TASKS_2D.get("graphlog")
    task.begin_epoch(model, objective, dataset, 0)  # still the local phase
    assert not objective.prototypes_ready
    model.train()
    task.end_epoch(model, objective, dataset, 0)  # the last local epoch ends
    assert objective.prototypes_ready and model.training
    twin.begin_epoch(dataset, 1)  # a trainer without end_epoch: the same prototypes at epoch 1
    assert torch.equal(twin.objectives["2d"].prototypes, objective.prototypes)
    snapshot = objective.prototypes.detach().clone()
    task.begin_epoch(model, objective, dataset, 1)
    assert torch.equal(objective.prototypes, snapshot)  # initialised once


# -- G-Contextual and G-Motif ---------------------------------------------------------------------------
def test_sidecar_labels_follow_the_subgraph_mask(store):
    cfg = _config(store, "unused", "g-contextual", views="2d3d", loss="ebm-nce+vrr+g-contextual",
                  options={"label_rate": 0.5})
    motif_cfg = _config(store, "unused", "g-motif", views="2d3d", loss="ebm-nce+vrr+g-motif")
    transforms = dataset_options(cfg)["transforms"] + dataset_options(motif_cfg)["transforms"]
    molecules = list(ConformerStore(store))
    dataset = PretrainDataset(molecules, views="2d3d", mask_ratio=0.3, seed=1, transforms=transforms)
    table = AtomLabels.open(store, "contextual")
    vocab = table.vocab
    samples = [dataset[i] for i in range(6)]
    batch = collate(samples)
    chosen = batch.extras["g-contextual"]
    at = 0
    for b, s in enumerate(samples):
        payload = s.extras["g-contextual"]
        heavy = np.flatnonzero(s.graph.atom_features[:, 0] != 0)
        assert payload.index.shape[0] == math.ceil(0.5 * heavy.size)
        assert np.isin(payload.index, heavy).all()  # hydrogen rows are never chosen
        source = s.kept_atoms[payload.index]  # atom ids in the stored molecule = RDKit heavy-atom ids
        want = [contextual_labels(parse_smiles(SMILES[s.mol_index]))[a] for a in source]
        assert [vocab.keys[c] for c in payload.label] == want
        # in the batch: the chosen atoms' node ids point at atoms of the right element
        m = payload.index.shape[0]
        ids = chosen.index[at : at + m]
        assert (ids - batch.layout.node_offset[b]).tolist() == payload.index.tolist()
        types = batch.graph_2d.ndata["atom"][ids, 0].tolist()
        assert [Chem.GetPeriodicTable().GetElementSymbol(t + 1) for t in types] == [w.split("_")[0] for w in want]
        assert chosen.label[at : at + m].tolist() == payload.label.tolist()
        at += m
        flags = s.extras["g-motif"]
        assert flags.valid and np.array_equal(flags.flags, functional_group_flags(parse_smiles(SMILES[s.mol_index])))
    assert chosen.atom is None
    assert torch.equal(batch.extras["g-motif"].flags[2], torch.from_numpy(samples[2].extras["g-motif"].flags).float())


def test_contextual_masked_inputs():
    class _Table:
        def valid(self, i):
            return True

    class _Target:
        table = _Table()
        num_classes = 9

        def labels(self, graph, info):
            return np.arange(graph.num_atoms, dtype=np.int64)

    from graphmvp.pretrain.tasks.grover import ContextualAtoms

    transform = ContextualAtoms.__new__(ContextualAtoms)
    transform.label_rate, transform.mask_atoms, transform.target = 0.3, True, _Target()
    g = _graph(PARACETAMOL)
    info = SampleInfo(mol_index=0, conf_index=0, kept_atoms=np.arange(11), molecule=None, epoch=0)
    out = transform(g, np.random.default_rng(0), info)
    assert out.index.shape[0] == 4  # ceil(0.3 * 11)
    assert out.atom[out.index].tolist() == [[119, 0]] * 4
    rest = np.setdiff1d(np.arange(11), out.index)
    assert np.array_equal(out.atom[rest], g.atom_features[rest]) and out.label.tolist() == out.index.tolist()


def test_grover_heads_by_hand():
    head = GroverContextual(emb_dim=2, num_classes=3)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        head.classifier.bias.zero_()
    reps, label = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 2])
    loss, metrics = head(reps, label)
    want = np.mean([-_log_softmax(np.array([2.0, 0, 0]))[0], -_log_softmax(np.array([0.0, 1, 0]))[2]])
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert metrics["acc_g_contextual"] == 0.5 and metrics["g_contextual_other"] == 0.5

    motif = GroverMotif(emb_dim=1, num_groups=2)
    with torch.no_grad():
        motif.classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        motif.classifier.bias.zero_()
    loss, metrics = motif(torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    logits, flags = [[2, -2], [-1, 1]], [[1, 1], [0, 0]]
    want = -np.mean([math.log(sig(x)) if y else math.log(1 - sig(x)) for row, ys in zip(logits, flags) for x, y in zip(row, ys)])
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert metrics["acc_g_motif"] == 0.5 and metrics["acc_g_motif_present"] == 0.5


@pytest.mark.parametrize("preset", ["g-contextual", "g-motif"])
def test_missing_sidecar_names_the_command(bare_store, tmp_path, preset):
    with pytest.raises(ConfigError, match=f"graphmvp-prep labels {bare_store}"):
        pretrain(_config(bare_store, tmp_path / "run", preset, epochs=1, batch_size=10))


# -- presets: alone and with the 3D terms ---------------------------------------------------------
PRESET_OPTIONS = {
    "gpt-gnn": {"prefixes": 2},
    "graphlog": {"num_prototypes": 10, "init_passes": 2, "rpcl_rounds": 5},
    "g-contextual": {},
    "g-motif": {},
}


def test_presets_carry_the_papers_defaults():
    assert PRESETS["graphlog"]["batch_size"] == 512 and PRESETS["graphlog"]["epochs"] == 11
    assert PRESETS["graphlog"]["options"]["tau"] == 0.04 and PRESETS["graphlog"]["options"]["mask_rate"] == 0.3
    assert PRESETS["graphlog"]["options"]["num_prototypes"] == 50 and PRESETS["graphlog"]["options"]["hierarchy"] == 3
    assert (PRESETS["graphlog"]["options"]["w_node"], PRESETS["graphlog"]["options"]["w_graph"],
            PRESETS["graphlog"]["options"]["w_proto"]) == (1.0, 1.0, 0.1)
    assert PRESETS["g-contextual"]["options"] == {"label_rate": 0.15, "mask_atoms": False}
    for name in PRESET_OPTIONS:
        assert PRESETS[name]["views"] == "2d" and PRESETS[name]["loss"] == (name,)


@pytest.mark.parametrize("preset", list(PRESET_OPTIONS))
def test_preset_loss_decreases_on_a_tiny_store(store, tmp_path, preset):
    result = pretrain(_config(store, tmp_path / "run", preset, epochs=12, batch_size=10, lr=5e-3, seed=0,
                              options=PRESET_OPTIONS[preset]))
    losses = [row["loss_total"] for row in result.metrics]
    if preset == "graphlog":  # the prototype term joins after the first (local) epoch
        losses = losses[1:]
        state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
        assert bool(state["objectives.2d.proto_ready"])
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("preset", list(PRESET_OPTIONS))
def test_preset_runs_with_the_3d_terms(store, tmp_path, preset):
    cfg = _config(store, tmp_path / "run", preset, views="2d3d", loss=f"ebm-nce+vrr+{preset}", mask_ratio=0.15,
                  epochs=1, batch_size=8, options=PRESET_OPTIONS[preset])
    result = pretrain(cfg)
    row = result.metrics[-1]
    assert result.global_step == 3  # 20 molecules in batches of 8, 8, 4
    key = "loss_" + preset.replace("-", "_")
    for term in ("loss_ebm_nce", "loss_vrr", key):
        assert math.isfinite(row[term]), (term, row)
