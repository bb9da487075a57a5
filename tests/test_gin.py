"""GIN (DGL) against an independent dense plain-torch reference, upstream state-dict layout,
batching, JK modes, chirality mapping, feature overrides, dropout placement, readout, registry."""

import graphmvp  # noqa: F401  (before dgl)

import dgl
import numpy as np
import pytest
import torch
from rdkit import Chem

from graphmvp.features import graph_features
from graphmvp.models import GIN, GINConv, build_encoder, graph_readout

SMILES = [
    "C[C@H](N)O",  # chirality (CCW -> tag 2)
    "c1ccccc1O",  # aromatic bonds
    "F/C=C/F",  # bond direction 1
    "Cl/C=C/C=C\\Br",  # bond directions 1 and 2
    "[Na+].[O-]C(=O)c1ccccc1",  # salt: two fragments, double bond
    "[Na+]",  # single atom, no edges
    "C#N",  # triple bond
]


def mol_graph(smiles: str, hydrogens: bool = False) -> dgl.DGLGraph:
    mol = Chem.MolFromSmiles(smiles)
    if hydrogens:
        mol = Chem.AddHs(mol)
    f = graph_features(mol)
    g = dgl.graph(
        (torch.from_numpy(f.edge_index[0]), torch.from_numpy(f.edge_index[1])),
        num_nodes=f.num_atoms,
    )
    g.ndata["atom"] = torch.from_numpy(f.atom_features.astype(np.int64))
    g.edata["bond"] = torch.from_numpy(f.edge_features.astype(np.int64))
    return g


def randomise_batch_norms(model: GIN, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.batch_norms:
            d = bn.num_features
            bn.weight.copy_(1.0 + 0.3 * torch.randn(d, generator=gen))
            bn.bias.copy_(0.3 * torch.randn(d, generator=gen))
            bn.running_mean.copy_(0.5 * torch.randn(d, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(d, generator=gen))


def dense_reference(smiles: str, state: dict, num_layers: int, jk: str, hydrogens=False):
    """Plain-torch float64 GIN from the Hu et al. equations, with per-node count matrices.

    A[i, j]  = number of edges j -> i, plus 1 on the diagonal (self loop)
    T[i, t]  = number of edges into i with bond type t, plus 1 for type 4 (self loop)
    Dd[i, d] = number of edges into i with bond direction d, plus 1 for direction 0
    aggregate = A @ h + T @ E1 + Dd @ E2  (= sum over edges incl. self loop of h_j + E1 + E2)
    """
    mol = Chem.MolFromSmiles(smiles)
    if hydrogens:
        mol = Chem.AddHs(mol)
    f = graph_features(mol)
    sd = {k: v.detach().double() for k, v in state.items()}
    n = f.num_atoms
    A = torch.eye(n, dtype=torch.float64)
    T = torch.zeros(n, 6, dtype=torch.float64)
    Dd = torch.zeros(n, 3, dtype=torch.float64)
    T[:, 4] += 1
    Dd[:, 0] += 1
    for (src, dst), (btype, bdir) in zip(f.edge_index.T.tolist(), f.edge_features.tolist()):
        A[dst, src] += 1
        T[dst, btype] += 1
        Dd[dst, bdir] += 1
    atom_type = torch.tensor(f.atom_features[:, 0].astype(np.int64))
    chirality = torch.tensor(f.atom_features[:, 1].astype(np.int64))
    chirality[chirality == 3] = 0
    h = sd["x_embedding1.weight"][atom_type] + sd["x_embedding2.weight"][chirality]
    hs = [h]
    for layer in range(num_layers):
        p = f"gnns.{layer}."
        agg = A @ h + T @ sd[p + "edge_embedding1.weight"] + Dd @ sd[p + "edge_embedding2.weight"]
        z = torch.relu(agg @ sd[p + "mlp.0.weight"].T + sd[p + "mlp.0.bias"])
        z = z @ sd[p + "mlp.2.weight"].T + sd[p + "mlp.2.bias"]
        b = f"batch_norms.{layer}."
        z = (z - sd[b + "running_mean"]) / torch.sqrt(sd[b + "running_var"] + 1e-5)
        z = z * sd[b + "weight"] + sd[b + "bias"]
        if layer < num_layers - 1:
            z = torch.relu(z)
        h = z
        hs.append(h)
    if jk == "last":
        return hs[-1]
    if jk == "concat":
        return torch.cat(hs, dim=1)
    if jk == "max":
        return torch.stack(hs).max(dim=0).values
    if jk == "sum":
        return torch.stack(hs).sum(dim=0)
    raise AssertionError(jk)


def make_model(jk="last", num_layers=5, emb_dim=300, seed=0, **kw) -> GIN:
    torch.manual_seed(seed)
    model = GIN(num_layers=num_layers, emb_dim=emb_dim, jk=jk, **kw)
    randomise_batch_norms(model, seed)
    return model.eval()


def upstream_keys(num_layers=5, d=300):
    """The upstream GNN state dict, in order, as listed in GRAPHMVP.md."""
    keys = [("x_embedding1.weight", (120, d)), ("x_embedding2.weight", (3, d))]
    for i in range(num_layers):
        keys += [
            (f"gnns.{i}.mlp.0.weight", (2 * d, d)),
            (f"gnns.{i}.mlp.0.bias", (2 * d,)),
            (f"gnns.{i}.mlp.2.weight", (d, 2 * d)),
            (f"gnns.{i}.mlp.2.bias", (d,)),
            (f"gnns.{i}.edge_embedding1.weight", (6, d)),
            (f"gnns.{i}.edge_embedding2.weight", (3, d)),
        ]
    for i in range(num_layers):
        keys += [
            (f"batch_norms.{i}.weight", (d,)),
            (f"batch_norms.{i}.bias", (d,)),
            (f"batch_norms.{i}.running_mean", (d,)),
            (f"batch_norms.{i}.running_var", (d,)),
            (f"batch_norms.{i}.num_batches_tracked", ()),
        ]
    return keys


def test_state_dict_matches_upstream_layout():
    model = GIN()
    sd = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == upstream_keys()
    # an upstream-shaped checkpoint loads strictly and lands in the right places
    gen = torch.Generator().manual_seed(1)
    ckpt = {
        k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=gen))
        for k, s in upstream_keys()
    }
    fresh = GIN()
    fresh.load_state_dict(ckpt, strict=True)
    assert torch.equal(fresh.gnns[3].edge_embedding2.weight, ckpt["gnns.3.edge_embedding2.weight"])
    assert torch.equal(fresh.gnns[0].mlp[2].bias, ckpt["gnns.0.mlp.2.bias"])
    assert torch.equal(fresh.batch_norms[4].running_var, ckpt["batch_norms.4.running_var"])


