"""The baselines EdgePred, Infomax, GraphCL and JOAO: their inputs and losses against hand-derived
or independent numpy values, JOAO's distribution update and its round trip, and short training
runs of every preset (2D only) and of every objective next to the 3D terms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import Molecule
from graphmvp.features import graph_features, parse_smiles
from graphmvp.molgraph import MolGraph
from graphmvp.objectives import OBJECTIVES
from graphmvp.objectives.edgepred import EdgePrediction
from graphmvp.objectives.graphcl import GraphCL, JOAO, joao_update, nt_xent, project_to_simplex
from graphmvp.objectives.infomax import Infomax
from graphmvp.pretrain import GraphMVPModel, dataset_options, pretrain, resolve_config
from graphmvp.pretrain.presets import PRESETS
from graphmvp.pretrain.tasks import task_options
from graphmvp.pretrain.tasks.edgepred import EdgePredSampler
from graphmvp.pretrain.tasks.joao import JOAOViews, eval_batches, eval_subset, joao_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = [
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "CC(=O)Nc1ccc(O)cc1", "c1ccccc1CCN", "OCC(O)CO", "COc1ccccc1",
    "Nc1ccccc1C(=O)O", "CCN(CC)CC", "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "C1CCCCC1O",
    "CCOC(=O)C", "c1ccc2ccccc2c1", "CC(C)O", "NCC(=O)O", "CC(N)C(=O)O", "O=C(O)CCC(=O)O", "Clc1ccccc1",
    "CC#N", "CSC", "c1ccncc1", "CCCCCCO", "OC1CCOC1", "CC(=O)C", "FC(F)(F)c1ccccc1",
]

TINY = dict(batch_size=8, num_layers=2, emb_dim=32, progress=False, log_every=1000, threads=1, deterministic=True)


def molecule(smiles: str, positions: np.ndarray | None = None) -> Molecule:
    f = graph_features(parse_smiles(smiles))
    n = f.atomic_num.shape[0]
    pos = np.zeros((0, n, 3), np.float32) if positions is None else positions
    c = pos.shape[0]
    return Molecule(
        atomic_num=f.atomic_num, atom_features=f.atom_features, edge_index=f.edge_index,
        edge_features=f.edge_features, positions=pos, energy=np.zeros(c), boltzmann_weight=np.ones(c) / max(c, 1),
        conf_source_index=np.zeros(c, np.int32), smiles=smiles, source_id=smiles, candidate_index=0,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """24 molecules (heavy atoms) with one random 'conformer' each: enough for SchNet to run."""
    from graphmvp.prep.store_writer import write_store

    rng = np.random.default_rng(0)
    mols = []
    for i, s in enumerate(SMILES):
        n = parse_smiles(s).GetNumAtoms()
        m = molecule(s, (rng.normal(size=(1, n, 3)) * 1.5).astype(np.float32))
        m.candidate_index = i
        mols.append(m)
    path = tmp_path_factory.mktemp("baselines_a") / "mols.h5"
    write_store(path, mols, [], {"hydrogens": "drop"})
    return path


def graph_of(smiles: str) -> MolGraph:
    return graph_features(parse_smiles(smiles))


# -- EdgePred --------------------------------------------------------------------------------------
def test_edgepred_sampler_negatives_are_non_bonds_with_the_documented_count():
    sampler = EdgePredSampler()
    # N0-C1-C2(=O3)-C4: 4 bonds, 6 non-bonded pairs -> 4 negatives
    free = {(0, 2), (0, 3), (0, 4), (1, 3), (1, 4), (3, 4)}
    for seed in range(10):
        pairs = sampler(graph_of("NCC(=O)C"), np.random.default_rng(seed))
        assert pairs.positive.T.tolist() == [[0, 1], [1, 2], [2, 3], [2, 4]]
        negatives = [tuple(p) for p in pairs.negative.T.tolist()]
        assert len(negatives) == 4 and len(set(negatives)) == 4 and set(negatives) <= free
    # C0-C1-O2: 2 bonds but a single non-bonded pair -> 1 negative
    pairs = sampler(graph_of("CCO"), np.random.default_rng(0))
    assert pairs.negative.T.tolist() == [[0, 2]]
    # N#N: no non-bonded pair at all
    assert sampler(graph_of("N#N"), np.random.default_rng(0)).negative.shape == (2, 0)


def test_edgepred_batch_offsets_and_loss_by_hand():
    mols = [molecule(s) for s in ("CCO", "NCC(=O)C")]
    ds = PretrainDataset(mols, views="2d", mask_ratio=0.0, seed=1, transforms=[EdgePredSampler()])
    batch = collate([ds[0], ds[1]])
    pairs = batch.extras["edgepred"]
    assert pairs.positive.T.tolist() == [[0, 1], [1, 2], [3, 4], [4, 5], [5, 6], [5, 7]]
    assert pairs.negative.shape == (2, 1 + 4)
    assert pairs.negative[:, 0].tolist() == [0, 2]
    assert bool((pairs.negative[:, 1:] >= 3).all())

    h = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, -1.0], [2.0, 1.0]])
    positive = torch.tensor([[0, 1], [1, 2]])  # pairs (0, 1), (1, 2): scores 0.5, -0.5
    negative = torch.tensor([[0, 2], [2, 3]])  # pairs (0, 2), (2, 3): scores 0, -1
    loss, metrics = EdgePrediction()(h, positive, negative)

    def softplus(x):
        return math.log1p(math.exp(x))

    expected = (softplus(-0.5) + softplus(0.5)) / 2 + (softplus(0.0) + softplus(-1.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["acc_edgepred"] == pytest.approx(2 / 4)  # positive 0.5 and negative -1 are right


# -- Infomax ---------------------------------------------------------------------------------------
def test_infomax_negatives_are_the_next_graphs_summary():
    # 3 molecules with 2, 1 and 2 nodes
    x = np.array([[1.0, -1.0], [3.0, 1.0], [0.5, 2.0], [-2.0, 0.0], [0.0, -4.0]])
    graph = np.array([0, 0, 1, 2, 2])
    s = {0: 1 / (1 + np.exp(-np.array([2.0, 0.0]))), 1: 1 / (1 + np.exp(-np.array([0.5, 2.0]))),
         2: 1 / (1 + np.exp(-np.array([-1.0, -2.0])))}
    following = {0: 1, 1: 2, 2: 0}  # cyclic next molecule
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 2))

    def softplus(v):
        return np.log1p(np.exp(v))

    pos = np.array([x[k] @ w @ s[graph[k]] for k in range(5)])
    neg = np.array([x[k] @ w @ s[following[graph[k]]] for k in range(5)])
    expected = softplus(-pos).mean() + softplus(neg).mean()
    objective = Infomax(emb_dim=2)
    with torch.no_grad():
        objective.weight.copy_(torch.from_numpy(w).float())
    loss, metrics = objective(torch.tensor(x, dtype=torch.float32), torch.from_numpy(graph), 3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert metrics["acc_infomax"] == pytest.approx(((pos > 0).sum() + (neg < 0).sum()) / 10)
    with pytest.raises(ValueError, match="at least 2"):
        objective(torch.tensor(x[:2], dtype=torch.float32), torch.zeros(2, dtype=torch.int64), 1)


# -- GraphCL's NT-Xent -----------------------------------------------------------------------------
def nt_xent_reference(z1, z2, t, symmetric, positive_in_denominator):
    a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)

    def one_way(s):
        losses, hits = [], []
        for i in range(s.shape[0]):
            others = [s[i, j] for j in range(s.shape[1]) if j != i]
            terms = others + ([s[i, i]] if positive_in_denominator else [])
            losses.append(-s[i, i] + np.log(np.sum(np.exp(terms))))
            hits.append(s[i, i] > max(others))
        return np.mean(losses), np.mean(hits)

    s = a @ b.T / t
    loss, acc = one_way(s)
    if symmetric:
        loss_t, acc_t = one_way(s.T)
        loss, acc = (loss + loss_t) / 2, (acc + acc_t) / 2
    return loss, acc


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("positive_in_denominator", [False, True])
def test_nt_xent_equals_an_independent_numpy_computation(symmetric, positive_in_denominator):
    rng = np.random.default_rng(3)
    z1 = rng.normal(size=(4, 3))
    z2 = z1 + 0.8 * rng.normal(size=(4, 3))
    loss, acc = nt_xent(torch.tensor(z1), torch.tensor(z2), 0.1, symmetric, positive_in_denominator)
    ref_loss, ref_acc = nt_xent_reference(z1, z2, 0.1, symmetric, positive_in_denominator)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-9)
    assert acc.item() == pytest.approx(ref_acc)


def test_graphcl_objective_projects_then_contrasts():
    objective = GraphCL(emb_dim=3, cl_temperature=0.1)
    assert isinstance(objective.projection[0], torch.nn.Linear) and isinstance(objective.projection[1], torch.nn.ReLU)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    loss, metrics = objective(z1, z2)
    with torch.no_grad():
        expected, acc = nt_xent(objective.projection(z1), objective.projection(z2), 0.1)
    assert loss.item() == pytest.approx(expected.item()) and metrics == {"acc_graphcl": float(acc)}
    loss.backward()
    assert objective.projection[0].weight.grad is not None


# -- JOAO's distribution update --------------------------------------------------------------------
def test_simplex_projection_by_hand_and_against_bisection():
    assert project_to_simplex(np.array([4 / 3, 7 / 3, 10 / 3])).tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert project_to_simplex(np.array([0.2, 0.3, 0.5])).tolist() == pytest.approx([0.2, 0.3, 0.5])
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.normal(size=25) * rng.choice([0.01, 1.0, 10.0])
        lo, hi = v.min() - 1, v.max()
        for _ in range(200):  # bisection on the threshold: sum(max(v - tau, 0)) = 1
            tau = (lo + hi) / 2
            lo, hi = (tau, hi) if np.maximum(v - tau, 0).sum() > 1 else (lo, tau)
        p = project_to_simplex(v)
        assert np.allclose(p, np.maximum(v - tau, 0), atol=1e-9)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0)


def test_joao_update_by_hand():
    uniform = np.full(3, 1 / 3)
    # losses (1, 2, 3), gamma 1, beta 1: Proj(u + L) = Proj(4/3, 7/3, 10/3) = (0, 0, 1)
    assert joao_update(uniform, [1, 2, 3], gamma=1.0).tolist() == pytest.approx([0, 0, 1])
    # beta = 1/gamma reaches the exact maximiser Proj(u + L / gamma): gamma 10 -> Proj(.4333, .5333, .6333)
    assert joao_update(uniform, [1, 2, 3], gamma=10.0, step_size=0.1).tolist() == pytest.approx(
        [0.7 / 3, 1.0 / 3, 1.3 / 3])
    # from a non-uniform p, gamma 0.5, beta 1: 0.5 p + 0.5 u + L = (.61667, .41667, .26667) -> minus 0.1
    p = joao_update(np.array([0.5, 0.3, 0.2]), [0.2, 0.1, 0.0], gamma=0.5)
    assert p.tolist() == pytest.approx([0.31 / 0.6, 0.19 / 0.6, 0.1 / 0.6])
    rng = np.random.default_rng(1)
    q = np.full(25, 1 / 25)
    for _ in range(10):
        q = joao_update(q, rng.normal(size=25), gamma=0.1)
        assert q.min() >= 0 and q.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="gamma"):
        joao_update(uniform, [1, 2, 3], gamma=0.0)


def test_joao_objective_buffer_updates_and_round_trips(tmp_path):
    objective = JOAO(emb_dim=4, gamma=1.0)
    assert objective.pair_probs.dtype == torch.float64 and objective.pair_probs.tolist() == pytest.approx([1 / 25] * 25)
    losses = np.zeros(25)
    losses[7] = 2.0
    new = objective.update_pair_probs(losses)
    assert new[7] == pytest.approx(1.0) and objective.pair_probs[7].item() == pytest.approx(1.0)
    torch.save(objective.state_dict(), tmp_path / "s.pt")
    restored = JOAO(emb_dim=4, gamma=1.0)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(restored.pair_probs, objective.pair_probs)


def test_eval_subset_and_batches():
    a = eval_subset(100, seed=3, fraction=0.1)
    assert a.shape == (10,) and np.array_equal(a, eval_subset(100, seed=3, fraction=0.1))
    assert not np.array_equal(a, eval_subset(100, seed=4, fraction=0.1))
    assert eval_subset(5, seed=0, fraction=0.1).shape == (2,)  # at least 2
    assert [list(r) for r in eval_batches(7, 3)] == [[0, 1, 2], [3, 4, 5, 6]]  # no batch of one
    assert [list(r) for r in eval_batches(6, 3)] == [[0, 1, 2], [3, 4, 5]]


def test_joao_hooks_update_p_without_side_effects_and_resume_hands_p_to_the_transform(store, tmp_path):
    cfg = resolve_config("joao", store=str(store), out=str(tmp_path / "run"), **TINY).resolved()
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    mols = [molecule(s) for s in SMILES]
    dataset = PretrainDataset(mols, views="2d", mask_ratio=0.0, seed=cfg.seed, conformer_sampling="random",
                              **dataset_options(cfg))
    transform = joao_transform(dataset)
    assert isinstance(transform, JOAOViews) and transform.num_pairs == 25 and transform.eval_batch_size == 8
    objective = model.objectives["2d"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    dataset.set_epoch(0)
    model.end_epoch(dataset, 0)
    p = objective.pair_probs.clone()
    assert p.sum().item() == pytest.approx(1.0) and p.min().item() >= 0
    assert not torch.allclose(p, torch.full_like(p, 1 / 25))  # the losses differ across pairs
    assert np.allclose(transform.probabilities, p.numpy())
    assert torch.equal(torch.get_rng_state(), rng_before)
    for key, value in model.state_dict().items():  # batch-norm statistics etc. untouched
        if key != "objectives.2d.pair_probs":
            assert torch.equal(value, before[key]), key
    # the same state gives the same update (fixed subset, seeded views)
    again = GraphMVPModel(cfg)
    again.load_state_dict(before)
    again.end_epoch(dataset, 0)
    assert torch.equal(again.objectives["2d"].pair_probs, p)

    # p survives a save/load and begin_epoch hands it to a fresh dataset's transform
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "last.pt")
    resumed = GraphMVPModel(cfg)
    resumed.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True))
    fresh = PretrainDataset(mols, views="2d", mask_ratio=0.0, seed=cfg.seed, conformer_sampling="random",
                            **dataset_options(cfg))
    assert np.allclose(joao_transform(fresh).probabilities, 1 / 25)
    fresh.set_epoch(1)
    resumed.begin_epoch(fresh, 1)
    assert np.array_equal(joao_transform(fresh).probabilities, p.numpy())
    drawn = {fresh[i].extras["joao"].pair for i in range(len(fresh))}
    assert drawn <= set(np.flatnonzero(p.numpy() > 0).tolist())


def test_task_options_reach_the_objectives(store, tmp_path):
    cfg = resolve_config("joao", store=str(store), out=str(tmp_path), options={"gamma": 1, "augmentations": ["node_drop", "subgraph"]}, **TINY)
    assert task_options(cfg)["augmentations"] == ("node_drop", "subgraph")
    model = GraphMVPModel(cfg)
    assert model.objectives["2d"].gamma == 1.0 and model.objectives["2d"].pair_probs.numel() == 4
    cfg = resolve_config("graphcl", store=str(store), out=str(tmp_path), options={"cl_temperature": 0.5}, **TINY)
    assert GraphMVPModel(cfg).objectives["2d"].temperature == 0.5
    assert PRESETS["graphcl"]["views"] == "2d" and PRESETS["joao"]["epochs"] == 100
    assert {"edgepred", "infomax", "graphcl", "joao"} <= set(OBJECTIVES.names())


# -- training runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, metric", [("edgepred", "acc_edgepred"), ("infomax", "acc_infomax"),
                                            ("graphcl", "acc_graphcl"), ("joao", "acc_joao")])
def test_preset_loss_decreases_on_a_tiny_store(store, tmp_path, preset, metric):
    result = pretrain(resolve_config(preset, store=str(store), out=str(tmp_path / preset), epochs=8, lr=5e-3, **TINY))
    losses = [row["loss_total"] for row in result.metrics]
    assert result.global_step == 8 * 3
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    assert all(metric in row for row in result.metrics)
    if preset == "joao":  # end_epoch ran and its p is in last.pt
        state = torch.load(result.last_checkpoint, weights_only=True)
        p = state["model"]["objectives.2d.pair_probs"]
        assert p.sum().item() == pytest.approx(1.0) and not torch.allclose(p, torch.full_like(p, 1 / 25))


@pytest.mark.parametrize("name", ["edgepred", "infomax", "graphcl", "joao"])
def test_objective_runs_next_to_the_3d_terms(store, tmp_path, name):
    cfg = resolve_config(None, views="2d3d", loss=f"ebm-nce+vrr+{name}", store=str(store), out=str(tmp_path / name),
                         epochs=1, max_steps=2, schnet_filters=16, schnet_interactions=1, schnet_gaussians=10, **TINY)
    result = pretrain(cfg)
    assert result.global_step == 2
    row = result.metrics[-1]
    key = "loss_" + name.replace("-", "_")
    assert math.isfinite(row[key]) and math.isfinite(row["loss_ebm_nce"]) and math.isfinite(row["loss_vrr"])
