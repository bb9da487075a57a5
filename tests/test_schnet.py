"""SchNet encoder: a plain-torch reference on a small configuration, the Gaussian basis,
edge direction, E(3) and permutation invariance, batching, gradients."""

import graphmvp  # noqa: F401  (before dgl)

import math

import dgl
import numpy as np
import pytest
import torch

from graphmvp.data.neighbors import radius_neighbors
from graphmvp.models import SchNetEncoder, build_encoder, graph_readout


def graph3d(z, pos, cutoff=10.0, max_neighbors=32):
    """3D graph contract: edges src = neighbour j -> dst = centre i."""
    pos = np.asarray(pos, dtype=np.float32)
    idx_i, idx_j = radius_neighbors(pos, cutoff=cutoff, max_neighbors=max_neighbors)
    g = dgl.graph((torch.from_numpy(idx_j), torch.from_numpy(idx_i)), num_nodes=len(z))
    g.ndata["Z"] = torch.as_tensor(np.asarray(z), dtype=torch.long)
    g.ndata["pos"] = torch.from_numpy(pos)
    return g


def random_molecule(n, seed, scale=2.0):
    rng = np.random.default_rng(seed)
    z = rng.choice([1, 6, 7, 8, 9, 16, 35], size=n)
    pos = rng.normal(scale=scale, size=(n, 3))
    return z, pos


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SchNetEncoder().eval()


def test_gaussian_basis_matches_upstream(model):
    rbf = model.schnet.radial_basis
    assert rbf.n_rbf == 51
    torch.testing.assert_close(rbf.offsets, torch.linspace(0.0, 10.0, 51))
    # upstream GaussianSmearing: coefficient -0.5 / spacing**2 = -0.5 / 0.2**2 = -12.5
    torch.testing.assert_close(model.gaussian_coefficient, torch.full((51,), -12.5))
    assert model.schnet.cutoff_fn.cutoff.item() == 10.0
    assert model.embedding.weight.shape == (120, 300)
    assert len(model.schnet.interactions) == 6
    assert model.schnet.interactions[0].in2f.weight.shape == (128, 300)


def reference_forward(enc: SchNetEncoder, z, pos, cutoff):
    """SchNet from its equations in float64, over all pairs closer than the cutoff."""
    p = {k: v.detach().double() for k, v in enc.state_dict().items()}

    def ssp(x):
        return torch.nn.functional.softplus(x) - math.log(2.0)

    def lin(x, name, bias=True):
        y = x @ p[name + ".weight"].T
        return y + p[name + ".bias"] if bias else y

    n_rbf = enc.schnet.radial_basis.n_rbf
    mu = torch.linspace(0.0, cutoff, n_rbf, dtype=torch.float64)
    width = cutoff / (n_rbf - 1)
    pos = torch.as_tensor(pos, dtype=torch.float64)
    x = p["schnet.embedding.weight"][torch.as_tensor(z)]
    n = len(z)
    for k in range(len(enc.schnet.interactions)):
        b = f"schnet.interactions.{k}."
        y = lin(x, b + "in2f", bias=False)
        agg = torch.zeros(n, y.shape[1], dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                d = torch.linalg.norm(pos[j] - pos[i])
                if i == j or d >= cutoff:
                    continue
                rbf = torch.exp(-0.5 / width**2 * (d - mu) ** 2)
                w = lin(ssp(lin(rbf, b + "filter_network.0")), b + "filter_network.1")
                w = w * 0.5 * (torch.cos(d * math.pi / cutoff) + 1.0)
                agg[i] += y[j] * w
        x = x + lin(ssp(lin(agg, b + "f2out.0")), b + "f2out.1")
    return lin(ssp(lin(x, "head.0")), "head.2")


def test_matches_plain_torch_reference():
    torch.manual_seed(1)
    enc = SchNetEncoder(hidden=16, n_filters=8, n_interactions=2, n_gaussians=11, cutoff=5.0)
    with torch.no_grad():  # schnetpack initialises biases to zero; make them matter
        for name, param in enc.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.3)
    z = np.array([8, 1, 1, 6, 17])
    pos = np.array(
        [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [2.5, 1.0, -0.5], [0.0, 0.0, 5.2]]
    )  # atom 4 is beyond the cutoff of atoms 0, 1, 2 and within that of atom 3
    out = enc(graph3d(z, pos, cutoff=5.0))
    ref = reference_forward(enc, z, pos.astype(np.float32), 5.0).float()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_messages_flow_from_src_to_dst(model):
    """Edge j -> i changes atom i only: src is the neighbour j, dst the centre i."""
    z = torch.tensor([6, 8])
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]])

    def run(src, dst):
        edges = (torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long))
        g = dgl.graph(edges, num_nodes=2)
        g.ndata["Z"], g.ndata["pos"] = z, pos
        with torch.no_grad():
            return model(g)

    alone = run([], [])
    one_way = run([0], [1])
    torch.testing.assert_close(one_way[0], alone[0], atol=0, rtol=0)
    assert (one_way[1] - alone[1]).abs().max() > 1e-3
    # without edges, the atoms differ only through their embedding rows (true Z is used)
    assert not torch.allclose(alone[0], alone[1])


