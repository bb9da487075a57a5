"""The fast SchNet paths against the plain (schnetpack) path: same parameters -> same outputs and
gradients; shared state dicts; the fused cfconv's hand-written backward against autograd; the
tabulated filter's interpolation error and backward; bf16 within its stated tolerance; and
tests/test_schnet.py's invariance tests re-run on "plain" and "fused" (that file runs the
default path, "tabulated")."""

import graphmvp  # noqa: F401  (before dgl)

import dgl
import numpy as np
import pytest
import torch

from graphmvp.models import graph_readout
from graphmvp.models.cfconv_fused import cfconv_fused, edge_product_sum
from graphmvp.models.filter_table import distance_grid, filter_table, hermite_lookup, tabulated_filter
from graphmvp.models.schnet import DEFAULT_SCHNET_IMPL, SCHNET_IMPLS, SchNetEncoder
from graphmvp.models.schnet_fused import check_fusable
from graphmvp.models.schnet_tabulated import check_tabulable

# tests/test_schnet.py's graph builder, reference and invariance tests; the tests imported here
# are collected again in this module, where they get this module's ``model`` fixture (plain and
# fused paths)
from test_schnet import (
    graph3d,
    random_molecule,
    reference_forward,
    test_batched_equals_per_molecule,
    test_equivariant_to_atom_relabelling,
    test_invariant_to_edge_order,
    test_invariant_to_rotation_reflection_and_translation,
    test_messages_flow_from_src_to_dst,
)

#: the tests of tests/test_schnet.py collected again here (named so that linters see them used)
REUSED_TESTS = (
    test_batched_equals_per_molecule,
    test_equivariant_to_atom_relabelling,
    test_invariant_to_edge_order,
    test_invariant_to_rotation_reflection_and_translation,
    test_messages_flow_from_src_to_dst,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: fp32 tolerance of fused and tabulated vs plain (relative to the norm of each compared tensor)
FP32_RTOL = 1e-5
#: the implementations held to FP32_RTOL
FP32_IMPLS = ("fused", "tabulated")
#: bf16 tolerance of fused-bf16 vs plain (norm-relative): outputs, loss, each gradient
BF16_OUT_RTOL, BF16_GRAD_RTOL = 2e-2, 5e-2


@pytest.fixture(scope="module", params=["plain", "fused"])
def model(request):
    """Upstream sizes on the paths tests/test_schnet.py does not run (it runs the default,
    "tabulated"), for its re-collected invariance tests; bf16 is not held to their 1e-5."""
    torch.manual_seed(0)
    return SchNetEncoder(impl=request.param).eval()


def molecules_batch(seed=0):
    """A batch covering the edge cases: one atom (no edges), a pair, an atom beyond the cutoff of
    the others, crowded molecules where the 32-neighbour cap is active."""
    mols = [random_molecule(1, seed)]
    mols.append((np.array([6, 8]), np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]])))
    z, pos = random_molecule(6, seed + 1)
    pos[0] = [30.0, 0.0, 0.0]  # isolated from the rest at the 10 A cutoff
    mols.append((z, pos))
    mols += [random_molecule(n, seed + n, scale=2.5) for n in (40, 45)]
    graphs = [graph3d(z, pos) for z, pos in mols]
    assert max(int(g.in_degrees().max()) for g in graphs if g.num_edges()) == 32
    return dgl.batch(graphs)