def test_embedding_tables_xavier_initialised():
    torch.manual_seed(0)
    model = GIN(emb_dim=300)
    # xavier uniform bound sqrt(6 / (fan_in + fan_out)); nn.Embedding's default is N(0, 1)
    for table in (model.x_embedding1, model.gnns[0].edge_embedding1, model.gnns[0].edge_embedding2):
        rows, cols = table.weight.shape
        bound = (6.0 / (rows + cols)) ** 0.5
        assert table.weight.abs().max() <= bound
        assert table.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("jk", ["last", "concat", "max", "sum"])
def test_matches_dense_reference(jk):
    model = make_model(jk=jk, num_layers=5, emb_dim=300)
    state = model.state_dict()
    for smiles in SMILES:
        with torch.no_grad():
            out = model(mol_graph(smiles))
        ref = dense_reference(smiles, state, 5, jk).float()
        assert out.shape == ref.shape == (ref.shape[0], model.out_dim)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=f"{smiles} jk={jk}")


def test_matches_dense_reference_with_hydrogens_and_few_layers():
    model = make_model(num_layers=2, emb_dim=32, seed=3)
    with torch.no_grad():
        out = model(mol_graph("C[C@H](N)O", hydrogens=True))
    ref = dense_reference("C[C@H](N)O", model.state_dict(), 2, "last", hydrogens=True).float()
    assert out.shape == (11, 32)  # C, C, N, O + 7 H
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_batched_graph_equals_per_molecule():
    model = make_model()
    graphs = [mol_graph(s) for s in SMILES]
    with torch.no_grad():
        single = [model(g) for g in graphs]
        batched = model(dgl.batch(graphs))
    parts = torch.split(batched, [g.num_nodes() for g in graphs])
    for s, a, b in zip(SMILES, single, parts):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=s)


def test_conv_self_loop_on_isolated_atom():
    """With no edges, the aggregate is the self-loop message alone: mlp(h + E1[4] + E2[0])."""
    torch.manual_seed(0)
    conv = GINConv(8)
    g = dgl.graph(([], []), num_nodes=3)
    h = torch.randn(3, 8)
    bond = torch.zeros(0, 2, dtype=torch.long)
    expected = conv.mlp(h + conv.edge_embedding1.weight[4] + conv.edge_embedding2.weight[0])
    torch.testing.assert_close(conv(g, h, bond), expected)


def test_chirality_other_maps_to_unspecified():
    model = make_model(num_layers=2, emb_dim=16)
    g = mol_graph("C[C@H](N)O")
    atom = g.ndata["atom"].clone()
    atom[1, 1] = 3  # CHI_OTHER
    unspecified = atom.clone()
    unspecified[1, 1] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(g, atom=atom), model(g, atom=unspecified), atol=0, rtol=0)
        assert not torch.allclose(model(g), model(g, atom=unspecified))
    four = make_model(num_layers=2, emb_dim=16, num_chirality=4)
    assert four.x_embedding2.weight.shape == (4, 16)
    with torch.no_grad():
        assert not torch.allclose(four(g, atom=atom), four(g, atom=unspecified))


