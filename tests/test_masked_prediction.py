"""Masked-node prediction (objective ``attrmask``) along the masking-design study's axes: the
default reproduces AttrMask's numbers, the decoders and losses, learnable masking's gradient,
targets from the motif sidecar, configuration, and every preset's loss going down."""

from __future__ import annotations

import math

import numpy as np
import pytest
from molecule_fixture import molecule
import torch

from graphmvp.data.collate import collate  # first: graphmvp sets DGLBACKEND before dgl is imported
import dgl
from graphmvp.data.mask_distributions import LearnableMasking, PageRankMasking, UniformMasking, ceil_count
from graphmvp.data.mask_targets import AtomTypeTarget, build_mask_target
from graphmvp.data.pretrain_dataset import PretrainDataset
from graphmvp.data.store import ConformerStore
from graphmvp.objectives import OBJECTIVES
from graphmvp.objectives.attrmask import MaskedNodePrediction
from graphmvp.objectives.decoders import DECODER_LOSSES, LinearDecoder, ReMaskGNNDecoder, scaled_cosine_error
from graphmvp.pretrain import GraphMVPModel, dataset_options, pretrain, resolve_config
from graphmvp.pretrain.config import ConfigError, check_inputs
from graphmvp.pretrain.presets import PRESETS
from graphmvp.pretrain.tasks.attrmask import MASKED_NODES, MaskedNodeInputs, uses_builtin_attrmask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = [
    "CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "OCC(O)CO",
    "CC(=O)O", "COc1ccccc1", "CC#N", "Nc1ccccc1C(=O)O", "CCCCCC", "c1ccncc1", "CC(C)O", "O=C1CCCCC1",
    "CCOC(=O)C", "c1ccc2ccccc2c1",
]
TINY = dict(num_layers=2, emb_dim=16, progress=False, log_every=1000, threads=1, deterministic=True)


MOLS = [molecule(s) for s in SMILES[:6]]