def random_biases(enc, seed=0):
    """schnetpack initialises biases to zero; random ones make every bias term matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in enc.named_parameters():
            if name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return enc


def outputs_and_grads(enc, g, impl):
    enc.impl = impl
    enc.zero_grad(set_to_none=True)
    h = enc(g)
    loss = graph_readout(g, h).pow(2).mean() + h[:5].sum()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in enc.named_parameters() if p.grad is not None}
    return h.detach(), loss.detach(), grads


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(scope="module")
def upstream_encoder():
    torch.manual_seed(3)
    return random_biases(SchNetEncoder(impl="plain"))


def test_default_and_registry():
    enc = SchNetEncoder(hidden=8, n_filters=4, n_interactions=1)
    assert enc.impl == DEFAULT_SCHNET_IMPL and DEFAULT_SCHNET_IMPL in FP32_IMPLS
    assert SCHNET_IMPLS.names() == ["fused", "fused-bf16", "plain", "tabulated"]
    with pytest.raises(ValueError, match="unknown SchNet implementation 'fast'.*allowed: fused, fused-bf16, plain"):
        SchNetEncoder(hidden=8, n_filters=4, n_interactions=1, impl="fast")


@pytest.mark.parametrize("impl", FP32_IMPLS)
def test_fast_paths_equal_plain_outputs_and_gradients(upstream_encoder, impl):
    g = molecules_batch()
    h0, loss0, grads0 = outputs_and_grads(upstream_encoder, g, "plain")
    h1, loss1, grads1 = outputs_and_grads(upstream_encoder, g, impl)
    assert rel(h1, h0) < FP32_RTOL
    assert abs(float(loss1 - loss0)) <= FP32_RTOL * abs(float(loss0))
    # every parameter gets a gradient on both paths (row 0 of the embedding: zero on both)
    assert grads1.keys() == grads0.keys() == {n for n, _ in upstream_encoder.named_parameters()}
    for name in grads0:
        assert rel(grads1[name], grads0[name]) < FP32_RTOL, name
    # the isolated atom (molecule 2, atom 0) has no neighbour within the cutoff on either path
    assert torch.isfinite(h1).all()


@pytest.mark.parametrize("impl", FP32_IMPLS)
def test_fast_paths_match_float64_reference_from_the_equations(impl):
    """Against SchNet written out from its equations (test_schnet's reference), other sizes."""
    torch.manual_seed(1)
    enc = random_biases(SchNetEncoder(hidden=16, n_filters=8, n_interactions=2, n_gaussians=11, cutoff=5.0,
                                      impl=impl), 1)
    z = np.array([8, 1, 1, 6, 17])
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [2.5, 1.0, -0.5], [0.0, 0.0, 5.2]])
    out = enc(graph3d(z, pos, cutoff=5.0))
    ref = reference_forward(enc, z, pos.astype(np.float32), 5.0).float()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_state_dict_round_trip_between_implementations(upstream_encoder):
    """The implementations share parameter names and shapes: a checkpoint of one loads into the
    other (strict) and gives the same outputs."""
    g = molecules_batch(seed=7)
    pairs = (("plain", "fused"), ("fused", "plain"), ("plain", "tabulated"), ("tabulated", "plain"),
             ("plain", "fused-bf16"))
    for source_impl, target_impl in pairs:
        upstream_encoder.impl = source_impl
        state = {k: v.clone() for k, v in upstream_encoder.state_dict().items()}
        torch.manual_seed(11)
        other = SchNetEncoder(impl=target_impl)
        assert list(other.state_dict()) == list(state)
        assert all(other.state_dict()[k].shape == v.shape for k, v in state.items())
        other.load_state_dict(state, strict=True)
        with torch.no_grad():
            a = upstream_encoder.eval()(g)
            b = other.eval()(g)
            other.impl = source_impl  # switching back: bit-identical to the source
            torch.testing.assert_close(other(g), a, atol=0, rtol=0)
        tol = BF16_OUT_RTOL if "bf16" in target_impl else FP32_RTOL
        assert rel(b, a) < tol, (source_impl, target_impl)


def test_bf16_within_stated_tolerance(upstream_encoder):
    g = molecules_batch(seed=3)
    h0, loss0, grads0 = outputs_and_grads(upstream_encoder, g, "plain")
    h2, loss2, grads2 = outputs_and_grads(upstream_encoder, g, "fused-bf16")
    out_dev, loss_dev = rel(h2, h0), abs(float(loss2 - loss0)) / abs(float(loss0))
    assert out_dev < BF16_OUT_RTOL and loss_dev < BF16_OUT_RTOL
    for name in grads0:
        assert rel(grads2[name], grads0[name]) < BF16_GRAD_RTOL, name
    # it does compute in bf16 (else it would be a second fp32 path): the deviation is above fp32's
    assert out_dev > 10 * FP32_RTOL


def make_cfconv_inputs(dtype, seed=0, n=7, g_basis=5, f=4):
    gen = torch.Generator().manual_seed(seed)
    src, dst = [], []
    for i in range(n):  # every pair except a few, in a scrambled order (not sorted by dst)
        for j in range(n):
            if i != j and (i + 2 * j) % 5:
                src.append(j)
                dst.append(i)
    perm = torch.randperm(len(src), generator=gen)
    g = dgl.graph((torch.tensor(src)[perm], torch.tensor(dst)[perm]), num_nodes=n)
    e = g.num_edges()

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()

    return g, [rand(n, f), rand(e, g_basis), rand(e), rand(f, g_basis), rand(f), rand(f, f), rand(f)]


def cfconv_by_autograd(g, x, rbf, fcut, w1, b1, w2, b2):
    """The same quantity from plain torch ops (gather, product, index_add), autograd's backward."""
    src, dst = g.edges()
    h = torch.nn.functional.softplus(rbf @ w1.T + b1) - np.log(2.0)
    filt = (h @ w2.T + b2) * fcut[:, None]
    return torch.zeros(g.num_nodes(), x.shape[1], dtype=x.dtype).index_add(0, dst, x[src] * filt)


