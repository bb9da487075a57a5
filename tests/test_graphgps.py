"""GraphGPS (DGL): RWSE against closed forms, GINE against a dense reference, attention that stays
inside each molecule, permutation equivariance, feature overrides, the parameter budget, and the
encoder file round trip (save -> load_pretrained -> embed -> fine-tuning model)."""

from __future__ import annotations

import math

import graphmvp  # noqa: F401  (before dgl)

import dgl
import numpy as np
import pytest
import torch

from graphmvp.data.collate import batch_mol_graphs
from graphmvp.models import (
    GIN,
    GINEConv,
    GPSLayer,
    GraphGPS,
    PaddedLayout,
    batched_rwse,
    build_encoder,
    graph_readout,
    node_rwse,
    rwse,
)
from graphmvp.molgraph import MolGraph
from graphmvp.pretrained import featurize_smiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMILES = ["CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "[Na+].[O-]C(=O)c1ccccc1", "C1CC1", "c1ccc2ccccc2c1", "C#N"]


def small_gps(seed: int = 0, **kwargs) -> GraphGPS:
    """A small GraphGPS in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    args = dict(num_layers=2, emb_dim=24, hidden_dim=16, heads=4, attn_dropout=0.5)
    args.update(kwargs)
    model = GraphGPS(**args)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                d = m.num_features
                m.weight.copy_(1.0 + 0.3 * torch.randn(d, generator=gen))
                m.bias.copy_(0.3 * torch.randn(d, generator=gen))
                m.running_mean.copy_(0.3 * torch.randn(d, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(d, generator=gen))
    return model.eval()


def graphs(smiles=SMILES) -> list[MolGraph]:
    return [featurize_smiles(s, "drop") for s in smiles]


def undirected(n: int, bonds: list[tuple[int, int]]) -> np.ndarray:
    """edge_index [2, 2B] with both directions of each bond."""
    src = [a for a, b in bonds] + [b for a, b in bonds]
    dst = [b for a, b in bonds] + [a for a, b in bonds]
    return np.array([src, dst], dtype=np.int64)


def molgraph(n: int, bonds: list[tuple[int, int]]) -> MolGraph:
    edge_index = undirected(n, bonds)
    atom = np.stack([np.full(n, 5), np.zeros(n)], axis=1).astype(np.int64)  # carbons
    bond = np.zeros((edge_index.shape[1], 2), dtype=np.int64)
    return MolGraph(np.full(n, 6, np.uint8), atom, edge_index, bond)


# ------------------------------------------------------------------------------------- RWSE

PATH3 = (3, [(0, 1), (1, 2)])
TRIANGLE = (3, [(0, 1), (1, 2), (2, 0)])
RING6 = (6, [(i, (i + 1) % 6) for i in range(6)])


def test_rwse_closed_forms():
    k = np.arange(1, 21)
    # path a-b-c: an end atom is back at an end after every even number of steps, at itself with 1/2
    p = rwse(undirected(*PATH3), 3, 20)
    assert p.shape == (3, 20) and p.dtype == np.float32
    even = (k % 2 == 0).astype(float)
    np.testing.assert_allclose(p[0], 0.5 * even, atol=1e-7)
    np.testing.assert_allclose(p[2], 0.5 * even, atol=1e-7)
    np.testing.assert_allclose(p[1], even, atol=1e-7)
    # triangle: RW = (J - I) / 2, eigenvalues 1, -1/2, -1/2 -> p_k = (1 + 2 (-1/2)^k) / 3
    p = rwse(undirected(*TRIANGLE), 3, 20)
    for i in range(3):
        np.testing.assert_allclose(p[i], (1 + 2 * (-0.5) ** k) / 3, rtol=1e-6)
    # 6-ring: closed walks = sequences of k steps +-1 whose sum is 0 mod 6, each of probability 2^-k
    p = rwse(undirected(*RING6), 6, 20)
    expected = [sum(math.comb(n, m) for m in range(n + 1) if (2 * m - n) % 6 == 0) / 2**n for n in k]
    for i in range(6):
        np.testing.assert_allclose(p[i], expected, rtol=1e-6)
    assert p[0, 1] == pytest.approx(0.5) and p[0, 5] == pytest.approx(22 / 64)  # k=2: 2/4; k=6: 22/64
    # isolated atoms (no walk can start): zeros, documented convention
    np.testing.assert_array_equal(rwse(np.zeros((2, 0), dtype=np.int64), 2, 5), np.zeros((2, 5), np.float32))


def test_batched_rwse_is_block_diagonal_and_equals_numpy():
    mols = [molgraph(*PATH3), molgraph(*TRIANGLE), molgraph(1, []), molgraph(*RING6)] + graphs()
    g = batch_mol_graphs(mols)
    got = batched_rwse(g, 20)
    assert got.shape == (g.num_nodes(), 20) and got.dtype == torch.float32
    expected = np.concatenate([rwse(m.edge_index, m.num_atoms, 20) for m in mols])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # one molecule's encodings do not depend on its neighbours in the batch
    alone = batched_rwse(batch_mol_graphs([mols[1]]), 20)
    np.testing.assert_array_equal(alone.numpy(), got[3:6].numpy())


def test_batched_rwse_refuses_edges_between_molecules():
    g = batch_mol_graphs([molgraph(*PATH3), molgraph(*PATH3)])
    bad = dgl.graph((torch.tensor([0, 3]), torch.tensor([3, 0])), num_nodes=6)
    bad.set_batch_num_nodes(g.batch_num_nodes())
    bad.set_batch_num_edges(torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="between different molecules"):
        batched_rwse(bad, 4)


def test_node_rwse_uses_stored_encodings():
    g = batch_mol_graphs(graphs())
    stored = torch.rand(g.num_nodes(), 20)
    g.ndata["rwse"] = stored
    assert torch.equal(node_rwse(g, 20), stored)
    with pytest.raises(ValueError, match=r"has shape \(\d+, 20\), the encoder needs \[\d+, 16\]"):
        node_rwse(g, 16)


def test_encoder_reads_precomputed_rwse_and_matches_on_the_fly():
    model = small_gps()
    mols = graphs()
    g = batch_mol_graphs(mols)
    with torch.no_grad():
        on_the_fly = model(g)
        g.ndata["rwse"] = torch.from_numpy(np.concatenate([rwse(m.edge_index, m.num_atoms, 20) for m in mols]))
        precomputed = model(g)
        g.ndata["rwse"] = torch.zeros(g.num_nodes(), 20)
        wrong = model(g)
    torch.testing.assert_close(precomputed, on_the_fly, atol=1e-5, rtol=1e-5)
    assert (wrong - on_the_fly).abs().max() > 1e-2


# ------------------------------------------------------------------------------------- GINE


def test_gine_conv_matches_dense_reference():
    torch.manual_seed(0)
    g = batch_mol_graphs(graphs())
    d = 8
    conv = GINEConv(d)
    h = torch.randn(g.num_nodes(), d, dtype=torch.float64)
    e = torch.randn(g.num_edges(), d, dtype=torch.float64)
    conv = conv.double()
    out = conv(g, h, e)
    # reference: loop over edges j -> i, message ReLU(h_j + e_ji), sum at i, plus h_i; then the MLP
    src, dst = (t.tolist() for t in g.edges())
    agg = h.clone()
    for k, (j, i) in enumerate(zip(src, dst)):
        agg[i] = agg[i] + torch.clamp(h[j] + e[k], min=0)
    w1, b1 = conv.mlp[0].weight, conv.mlp[0].bias
    w2, b2 = conv.mlp[2].weight, conv.mlp[2].bias
    expected = torch.clamp(agg @ w1.T + b1, min=0) @ w2.T + b2
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    # atoms without bonds (the Na+ of the salt) get mlp(h_i)
    with pytest.raises(ValueError, match="edge features must have shape"):
        conv(g, h, e[:-1])


# -------------------------------------------------------------------------- attention / layer


def test_layer_attention_equals_per_molecule_attention():
    """Padded batched attention == nn.MultiheadAttention run on each molecule alone."""
    torch.manual_seed(0)
    layer = GPSLayer(16, 4, attn_dropout=0.5).eval()
    mols = graphs()
    g = batch_mol_graphs(mols)
    h = torch.randn(g.num_nodes(), 16)
    with torch.no_grad():
        got = layer.molecule_attention(h, PaddedLayout.of(g))
        start = 0
        for m in mols:
            x = h[start : start + m.num_atoms][None]
            alone, _ = layer.attention(x, x, x, need_weights=False)
            torch.testing.assert_close(got[start : start + m.num_atoms], alone[0], atol=1e-6, rtol=1e-5)
            start += m.num_atoms


def test_layer_has_no_gradient_path_across_molecules():
    torch.manual_seed(0)
    layer = GPSLayer(16, 4, attn_dropout=0.0).eval()
    g = batch_mol_graphs(graphs())
    h = torch.randn(g.num_nodes(), 16, requires_grad=True)
    e = torch.randn(g.num_edges(), 16)
    counts = g.batch_num_nodes().tolist()
    layer(g, h, e)[: counts[0]].sum().backward()
    assert h.grad[: counts[0]].abs().sum() > 0
    assert torch.count_nonzero(h.grad[counts[0] :]) == 0  # exactly zero: no path to other molecules


def test_padded_layout():
    g = batch_mol_graphs([molgraph(*PATH3), molgraph(1, []), molgraph(*RING6)])
    layout = PaddedLayout.of(g)
    assert layout.batch_size == 3 and layout.width == 6
    assert layout.graph_of_node.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2, 2]
    assert layout.position.tolist() == [0, 1, 2, 0, 0, 1, 2, 3, 4, 5]
    assert layout.key_padding_mask.sum(1).tolist() == [3, 5, 0]
    h = torch.arange(10.0)[:, None]
    assert torch.equal(layout.unpad(layout.pad(h)), h)


def test_a_molecule_without_atoms_does_not_poison_the_batch():
    empty = MolGraph(np.zeros(0, np.uint8), np.zeros((0, 2), np.int64), np.zeros((2, 0), np.int64),
                     np.zeros((0, 2), np.int64))
    g = batch_mol_graphs([featurize_smiles("CCO", "drop"), empty, featurize_smiles("C", "drop")])
    assert PaddedLayout.of(g).key_padding_mask[1].tolist() == [False, True, True]  # one key kept: no NaN row
    model = small_gps()
    for training in (True, False):
        model.zero_grad()
        model.train(training)
        out = model(g)
        out.sum().backward()
        assert out.shape == (4, 24) and torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------ encoder


def permuted(m: MolGraph, perm: np.ndarray, edge_perm: np.ndarray) -> MolGraph:
    """Atom ``perm[new] = old``; edges listed in the order ``edge_perm``."""
    inverse = np.argsort(perm)
    return MolGraph(m.atomic_num[perm], m.atom_features[perm], inverse[m.edge_index][:, edge_perm], m.edge_features[edge_perm])


def test_permutation_equivariance_within_molecules():
    model = small_gps()
    mols = graphs()
    rng = np.random.default_rng(0)
    perms = [rng.permutation(m.num_atoms) for m in mols]
    shuffled = [permuted(m, p, rng.permutation(m.num_edges)) for m, p in zip(mols, perms)]
    with torch.no_grad():
        out = model(batch_mol_graphs(mols))
        out_perm = model(batch_mol_graphs(shuffled))
    offsets = np.cumsum([0] + [m.num_atoms for m in mols])
    index = np.concatenate([offsets[b] + p for b, p in enumerate(perms)])
    torch.testing.assert_close(out_perm, out[torch.from_numpy(index)], atol=1e-5, rtol=1e-5)
    # order of the molecules in the batch does not matter either
    with torch.no_grad():
        reversed_out = model(batch_mol_graphs(mols[::-1]))
    torch.testing.assert_close(reversed_out[: mols[-1].num_atoms], out[offsets[-2] :], atol=1e-5, rtol=1e-5)


def test_no_attention_across_molecules_in_a_batch():
    model = small_gps()
    mols = graphs()
    changed = list(mols)
    changed[1] = featurize_smiles("CCCCCCCCCCCCCCCCCCCCC(=O)O", "drop")  # new atoms, and the largest molecule
    with torch.no_grad():
        out = model(batch_mol_graphs(mols))
        out_changed = model(batch_mol_graphs(changed))
    n = [m.num_atoms for m in mols]
    n_changed = [m.num_atoms for m in changed]
    before = torch.split(out, n)
    after = torch.split(out_changed, n_changed)
    for b in (0, 2, 3, 4, 5):
        assert (before[b] - after[b]).abs().max() <= 1e-6, b
    assert before[1].shape != after[1].shape


def test_feature_overrides_change_only_what_they_should():
    model = small_gps()
    mols = graphs()
    g = batch_mol_graphs(mols)
    n0 = mols[0].num_atoms
    atom = g.ndata["atom"].clone()
    bond = g.edata["bond"].clone()
    with torch.no_grad():
        base = model(g)
        same = model(g, atom=atom, bond=bond)
        atom[2] = torch.tensor([119, 0])  # mask token on atom 2 of molecule 0
        masked_atom = model(g, atom=atom)
        bond_masked = g.edata["bond"].clone()
        bond_masked[0] = torch.tensor([5, 0])  # mask bond type on edge 0 (molecule 0)
        masked_bond = model(g, bond=bond_masked)
        rows = model.atom_embedding(atom) != model.atom_embedding(g.ndata["atom"])
    assert torch.equal(same, base)
    assert rows.any(dim=1).nonzero().flatten().tolist() == [2]  # the input changes at atom 2 only
    for out in (masked_atom, masked_bond):
        assert (out[:n0] - base[:n0]).abs().max() > 1e-3  # the molecule sees it (attention: all its atoms)
        assert (out[n0:] - base[n0:]).abs().max() <= 1e-6  # the others do not
    # the graph's own features are not modified
    assert g.ndata["atom"][2, 0] != 119 and g.edata["bond"][0, 0] != 5
    with pytest.raises(ValueError, match="rows but the graph has"):
        model(g, atom=atom[:-1])


def test_default_fits_the_gin_budget():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    gin, gps = GIN(), GraphGPS()
    assert count(gin) == 5 * (300 * 600 + 600 + 600 * 300 + 300 + 9 * 300 + 2 * 300) + 123 * 300 == 1_857_900
    h = 192
    layer = 2 * (h * h + h) + 4 * h * h + 4 * h + 4 * h * h + 3 * h + 6 * h  # GINE MLP, MHA, FFN, 3 BN
    embeddings = (120 + 3 + 6 + 3) * h + 20 * h + h + h * 300 + 300  # tables, RWSE Linear, output
    assert count(gps) == 5 * layer + embeddings == 1_944_876
    assert count(GraphGPS(rwse_norm="batchnorm")) == 1_944_876 + 2 * 20  # GraphGPS's RWSE BatchNorm
    assert abs(count(gps) / count(gin) - 1) < 0.10
    assert (gps.num_layers, gps.emb_dim, gps.out_dim, gps.heads, gps.rwse_steps) == (5, 300, 300, 4, 20)
    assert gps.attn_dropout == 0.5 and gps.dropout == 0.0


def test_config_rebuilds_and_dropout_setter():
    model = small_gps(seed=3)
    cfg = model.config()
    assert all(isinstance(v, (int, float, str)) for v in cfg.values())
    rebuilt = build_encoder("graphgps", **cfg).eval()
    rebuilt.load_state_dict(model.state_dict())
    g = batch_mol_graphs(graphs())
    with torch.no_grad():
        assert torch.equal(rebuilt(g), model(g))
    model.dropout = 0.3
    assert all(layer.dropout == 0.3 for layer in model.layers) and model.config()["dropout"] == 0.3
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        model.dropout = 1.0
    with pytest.raises(ValueError, match="heads=3 must divide hidden_dim=16"):
        GraphGPS(hidden_dim=16, heads=3)
    gin = GIN(num_layers=2, emb_dim=8, jk="max")
    assert build_encoder("gin", **gin.config()).config() == gin.config()
    # hidden_dim None = emb_dim: no output projection
    assert isinstance(GraphGPS(num_layers=1, emb_dim=8, hidden_dim=None, heads=2).output, torch.nn.Identity)


def test_dropout_is_active_in_training_only():
    model = small_gps(dropout=0.5)
    g = batch_mol_graphs(graphs())
    with torch.no_grad():
        a, b = model(g), model(g)
        model.train()
        torch.manual_seed(0)
        c = model(g)
    assert torch.equal(a, b) and not torch.allclose(a, c)


# ----------------------------------------------------------------------- file round trip


def test_encoder_file_round_trip_embed_and_finetune(tmp_path):
    from graphmvp.finetune.errors import FinetuneError
    from graphmvp.finetune.model import FinetuneModel, build_encoder as finetune_encoder
    from graphmvp.pretrained import embed, load_pretrained, save_encoder_file

    model = small_gps(seed=5)
    config = {"encoder": "graphgps", **model.config(), "pooling": "mean", "hydrogens": "drop", "features": "hu-simple"}
    path = save_encoder_file(tmp_path / "model_2d.pt", model.state_dict(), config)

    loaded, cfg = load_pretrained(path)
    assert isinstance(loaded, GraphGPS) and not loaded.training and cfg["hidden_dim"] == 16
    z = embed(SMILES, loaded)
    assert z.shape == (len(SMILES), 24)
    g = batch_mol_graphs(graphs())
    with torch.no_grad():
        expected = graph_readout(g, model(g), "mean")
    torch.testing.assert_close(z, expected, atol=1e-6, rtol=1e-5)
    one = embed(SMILES[2], loaded)  # alone: the same embedding as in the batch
    torch.testing.assert_close(one[0], z[2], atol=1e-6, rtol=1e-5)

    encoder, info = finetune_encoder(str(tmp_path), dropout=0.2, quiet=True)  # a run folder
    assert isinstance(encoder, GraphGPS) and encoder.dropout == 0.2 and encoder.training
    assert info.config["encoder"] == "graphgps" and info.path.endswith("model_2d.pt")
    ft = FinetuneModel(encoder, num_tasks=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(ft.embed(g), expected, atol=1e-6, rtol=1e-5)
        assert ft(g).shape == (g.batch_size, 1)
    with pytest.raises(FinetuneError, match="encoder='graphgps' but 'gin' is required"):
        finetune_encoder(str(path), encoder="gin")
    with pytest.raises(FinetuneError, match="heads=4 but 2 is required"):
        finetune_encoder(str(path), encoder_options={"heads": 2})

    random_gps, info = finetune_encoder(None, encoder="graphgps", num_layers=1, emb_dim=8,
                                        encoder_options={"hidden_dim": 8, "heads": 2})
    assert isinstance(random_gps, GraphGPS) and info.config["encoder"] == "graphgps" and info.config["heads"] == 2
    with pytest.raises(FinetuneError, match="takes no jk"):
        finetune_encoder(None, encoder="graphgps", jk="max")
    with pytest.raises(FinetuneError, match="allowed: gin, graphgps"):
        finetune_encoder(None, encoder="schnet")


def test_pretraining_model_exports_a_loadable_graphgps(tmp_path):
    from graphmvp.pretrain.config import resolve_config
    from graphmvp.pretrain.model import GraphMVPModel, encoder_kwargs
    from graphmvp.pretrained import load_encoder_file

    cfg = resolve_config("attrmask", out=str(tmp_path / "run"), encoder_2d="graphgps", num_layers=2, emb_dim=24,
                         gps_hidden_dim=16, gps_heads=2, gps_attn_dropout=0.1, rwse_steps=8, gps_rwse_norm="batchnorm")
    assert encoder_kwargs(cfg, "2d") == {"num_layers": 2, "emb_dim": 24, "dropout": 0.0, "hidden_dim": 16,
                                         "heads": 2, "attn_dropout": 0.1, "rwse_steps": 8, "rwse_norm": "batchnorm"}
    torch.manual_seed(0)
    pre = GraphMVPModel(cfg)
    assert isinstance(pre.encoder_2d, GraphGPS)
    torch.save(pre.export_encoder_2d("keep"), tmp_path / "model_2d.pt")
    loaded, config = load_encoder_file(tmp_path / "model_2d.pt")
    assert config["encoder"] == "graphgps" and config["rwse_steps"] == 8 and config["attn_dropout"] == 0.1
    g = batch_mol_graphs(graphs())
    pre.encoder_2d.eval()
    with torch.no_grad():
        assert torch.equal(loaded(g), pre.encoder_2d(g))


def test_raw_rwse_keeps_odd_rings_in_range_where_batchnorm_running_stats_blow_them_up():
    """Odd-step return probabilities are 0 on every bipartite graph (chains, even rings). Trained
    on those alone, GraphGPS's RWSE BatchNorm has a running variance of ~eps on the odd steps, so in
    evaluation mode a 3-ring's input is scaled by ~1/sqrt(eps); the raw input (the default) stays
    within [0, 1] (what made FreeSolv's scaffold-split test RMSE 23 instead of 2, docs/methods.md)."""
    from graphmvp.models.rwse import node_rwse

    bipartite = batch_mol_graphs(graphs(["CCCC", "C1CCC1", "CCO", "c1ccccc1", "CC(C)C"]))
    ring3 = batch_mol_graphs(graphs(["C1CC1"]))
    assert float(node_rwse(bipartite, 20)[:, 0::2].abs().max()) == 0.0  # steps 1, 3, 5, ...: zero
    assert float(node_rwse(ring3, 20)[:, 2].min()) == pytest.approx(0.25)  # 2 closed 3-walks of 8
    scale = {}
    for norm in ("none", "batchnorm"):
        torch.manual_seed(0)
        model = GraphGPS(num_layers=1, emb_dim=16, hidden_dim=16, heads=2, rwse_steps=20, rwse_norm=norm)
        if norm == "batchnorm":
            model.rwse_norm.momentum = None  # running statistics = those of the one training batch
        model.train()
        with torch.no_grad():
            model.input_embedding(bipartite, bipartite.ndata["atom"])
        model.eval()
        with torch.no_grad():
            h_train = model.input_embedding(bipartite, bipartite.ndata["atom"])
            h_ring = model.input_embedding(ring3, ring3.ndata["atom"])
        scale[norm] = float(h_ring.abs().max() / h_train.abs().max())
    assert scale["none"] < 3
    assert scale["batchnorm"] > 20  # measured 34 (none: 0.72)
    with pytest.raises(ValueError, match="rwse_norm='layer': allowed: none, batchnorm"):
        GraphGPS(rwse_norm="layer")


def test_a_graphgps_file_from_before_rwse_norm_loads_with_its_batchnorm(tmp_path):
    """Files written before the option existed have RWSE BatchNorm weights and no ``rwse_norm``."""
    from graphmvp.pretrained import load_encoder_file, save_encoder_file

    old = GraphGPS(num_layers=1, emb_dim=8, hidden_dim=8, heads=2, rwse_steps=4, rwse_norm="batchnorm")
    cfg = {k: v for k, v in old.config().items() if k != "rwse_norm"}
    save_encoder_file(tmp_path / "old.pt", old.state_dict(),
                      {**cfg, "encoder": "graphgps", "pooling": "mean", "hydrogens": "drop", "features": "hu-simple"})
    loaded, config = load_encoder_file(tmp_path / "old.pt")
    assert config["rwse_norm"] == "batchnorm" and isinstance(loaded.rwse_norm, torch.nn.BatchNorm1d)