def test_explicit_features_override_graph_data():
    model = make_model(num_layers=3, emb_dim=16)
    g = mol_graph("c1ccccc1O")
    atom = g.ndata["atom"].clone()
    atom[[0, 6], 0] = 119  # mask token
    atom[[0, 6], 1] = 0
    bond = g.edata["bond"].clone()
    bond[:2, 0] = 5  # masked bond type
    g2 = mol_graph("c1ccccc1O")
    g2.ndata["atom"] = atom
    g2.edata["bond"] = bond
    with torch.no_grad():
        torch.testing.assert_close(model(g, atom=atom, bond=bond), model(g2), atol=0, rtol=0)
        assert not torch.allclose(model(g, atom=atom), model(g))
        assert not torch.allclose(model(g, bond=bond), model(g))
    assert torch.equal(g.ndata["atom"], mol_graph("c1ccccc1O").ndata["atom"])  # untouched


def test_dropout_is_applied_after_the_last_layer():
    # one layer: output = dropout(batch_norm(conv(x))) with no ReLU, so in training mode the
    # output is exactly the eval output with ~p of the entries zeroed and the rest scaled 1/(1-p)
    model = make_model(num_layers=1, emb_dim=64, dropout=0.5)
    g = dgl.batch([mol_graph(s) for s in SMILES])
    with torch.no_grad():
        ref = model(g)
        model.train()
        for bn in model.batch_norms:
            bn.eval()  # keep running statistics, only dropout is in training mode
        torch.manual_seed(0)
        out = model(g)
    dropped = out == 0
    assert 0.4 < dropped.float().mean() < 0.6
    assert (ref[dropped] != 0).all()
    torch.testing.assert_close(out[~dropped], 2.0 * ref[~dropped])


def test_relu_on_all_but_last_layer():
    model = make_model(num_layers=3, emb_dim=32, jk="concat")
    with torch.no_grad():
        out = model(dgl.batch([mol_graph(s) for s in SMILES]))
    hs = out.split(32, dim=1)
    assert (hs[1] >= 0).all() and (hs[2] >= 0).all()
    assert (hs[3] < 0).any()


def test_training_mode_runs_and_updates_batch_norm():
    model = GIN(num_layers=2, emb_dim=16).train()
    out = model(dgl.batch([mol_graph(s) for s in SMILES]))
    out.sum().backward()
    assert model.batch_norms[0].num_batches_tracked.item() == 1
    assert model.x_embedding1.weight.grad is not None


def test_jk_output_sizes():
    g = mol_graph("c1ccccc1O")
    for jk, dim in [("last", 16), ("concat", 16 * 4), ("max", 16), ("sum", 16)]:
        model = GIN(num_layers=3, emb_dim=16, jk=jk).eval()
        assert model.out_dim == dim
        assert model(g).shape == (7, dim)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"jk": "mean"}, "mean"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"emb_dim": 0}, "emb_dim"),
    ],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        GIN(**kwargs)


def test_bad_feature_shapes():
    model = GIN(num_layers=1, emb_dim=8)
    g = mol_graph("CO")
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        model(g, atom=g.ndata["atom"][:, 0])
    with pytest.raises(ValueError, match="edges"):
        model(g, bond=torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(KeyError, match="atom"):
        model(dgl.graph(([0], [1])))


def test_registry():
    model = build_encoder("gin", num_layers=2, emb_dim=8)
    assert isinstance(model, GIN) and model.num_layers == 2
    with pytest.raises(ValueError, match="'gim'.*gin.*schnet"):
        build_encoder("gim")


def test_graph_readout_modes():
    g = dgl.batch([dgl.graph(([0], [1]), num_nodes=2), dgl.graph(([], []), num_nodes=3)])
    h = torch.tensor([[1.0, -2.0], [3.0, 4.0], [0.0, 1.0], [6.0, -1.0], [-3.0, 0.0]])
    torch.testing.assert_close(graph_readout(g, h), torch.tensor([[2.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(graph_readout(g, h, "sum"), torch.tensor([[4.0, 2.0], [3.0, 0.0]]))
    torch.testing.assert_close(graph_readout(g, h, "max"), torch.tensor([[3.0, 4.0], [6.0, 1.0]]))
    assert "_readout_h" not in g.ndata
    with pytest.raises(ValueError, match="'median'.*mean, sum, max"):
        graph_readout(g, h, "median")
    with pytest.raises(ValueError, match="rows"):
        graph_readout(g, h[:4])