def test_invariant_to_rotation_reflection_and_translation(model):
    z, pos = random_molecule(40, seed=0, scale=2.5)
    rng = np.random.default_rng(1)
    for proper in (True, False):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        if (np.linalg.det(q) > 0) != proper:
            q[:, 0] *= -1
        moved = pos @ q.T + rng.normal(scale=5.0, size=3)
        with torch.no_grad():
            a = model(graph3d(z, pos))
            b = model(graph3d(z, moved))
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_invariant_to_edge_order(model):
    z, pos = random_molecule(40, seed=2, scale=2.5)
    g = graph3d(z, pos)
    assert g.in_degrees().max() == 32  # the cap is active
    src, dst = g.edges()
    perm = torch.from_numpy(np.random.default_rng(3).permutation(g.num_edges()))
    h = dgl.graph((src[perm], dst[perm]), num_nodes=g.num_nodes())
    h.ndata.update(g.ndata)
    with torch.no_grad():
        torch.testing.assert_close(model(h), model(g), atol=1e-5, rtol=1e-5)


def test_equivariant_to_atom_relabelling(model):
    z, pos = random_molecule(25, seed=4)
    perm = np.random.default_rng(5).permutation(25)
    with torch.no_grad():
        a = model(graph3d(z, pos))
        b = model(graph3d(z[perm], pos[perm]))
    torch.testing.assert_close(b, a[torch.from_numpy(perm)], atol=1e-5, rtol=1e-5)


def test_batched_equals_per_molecule(model):
    mols = [random_molecule(n, seed=10 + n) for n in (1, 3, 12, 40)]
    graphs = [graph3d(z, pos) for z, pos in mols]
    with torch.no_grad():
        single = [model(g) for g in graphs]
        batch = dgl.batch(graphs)
        batched = model(batch)
        pooled = graph_readout(batch, batched, "mean")
    for a, b in zip(single, torch.split(batched, [g.num_nodes() for g in graphs])):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    means = torch.stack([a.mean(0) for a in single])
    torch.testing.assert_close(pooled, means, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_embedding_and_all_parameters():
    torch.manual_seed(0)
    enc = SchNetEncoder(hidden=32, n_filters=16, n_interactions=2)
    z, pos = random_molecule(10, seed=6)
    g = graph3d(z, pos)
    graph_readout(g, enc(g)).pow(2).sum().backward()
    grad = enc.embedding.weight.grad
    present = np.unique(z)
    assert (grad[present].abs().sum(1) > 0).all()
    absent = np.setdiff1d(np.arange(120), present)
    assert (grad[absent] == 0).all()  # includes row 0, the padding row
    for name, param in enc.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_inputs_and_registry():
    enc = build_encoder("schnet", hidden=8, n_filters=4, n_interactions=1)
    assert isinstance(enc, SchNetEncoder)
    g = graph3d(np.array([6, 0]), np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="atomic numbers"):
        enc(g)  # Z = 0 (e.g. Z - 1 of hydrogen) is rejected
    no_pos = dgl.graph(([0], [1]))
    no_pos.ndata["Z"] = torch.tensor([6, 8])
    with pytest.raises(KeyError, match="pos"):
        enc(no_pos)
    with pytest.raises(ValueError, match="cutoff"):
        SchNetEncoder(cutoff=0.0)
    with pytest.raises(ValueError, match="n_gaussians"):
        SchNetEncoder(n_gaussians=1)