def batch_of(cfg, mols=MOLS, epoch=0, **dataset_kw):
    kw = dict(views="2d", mask_ratio=0.0, conformer_sampling="random", seed=cfg.seed)
    kw.update(dataset_kw)
    ds = PretrainDataset(mols, **kw, **dataset_options(cfg))
    ds.set_epoch(epoch)
    return ds, collate([ds[i] for i in range(len(mols))])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The 16 molecules as a store without conformers (no hydrogens), with a motif sidecar."""
    from graphmvp.prep.store_writer import write_store
    from graphmvp.data.annotations import build_labels

    root = tmp_path_factory.mktemp("masked_prediction")
    path = root / "mols.h5"
    write_store(path, [molecule(s) for s in SMILES], [], {"hydrogens": "drop"}, command=["test"])
    bare = root / "bare.h5"  # the same store without a sidecar
    write_store(bare, [molecule(s) for s in SMILES], [], {"hydrogens": "drop"}, command=["test"])
    build_labels(path, kinds=["motif"], min_count=1)
    return path, bare


# -- the default is AttrMask --------------------------------------------------------------------------
def test_default_config_reproduces_the_old_attrmask_numbers():
    # Reference numbers computed with the code path BEFORE the study axes were added (commit
    # 775fa96: AttributeMasking = Linear(D, 119) + cross-entropy, dataset-built AttrMask inputs),
    # same molecules, seeds, model sizes and torch.manual_seed(0) before building the model.
    want = {0.15: 4.9761199951171875, 0.4: 5.065642833709717}
    want_index = {0.15: [2, 6, 8, 14, 18, 22, 25, 28, 32, 36, 45]}
    for rate, loss in want.items():
        cfg = resolve_config("attrmask", out="x", num_layers=2, emb_dim=16, attrmask_rate=rate, seed=3)
        assert uses_builtin_attrmask(cfg) and (cfg.mask_dist, cfg.target, cfg.decoder, cfg.decoder_loss) == (
            "uniform", "atom", "linear", "ce")
        torch.manual_seed(0)
        model = GraphMVPModel(cfg)
        _, batch = batch_of(cfg, epoch=2)
        assert MASKED_NODES not in batch.extras and batch.attrmask_index is not None
        out = model(batch)
        assert float(out.terms["attrmask"]) == pytest.approx(loss, rel=1e-6, abs=0)
        if rate in want_index:
            assert batch.attrmask_index.tolist() == want_index[rate]
    # the gradient path too: three Adam steps (lr 1e-2) on one batch, then the loss
    cfg = resolve_config("attrmask", out="x", num_layers=2, emb_dim=16, seed=3)
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    _, batch = batch_of(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        out = model(batch)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    # three float32 Adam steps amplify kernel rounding: an AVX-512/AMX machine gives 3.17516303 (1.5e-5
    # relative); a changed head, loss or initialisation is off by far more than 1e-4
    assert float(model(batch).total) == pytest.approx(3.1751153469085693, rel=1e-4, abs=0)
    # the head's state-dict keys are AttrMask's
    head_keys = sorted(k for k in model.state_dict() if k.startswith("objectives."))
    assert head_keys == ["objectives.2d.classifier.bias", "objectives.2d.classifier.weight"]
    assert isinstance(model.objectives["2d"].classifier, torch.nn.Linear)


def test_graphmvp_g_keeps_the_builtin_attrmask_and_runs_with_a_study_axis():
    mols = [molecule(s, conformers=1, seed=i) for i, s in enumerate(SMILES[:6])]
    assert uses_builtin_attrmask(resolve_config("graphmvp-g", out="x"))
    cfg = resolve_config("graphmvp-g", out="x", mask_dist="pagerank", **{k: TINY[k] for k in ("num_layers", "emb_dim")},
                         schnet_filters=8, schnet_interactions=1, schnet_gaussians=5)
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    _, batch = batch_of(cfg, mols, views="2d3d", mask_ratio=0.3)
    out = model(batch)
    assert set(out.terms) == {"ebm-nce", "vrr", "attrmask"} and torch.isfinite(out.total)
    # counts of the subgraph-masked graphs: ceil(0.15 n) each
    index = batch.extras[MASKED_NODES].index.numpy()
    per_graph = np.bincount(np.searchsorted(batch.layout.node_offset, index, side="right") - 1, minlength=6)
    assert per_graph.tolist() == [ceil_count(int(n), 0.15) for n in batch.layout.num_nodes]


# -- decoders and losses -------------------------------------------------------------------------------
def test_scaled_cosine_error_by_hand():
    x = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]])
    labels = torch.tensor([0, 2])
    # cos(x0, e0) = 1/3, cos(x1, e2) = 4/5
    assert float(DECODER_LOSSES["sce"](x, labels, 1.0)) == pytest.approx((2 / 3 + 1 / 5) / 2)
    assert float(DECODER_LOSSES["sce"](x, labels, 2.0)) == pytest.approx((4 / 9 + 1 / 25) / 2)
    z = torch.tensor([[2.0, 1.0, 2.0], [0.0, 3.0, 4.0]])  # cos = 8/9 and 1
    assert float(scaled_cosine_error(x, z, 3.0)) == pytest.approx(((1 / 9) ** 3 + 0.0) / 2, abs=1e-7)
    ce = DECODER_LOSSES["ce"](x, labels, 1.0)
    want = (-1 + math.log(math.e + 2 * math.e**2) + (-4 + math.log(1 + math.e**3 + math.e**4))) / 2
    assert float(ce) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        scaled_cosine_error(x, z[:1])


def _ring_graph():
    """Benzene-like 6-ring of carbons plus an O on atom 0: a DGL graph with 2D features."""
    bonds = [(i, (i + 1) % 6) for i in range(6)] + [(0, 6)]
    src = [u for u, v in bonds] + [v for u, v in bonds]
    dst = [v for u, v in bonds] + [u for u, v in bonds]
    g = dgl.graph((torch.tensor(src), torch.tensor(dst)), num_nodes=7)
    g.ndata["atom"] = torch.tensor([[5, 0]] * 6 + [[7, 0]])
    g.edata["bond"] = torch.tensor([[3, 0]] * 6 + [[0, 0]] + [[3, 0]] * 6 + [[0, 0]])
    return g


def test_gnn_decoder_remasks_with_the_dmask_vector():
    torch.manual_seed(0)
    g = _ring_graph()
    decoder = ReMaskGNNDecoder(4, 3)
    assert torch.equal(decoder.dmask.detach(), torch.zeros(4))  # GraphMAE's zeros at initialisation
    with torch.no_grad():
        decoder.dmask.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    masked = torch.tensor([1, 6])
    h = torch.randn(7, 4)
    out = decoder(h, masked, g)
    assert out.shape == (2, 3)
    # by hand: x = W PReLU(h); rows 1 and 6 replaced by DMASK; one GIN layer; linear to 3 classes
    x = decoder.enc_to_dec(decoder.activation(h)).detach().clone()
    x[1] = x[6] = decoder.dmask.detach()
    want = decoder.out(decoder.conv(g, x, g.edata["bond"]))[masked]
    torch.testing.assert_close(out, want)
    # the masked atoms' own encoder outputs are never read ...
    h2 = h.clone()
    h2[masked] = 100 * torch.randn(2, 4)
    torch.testing.assert_close(decoder(h2, masked, g), out)
    # ... but their neighbours' are, and DMASK is
    h3 = h.clone()
    h3[2] += 1.0
    assert not torch.allclose(decoder(h3, masked, g), out)
    with torch.no_grad():
        decoder.dmask.zero_()
    assert not torch.allclose(decoder(h, masked, g), out)
    with pytest.raises(ValueError, match="batch graph"):
        decoder(h, masked)


def test_linear_decoder_is_attrmasks_head():
    lin = LinearDecoder(3, 5)
    h = torch.randn(4, 3)
    torch.testing.assert_close(lin(h, torch.tensor([0, 2])), h[[0, 2]] @ lin.weight.T + lin.bias)
    assert set(lin.state_dict()) == {"weight", "bias"}


def test_objective_arguments_and_errors():
    assert OBJECTIVES.get("attrmask") is MaskedNodePrediction
    head = MaskedNodePrediction(emb_dim=3, decoder="gnn", decoder_loss="sce", num_classes=4)
    assert head.num_classes == 4 and head.scorer is None
    with pytest.raises(ValueError, match="decoder='gnn'"):
        MaskedNodePrediction(emb_dim=3, mask_dist="learnable")
    with pytest.raises(ValueError, match="allowed: linear, gnn|allowed: gnn, linear"):
        MaskedNodePrediction(emb_dim=3, decoder="mlp")
    with pytest.raises(ValueError, match="label sidecar"):
        MaskedNodePrediction(emb_dim=3, target="motif")  # no store given
    # weights of 1 at the unmasked atoms change nothing
    g = _ring_graph()
    torch.manual_seed(1)
    head = MaskedNodePrediction(emb_dim=4, decoder="gnn", decoder_loss="sce")
    h, masked, labels = torch.randn(7, 4), torch.tensor([0, 3]), torch.tensor([5, 5])
    plain = head(h, masked, labels, graph=g)[0]
    torch.testing.assert_close(head(h, masked, labels, graph=g, node_weight=torch.ones(7))[0], plain)
    weights = torch.rand(7)
    weights[masked] = 7.0  # masked atoms are never weighted
    scaled = h * weights.unsqueeze(1)
    scaled[masked] = h[masked]
    torch.testing.assert_close(head(h, masked, labels, graph=g, node_weight=weights)[0], head(scaled, masked, labels, graph=g)[0])


# -- learnable masking ------------------------------------------------------------------------------------
def test_learnable_scorer_receives_gradient_and_masks_like_the_numpy_distribution():
    cfg = resolve_config("structmae-l", out="x", epochs=4, **{k: TINY[k] for k in ("num_layers", "emb_dim")})
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    objective = model.objectives["2d"]
    assert objective.scorer is not None and objective.learnable_alpha == 0.5
    assert any(k.startswith("objectives.2d.scorer.") for k in model.state_dict())  # saved in last.pt
    assert {g["name"] for g in model.parameter_groups(1e-3, 0.1, 0.1) if any(p is next(objective.scorer.parameters()) for p in g["params"])} == {"heads"}
    ds, batch = batch_of(cfg, epoch=3)
    inputs = batch.extras[MASKED_NODES]
    assert inputs.index is None and inputs.noise.shape == (batch.graph_2d.num_nodes(),)
    out = model(batch)
    out.total.backward()
    for part in (objective.scorer.gnn, objective.scorer.mlp):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # the training step's choice equals LearnableMasking.sample with the same scores and draws
    with torch.no_grad():
        scores = objective.scorer(batch.graph_2d).double().numpy()
    from graphmvp.pretrain.tasks.attrmask import learnable_mask

    chosen = learnable_mask(torch.from_numpy(scores), inputs, 0.5).numpy()
    dist = LearnableMasking(0.5, total_epochs=4)
    offsets = batch.layout.node_offset
    for i in range(len(MOLS)):
        n = MOLS[i].num_atoms
        local = dist.sample(MOLS[i], ds.sample_rng(i), 3, scores=scores[offsets[i]:offsets[i] + n])
        mine = chosen[(chosen >= offsets[i]) & (chosen < offsets[i] + n)] - offsets[i]
        np.testing.assert_array_equal(mine, local)
        assert local.shape == (ceil_count(n, 0.5),)


# -- dataset-side inputs ----------------------------------------------------------------------------------
def test_pagerank_inputs_mask_the_documented_count_and_the_encoder_sees_the_mask():
    cfg = resolve_config("structmae-p", out="x", epochs=10, **{k: TINY[k] for k in ("num_layers", "emb_dim")})
    assert not uses_builtin_attrmask(cfg)
    ds, batch = batch_of(cfg, epoch=7)
    inputs = batch.extras[MASKED_NODES]
    sizes = batch.layout.num_nodes
    graph_of = np.repeat(np.arange(len(sizes)), sizes)
    assert np.bincount(graph_of[inputs.index.numpy()], minlength=len(sizes)).tolist() == [ceil_count(int(n), 0.5) for n in sizes]
    torch.testing.assert_close(inputs.target, batch.graph_2d.ndata["atom"][:, 0])
    # each sample's mask is PageRankMasking's draw from that sample's generator
    dist = PageRankMasking(0.5, total_epochs=10)
    for i in range(len(MOLS)):
        local = dist.sample(MOLS[i], ds.sample_rng(i), 7)
        np.testing.assert_array_equal(inputs.index.numpy()[graph_of[inputs.index.numpy()] == i] - batch.layout.node_offset[i], local)
    # the encoder pass sees type 119 / chirality 0 exactly at the masked atoms
    torch.manual_seed(0)
    model = GraphMVPModel(cfg)
    seen = {}
    encoder = model.encoder_2d
    forward = encoder.forward

    def spy(g, atom=None, bond=None):
        seen["atom"] = atom
        return forward(g, atom=atom, bond=bond)

    encoder.forward = spy
    loss = model(batch).terms["attrmask"]
    masked = torch.zeros(batch.graph_2d.num_nodes(), dtype=torch.bool)
    masked[inputs.index] = True
    assert (seen["atom"][masked] == torch.tensor([119, 0])).all()
    assert torch.equal(seen["atom"][~masked], batch.graph_2d.ndata["atom"][~masked])
    assert torch.isfinite(loss)


def test_uniform_transform_draws_equal_the_builtin_attrmask():
    builtin = PretrainDataset(MOLS, views="2d", mask_ratio=0.0, seed=4, attrmask=True, attrmask_rate=0.15)
    plugged = PretrainDataset(MOLS, views="2d", mask_ratio=0.0, seed=4,
                              transforms=[MaskedNodeInputs(UniformMasking(0.15), AtomTypeTarget())])
    for i in range(len(MOLS)):
        a, b = builtin[i].attrmask, plugged[i].extras[MASKED_NODES]
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.label, b.target[b.index])


# -- the motif target ----------------------------------------------------------------------------------------
def test_motif_target_reads_the_sidecar_through_kept_atoms(store):
    from graphmvp.data.annotations import AtomLabels

    path, bare = store
    target = build_mask_target("motif", path)
    table = AtomLabels.open(path, "motif")
    assert target.num_classes == table.num_classes > 2
    with ConformerStore(path) as molecules:
        ds = PretrainDataset(molecules, views="2d", mask_ratio=0.4, seed=1,
                             transforms=[MaskedNodeInputs(UniformMasking(0.3), target)])
    for i in (2, 4, 15):
        sample = ds[i]
        assert sample.kept_atoms.shape[0] < table.labels(i).shape[0]  # a subgraph: labels follow kept atoms
        np.testing.assert_array_equal(sample.extras[MASKED_NODES].target, table.labels(i)[sample.kept_atoms])
    # a missing sidecar is a one-line error naming the command that builds it
    cfg = resolve_config("motif-mae", out=str(path.parent / "run"), store=str(bare))
    with pytest.raises(ConfigError, match="--target motif: .*graphmvp-prep labels .*bare.h5 --kinds motif"):
        check_inputs(cfg)
    check_inputs(resolve_config("motif-mae", out=str(path.parent / "run"), store=str(path)))


# -- configuration ---------------------------------------------------------------------------------------------
def test_config_fields_flags_and_errors():
    from graphmvp.pretrain.cli import config_from_args

    cfg, _ = config_from_args(["--out", "x", "--views", "2d", "--loss", "attrmask", "--mask-rate", "0.3", "--mask-dist",
                               "pagerank", "--target", "atom", "--decoder", "gnn", "--decoder-loss", "sce",
                               "--opt", "pagerank_alpha=0.5", "--opt", "curriculum=false"])
    assert (cfg.attrmask_rate, cfg.mask_dist, cfg.decoder, cfg.decoder_loss) == (0.3, "pagerank", "gnn", "sce")
    assert cfg.options == {"pagerank_alpha": 0.5, "curriculum": False}
    with pytest.raises(ConfigError, match="--mask-dist='degree': allowed: learnable, pagerank, uniform"):
        resolve_config("attrmask", mask_dist="degree")
    with pytest.raises(ConfigError, match="--decoder-loss='mse': allowed: ce, sce"):
        resolve_config("attrmask", decoder_loss="mse")
    with pytest.raises(ConfigError, match="--mask-dist learnable needs --decoder gnn"):
        resolve_config("attrmask", mask_dist="learnable")
    with pytest.raises(ConfigError, match="--target motif: set masked-node prediction, but --loss contextpred has no attrmask"):
        resolve_config("contextpred", target="motif")
    with pytest.raises(ConfigError, match="has no option 'alpha'"):
        resolve_config("structmae-p", options={"alpha": 0.3})


def test_presets_hold_the_papers_settings():
    p, l, g, m = (resolve_config(name, out="x") for name in ("structmae-p", "structmae-l", "graphmae", "motif-mae"))
    assert (p.mask_dist, p.attrmask_rate, p.decoder, p.decoder_loss, p.options["pagerank_alpha"]) == ("pagerank", 0.5, "gnn", "sce", 0.25)
    assert (l.mask_dist, l.attrmask_rate, l.decoder, l.options["learnable_alpha"]) == ("learnable", 0.5, "gnn", 0.5)
    assert (g.mask_dist, g.attrmask_rate, g.decoder, g.decoder_loss, g.options["sce_gamma"]) == ("uniform", 0.25, "gnn", "sce", 1.0)
    assert uses_builtin_attrmask(g)  # GraphMAE masks int(0.25 n + 1) atoms uniformly, as AttrMask does
    assert (m.target, m.mask_dist, m.decoder, m.attrmask_rate) == ("motif", "uniform", "linear", 0.15)
    for c in (p, l, g, m):
        assert (c.views, c.loss, c.epochs, c.batch_size, c.lr) == ("2d", ("attrmask",), 100, 256, 1e-3)
    assert {"structmae-p", "structmae-l", "graphmae", "motif-mae"} <= set(PRESETS)


@pytest.mark.parametrize("preset", ["structmae-p", "structmae-l", "graphmae", "motif-mae"])
def test_preset_loss_decreases_on_a_tiny_store(store, tmp_path, preset):
    path, _ = store
    cfg = resolve_config(preset, store=str(path), out=str(tmp_path / preset), epochs=12, batch_size=8, lr=5e-3,
                         emb_dim=32, **{k: v for k, v in TINY.items() if k != "emb_dim"})
    result = pretrain(cfg)
    losses = [float(row["loss_attrmask"]) for row in result.metrics]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    state = torch.load(result.last_checkpoint, weights_only=True)
    has_scorer = any(k.startswith("objectives.2d.scorer.") for k in state["model"])
    assert has_scorer == (preset == "structmae-l")