def test_cfconv_backward_matches_autograd_for_every_input():
    """The hand-written backward, including the gradients GraphMVP does not use (radial basis and
    cutoff weights: positions with requires_grad, e.g. forces), in float64."""
    g, inputs = make_cfconv_inputs(torch.float64)
    weights = torch.randn(g.num_nodes(), inputs[0].shape[1], dtype=torch.float64)
    out = cfconv_fused(g, *inputs)
    ref = cfconv_by_autograd(g, *inputs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    grads_ref = torch.autograd.grad((ref * weights).sum(), inputs)
    for k, (a, b) in enumerate(zip(grads, grads_ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"input {k}")
    # and against finite differences (a second, independent check of the backward)
    assert torch.autograd.gradcheck(lambda *a: cfconv_fused(g, *a), inputs, eps=1e-6, atol=1e-6)


def test_cfconv_computes_only_requested_gradients():
    g, inputs = make_cfconv_inputs(torch.float32, seed=1)
    x, rbf, fcut, w1, b1, w2, b2 = inputs
    rbf, fcut = rbf.detach(), fcut.detach()  # as in GraphMVP: positions need no gradient
    out = cfconv_fused(g, x, rbf, fcut, w1, b1, w2, b2)
    out.sum().backward()
    assert rbf.grad is None and fcut.grad is None
    ref = cfconv_by_autograd(g, x, rbf, fcut, w1, b1, w2, b2)
    refs = torch.autograd.grad(ref.sum(), [x, w1, b1, w2, b2])
    for p, r in zip([x, w1, b1, w2, b2], refs):
        torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-6)


def test_cfconv_bad_inputs():
    g, (x, rbf, fcut, w1, b1, w2, b2) = make_cfconv_inputs(torch.float32)
    with pytest.raises(ValueError, match="rbf must have shape"):
        cfconv_fused(g, x, rbf[:-1], fcut, w1, b1, w2, b2)
    with pytest.raises(ValueError, match="x must have shape"):
        cfconv_fused(g, x[:-1], rbf, fcut, w1, b1, w2, b2)
    with pytest.raises(ValueError, match="fcut must have shape"):
        cfconv_fused(g, x, rbf, fcut[:, None], w1, b1, w2, b2)
    with pytest.raises(ValueError, match="compute_dtype"):
        cfconv_fused(g, x, rbf, fcut, w1, b1, w2, b2, compute_dtype=torch.int32)


def test_fused_path_rejects_layouts_it_does_not_compute():
    from schnetpack.nn import CosineCutoff, GaussianRBF
    from schnetpack.representation import SchNet

    def build(**kw):
        return SchNet(n_atom_basis=8, n_interactions=2, radial_basis=GaussianRBF(5, 5.0),
                      cutoff_fn=CosineCutoff(5.0), n_filters=4, **kw)

    check_fusable(build())
    with pytest.raises(ValueError, match="unshared interaction"):
        check_fusable(build(shared_interactions=True))
    with pytest.raises(ValueError, match="shifted-softplus"):
        check_fusable(build(activation=torch.tanh))
    enc = SchNetEncoder(hidden=8, n_filters=4, n_interactions=1, impl="plain")
    enc.schnet = build(shared_interactions=True)
    with pytest.raises(ValueError, match="unshared interaction"):
        enc.impl = "fused"
    assert enc.impl == "plain"


def test_config_field_reaches_the_encoder():
    from graphmvp.pretrain import GraphMVPModel, resolve_config
    from graphmvp.pretrain.config import ConfigError

    for impl in SCHNET_IMPLS.names():
        cfg = resolve_config("graphmvp", out="unused", schnet_impl=impl, emb_dim=16, schnet_filters=8,
                             schnet_interactions=1, num_layers=1)
        assert GraphMVPModel(cfg).encoder_3d.impl == impl
    assert resolve_config("graphmvp", out="unused").schnet_impl == DEFAULT_SCHNET_IMPL
    with pytest.raises(ConfigError, match="schnet-impl.*fast.*allowed: fused, fused-bf16, plain, tabulated"):
        resolve_config("graphmvp", out="unused", schnet_impl="fast")


def test_graph_without_edges_on_every_path():
    """Single atoms (no neighbours): every path gives the embedding through the head, equal."""
    g = dgl.batch([graph3d(np.array([6]), np.zeros((1, 3))), graph3d(np.array([8]), np.zeros((1, 3)))])
    assert g.num_edges() == 0
    torch.manual_seed(2)
    enc = SchNetEncoder(hidden=16, n_filters=8, n_interactions=2, impl="plain")
    outs = {}
    for impl in SCHNET_IMPLS.names():
        enc.impl = impl
        enc.zero_grad(set_to_none=True)
        outs[impl] = enc(g)
        outs[impl].sum().backward()  # no edges: no filter gradient, but no error either
        assert enc.embedding.weight.grad[[6, 8]].abs().sum() > 0
    for impl in SCHNET_IMPLS.names():
        torch.testing.assert_close(outs[impl], outs["plain"], rtol=0, atol=0)


def exact_filter(block, radial_basis, d):
    """The filter network on distances ``d`` as schnetpack evaluates it (no cutoff)."""
    return block.filter_network(radial_basis(d))


@pytest.mark.parametrize("dtype, bound", [(torch.float64, 1e-8), (torch.float32, 5e-6)])
def test_tabulated_filter_interpolation_error(dtype, bound):
    """Cubic Hermite on the 0.005 A grid, sharpened filter weights and random biases: in float64
    the interpolation error alone, ~3e-9 of max |filter| (measured); in float32 rounding
    dominates (measured ~2e-6 against the float32 filter network, whose own error against
    float64 is ~1e-6)."""
    torch.manual_seed(4)
    enc = random_biases(SchNetEncoder(impl="plain"), 4).to(dtype)
    schnet = enc.schnet
    with torch.no_grad():
        for block in schnet.interactions:
            for layer in block.filter_network:
                layer.weight.mul_(2.0)
    rbf = schnet.radial_basis
    grid, spacing = distance_grid(rbf.widths, 10.0, dtype=dtype)
    assert grid.shape == (2001,) and spacing == pytest.approx(0.005)
    d = torch.rand(20000, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 9.9 + 0.05
    lookup = hermite_lookup(d, torch.ones_like(d), grid, spacing)
    at_grid = hermite_lookup(grid[100:110], torch.ones(10, dtype=dtype), grid, spacing)
    coeff = -0.5 / rbf.widths.pow(2)
    with torch.no_grad():
        for block in schnet.interactions:
            exact = exact_filter(block, rbf, d)
            table = filter_table(*block.filter_network, rbf.offsets, coeff, grid)
            approx = tabulated_filter(table, lookup)
            assert float((approx - exact).abs().max() / exact.abs().max()) < bound
            # the table holds the exact filter at the grid points, and the interpolant passes through them
            torch.testing.assert_close(table[100:110], exact_filter(block, rbf, grid[100:110]))
            torch.testing.assert_close(tabulated_filter(table, at_grid), table[100:110])


def test_tabulated_lookup_backward_is_the_transpose():
    """The lookup's backward (S^T @ grad by table row) against autograd through gathers, float64,
    edges in a scrambled order, with cutoff weights folded in and distances beyond the grid."""
    gen = torch.Generator().manual_seed(5)
    grid = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    spacing = 0.25
    d = torch.cat([torch.rand(50, generator=gen, dtype=torch.float64) * 2.0,
                   torch.tensor([0.0, 2.0, 7.5], dtype=torch.float64)])
    fcut = torch.rand(d.shape[0], generator=gen, dtype=torch.float64)
    table = torch.randn(18, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    lookup = hermite_lookup(d, fcut, grid, spacing)
    out = tabulated_filter(table, lookup)
    # the same interpolation from its formula with plain tensor ops
    u = (d / spacing).clamp(0, 8)
    b = u.floor().long().clamp(max=7)
    t = (u - b)[:, None]
    ref = fcut[:, None] * ((2 * t**3 - 3 * t**2 + 1) * table[b] + (-2 * t**3 + 3 * t**2) * table[b + 1]
                           + spacing * ((t**3 - 2 * t**2 + t) * table[9 + b] + (t**3 - t**2) * table[10 + b]))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * weights).sum(), table)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), table)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


def test_edge_product_sum_backward_matches_autograd():
    g, (x, _, _, _, _, _, _) = make_cfconv_inputs(torch.float64, seed=6)
    x = x.detach().requires_grad_()
    w = torch.randn(g.num_edges(), x.shape[1], dtype=torch.float64, requires_grad=True)
    src, dst = g.edges()
    out = edge_product_sum(g, x, w)
    ref = torch.zeros_like(out).index_add(0, dst, x[src] * w)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), [x, w])
    refs = torch.autograd.grad((ref * weights).sum(), [x, w])
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_tabulated_path_refuses_position_gradients_and_other_bases():
    from schnetpack.nn import BesselRBF, CosineCutoff
    from schnetpack.representation import SchNet

    enc = SchNetEncoder(hidden=8, n_filters=4, n_interactions=1, impl="tabulated")
    z, pos = random_molecule(5, seed=8)
    g = graph3d(z, pos)
    g.ndata["pos"] = g.ndata["pos"].clone().requires_grad_()
    with pytest.raises(ValueError, match="no gradients to positions"):
        enc(g)
    bessel = SchNet(n_atom_basis=8, n_interactions=1, radial_basis=BesselRBF(5, 5.0), cutoff_fn=CosineCutoff(5.0),
                    n_filters=4)
    with pytest.raises(ValueError, match="GaussianRBF"):
        check_tabulable(bessel)
