"""What bounds pretraining's memory (issue 12, item 4), without timing anything: the tabulated
SchNet path's edge chunks equal the unchunked computation (outputs and gradients), keep no
[E, F] tensor for the backward, and cover every edge once; the chunk size reaches the encoder
from the config and the command line; glibc's malloc parameters are bounded (a block above the
mmap threshold goes back to the system when freed, one below it is reused)."""

import graphmvp  # noqa: F401  (before dgl)

import subprocess
import sys

import dgl
import pytest
import torch

from graphmvp.models import graph_readout
from graphmvp.models.cfconv_fused import edge_product_sum
from graphmvp.models.filter_table import distance_grid, filter_table, hermite_lookup, tabulated_filter
from graphmvp.models.schnet import SchNetEncoder
from graphmvp.models.schnet_tabulated import DEFAULT_EDGE_CHUNK, edge_chunks, tabulated_conv

from test_schnet_fast import molecules_batch, outputs_and_grads, random_biases, rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def batch():
    return molecules_batch(seed=3)


def chunks_of(g, edge_chunk, dtype=torch.float32):
    src, dst = g.edges()
    pos = g.ndata["pos"].to(dtype)
    d = (pos[src] - pos[dst]).norm(dim=1)
    grid, spacing = distance_grid(torch.full((3,), 0.2, dtype=dtype), 10.0, dtype=dtype)
    rg = dgl.reverse(g, copy_ndata=False, copy_edata=False)
    return edge_chunks(g, rg, d, torch.ones_like(d), grid, spacing, edge_chunk), d, grid, spacing


@pytest.mark.parametrize("edge_chunk", [1, 50, 200, 1000])
def test_edge_chunks_partition_edges_and_nodes(batch, edge_chunk):
    chunks, _, _, _ = chunks_of(batch, edge_chunk)
    assert len(chunks) > 1  # the batch has ~3,000 edges: chunking is active at these sizes
    assert chunks[0].e0 == 0 and chunks[0].n0 == 0
    assert chunks[-1].e1 == batch.num_edges() and chunks[-1].n1 == batch.num_nodes()
    max_in = int(batch.in_degrees().max())
    src, dst = batch.edges()
    for a, b in zip(chunks[:-1], chunks[1:]):
        assert a.e1 == b.e0 and a.n1 == b.n0 and a.n1 > a.n0
    for c in chunks:
        assert c.e1 - c.e0 <= edge_chunk + max_in
        assert bool(((dst[c.e0 : c.e1] >= c.n0) & (dst[c.e0 : c.e1] < c.n1)).all())  # whole in-neighbourhoods
        assert c.block.num_edges() == c.e1 - c.e0 == c.lookup.rows.shape[0]


def test_one_chunk_when_disabled_too_large_or_edges_unsorted(batch):
    for edge_chunk in (0, batch.num_edges(), 10**9):
        chunks, _, _, _ = chunks_of(batch, edge_chunk)
        assert len(chunks) == 1 and chunks[0].block is batch
    src, dst = batch.edges()
    perm = torch.randperm(batch.num_edges(), generator=torch.Generator().manual_seed(0))
    shuffled = dgl.graph((src[perm], dst[perm]), num_nodes=batch.num_nodes())
    shuffled.ndata["pos"] = batch.ndata["pos"]
    assert len(chunks_of(shuffled, 50)[0]) == 1
    with pytest.raises(ValueError, match="edge_chunk"):
        chunks_of(batch, -1)


@pytest.mark.parametrize("edge_chunk", [0, 64, 700])
def test_chunked_convolution_equals_interpolating_the_whole_filter(batch, edge_chunk):
    """Against the composition it replaces (interpolate [E, F] once, keep it for the backward),
    float64: outputs and both gradients equal to rounding; with one chunk, bit-equal."""
    gen = torch.Generator().manual_seed(1)
    chunks, d, grid, spacing = chunks_of(batch, edge_chunk, torch.float64)
    x = torch.randn(batch.num_nodes(), 6, generator=gen, dtype=torch.float64, requires_grad=True)
    table = torch.randn(2 * grid.shape[0], 6, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(batch.num_nodes(), 6, generator=gen, dtype=torch.float64)
    out = tabulated_conv(x, table, chunks)
    ref = edge_product_sum(batch, x, tabulated_filter(table, hermite_lookup(d, torch.ones_like(d), grid, spacing)))
    grads = torch.autograd.grad((out * weights).sum(), [x, table])
    refs = torch.autograd.grad((ref * weights).sum(), [x, table])
    tol = dict(rtol=0, atol=0) if edge_chunk == 0 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, ref, **tol)
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, **tol)


def test_chunked_encoder_equals_unchunked_and_plain(batch):
    """The whole encoder (random biases, float32): chunked vs one chunk within float rounding,
    and both within the tabulated path's tolerance of schnetpack's forward."""
    torch.manual_seed(2)
    enc = random_biases(SchNetEncoder(hidden=32, n_filters=16, n_interactions=3), 2)
    enc.edge_chunk = 0
    whole = outputs_and_grads(enc, batch, "tabulated")
    enc.edge_chunk = 100
    chunked = outputs_and_grads(enc, batch, "tabulated")
    plain = outputs_and_grads(enc, batch, "plain")
    assert rel(chunked[0], whole[0]) < 1e-6 and rel(chunked[1], whole[1]) < 1e-6
    assert whole[2].keys() == chunked[2].keys()
    for name in whole[2]:
        assert rel(chunked[2][name], whole[2][name]) < 1e-5, name
        assert rel(chunked[2][name], plain[2][name]) < 1e-5, name
    assert rel(chunked[0], plain[0]) < 1e-5


def test_tabulated_path_keeps_no_per_edge_tensor_for_the_backward(batch):
    """Every tensor autograd saves in the 3D forward is per node, per table row or smaller:
    nothing with a row per edge and the filter width (the 780 MB the default path held at batch
    256 before)."""
    torch.manual_seed(3)
    enc = SchNetEncoder(hidden=24, n_filters=10, n_interactions=2, edge_chunk=200)
    per_edge = {batch.num_edges()} | {c.e1 - c.e0 for c in chunks_of(batch, 200)[0]}  # rows of a chunk or of all
    assert not per_edge & {batch.num_nodes(), 2 * 2001}  # node and table rows are told apart
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h = enc(batch)
    graph_readout(batch, h).sum().backward()
    assert (batch.num_nodes(), 10) in saved and (2 * 2001, 10) in saved
    assert not [s for s in saved if len(s) == 2 and s[0] in per_edge and s[1] == 10], saved


def test_edge_chunk_reaches_the_encoder_from_config_and_command_line():
    from graphmvp.pretrain import GraphMVPModel, resolve_config
    from graphmvp.pretrain.cli import config_from_args
    from graphmvp.pretrain.config import ConfigError

    small = dict(emb_dim=16, schnet_filters=8, schnet_interactions=1, num_layers=1)
    assert resolve_config("graphmvp", out="unused").schnet_edge_chunk == DEFAULT_EDGE_CHUNK
    assert GraphMVPModel(resolve_config("graphmvp", out="unused", **small)).encoder_3d.edge_chunk == DEFAULT_EDGE_CHUNK
    cfg, _ = config_from_args(["--preset", "graphmvp", "--out", "unused", "--schnet-edge-chunk", "1234"])
    assert cfg.schnet_edge_chunk == 1234
    assert "schnet_edge_chunk: 1234" in cfg.to_yaml()
    cfg = resolve_config("graphmvp", out="unused", schnet_edge_chunk=0, **small)
    assert GraphMVPModel(cfg).encoder_3d.edge_chunk == 0
    with pytest.raises(ConfigError, match="schnet-edge-chunk"):
        resolve_config("graphmvp", out="unused", schnet_edge_chunk=-5)
    with pytest.raises(ValueError, match="edge_chunk"):
        SchNetEncoder(hidden=8, n_filters=4, n_interactions=1, edge_chunk=-1)


# -- malloc tuning -------------------------------------------------------------------------------------
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_malloc_is_bounded():
    """Tuning may keep freed memory only up to its bounds: a freed block above the mmap threshold
    leaves the process (before, glibc was told to keep everything below 1 GiB forever)."""
    from graphmvp import malloc_tuning

    assert malloc_tuning.MALLOC_MMAP_THRESHOLD <= 256 * 2**20
    assert malloc_tuning.MALLOC_TOP_PAD <= malloc_tuning.MALLOC_TRIM_THRESHOLD <= 512 * 2**20
    assert malloc_tuning.tune_malloc() and malloc_tuning.malloc_tuned()
    size = malloc_tuning.MALLOC_MMAP_THRESHOLD + malloc_tuning.MALLOC_TRIM_THRESHOLD + 64 * 2**20
    block = torch.ones(size // 4)  # written: resident
    held = rss_kib()
    del block
    released = held - rss_kib()
    assert released > 0.9 * size / 1024, f"{released} KiB of a {size >> 20} MiB block returned on free"


def test_whole_edge_schnet_paths_map_their_edge_tensors_instead_of_heaping_them():
    """The default (edge-chunked) path and 2D-only runs keep blocks below 64 MiB in the heap; the
    plain, fused and fused-bf16 paths get 32 MiB, below fused-bf16's whole-edge bf16 tensors (62 MiB
    at batch 256), which kept in the heap took it above 5 GB. Both lie above the default path's
    chunk buffers, which must stay reusable."""
    from graphmvp import malloc_tuning
    from graphmvp.models.schnet_tabulated import DEFAULT_EDGE_CHUNK
    from graphmvp.pretrain import malloc_mmap_threshold, resolve_config

    assert malloc_mmap_threshold(resolve_config("graphmvp")) == malloc_tuning.MALLOC_MMAP_THRESHOLD == 64 * 2**20
    assert malloc_mmap_threshold(resolve_config("attrmask")) == malloc_tuning.MALLOC_MMAP_THRESHOLD
    for impl in ("plain", "fused", "fused-bf16"):
        assert malloc_mmap_threshold(resolve_config("graphmvp", schnet_impl=impl)) == 32 * 2**20, impl
    chunk_buffer = DEFAULT_EDGE_CHUNK * 128 * 4  # [chunk, F] float32 at the upstream width
    assert chunk_buffer < malloc_tuning.WHOLE_EDGE_MMAP_THRESHOLD < malloc_tuning.MALLOC_MMAP_THRESHOLD
    with pytest.raises(ValueError, match="mmap_threshold"):
        malloc_tuning.tune_malloc(0)


RELEASED_ON_FREE = """
import sys, torch
from graphmvp import malloc_tuning
def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
assert malloc_tuning.tune_malloc(int(sys.argv[1]))
block = torch.ones(12 * 2**20)  # 48 MiB, written: resident
held = rss()
del block
print((held - rss()) / 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_a_48_mib_block_leaves_the_process_under_the_whole_edge_threshold_only():
    """A fresh process each (the threshold only decides how the heap grows, so an earlier free
    chunk would hide it): a 48 MiB block is given back on free under 32 MiB, kept under 64 MiB."""
    from graphmvp import malloc_tuning

    def released_mib(threshold: int) -> float:
        done = subprocess.run([sys.executable, "-c", RELEASED_ON_FREE, str(threshold)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return float(done.stdout.split()[-1])

    assert released_mib(malloc_tuning.WHOLE_EDGE_MMAP_THRESHOLD) > 0.9 * 48
    assert released_mib(malloc_tuning.MALLOC_MMAP_THRESHOLD) < 8


def schnetpack_module_outputs_and_grads(enc, g):
    """The reference: ``schnetpack.representation.SchNet.forward`` itself (dict of inputs), then
    the encoder's head; gradients of the parameters and of the positions."""
    import schnetpack.properties as props

    enc.zero_grad(set_to_none=True)
    pos = g.ndata["pos"].clone().requires_grad_(True)
    src, dst = g.edges()
    inputs = {props.Z: g.ndata["Z"], props.Rij: pos[src] - pos[dst], props.idx_i: dst.long(), props.idx_j: src.long()}
    h = enc.head(enc.schnet(inputs)["scalar_representation"])
    (graph_readout(g, h).pow(2).mean() + h[:5].sum()).backward()
    return h.detach(), pos.grad, {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


def test_plain_path_is_schnetpacks_forward_bit_for_bit(batch):
    """The plain path runs schnetpack's modules in its forward's order with every interaction
    recomputed in the backward: outputs, parameter and position gradients equal exactly."""
    torch.manual_seed(5)
    enc = random_biases(SchNetEncoder(hidden=24, n_filters=12, n_interactions=3, impl="plain"), 5)
    h_ref, dpos_ref, grads_ref = schnetpack_module_outputs_and_grads(enc, batch)
    g = batch.local_var()
    g.ndata["pos"] = batch.ndata["pos"].clone().requires_grad_(True)
    enc.zero_grad(set_to_none=True)
    h = enc(g)
    (graph_readout(g, h).pow(2).mean() + h[:5].sum()).backward()
    assert torch.equal(h.detach(), h_ref)
    assert torch.equal(g.ndata["pos"].grad, dpos_ref)
    assert grads_ref.keys() == {n for n, p in enc.named_parameters() if p.grad is not None}
    for name, p in enc.named_parameters():
        if p.grad is not None:
            assert torch.equal(p.grad, grads_ref[name]), name


def per_edge_filter_tensors_saved(enc, g, n_filters):
    """Shapes of the [E, n_filters] tensors autograd keeps for the backward of ``enc(g)``."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        h = enc(g)
    graph_readout(g, h).sum().backward()
    assert saved  # the hook saw the forward
    return [s for s in saved if s == (g.num_edges(), n_filters)]


@pytest.mark.parametrize("impl", ["plain", "fused", "fused-bf16"])
def test_plain_and_fused_paths_keep_no_per_edge_filter_for_the_backward(batch, impl, monkeypatch):
    """Only the interactions' inputs are kept (the [E, F] intermediates are recomputed one
    interaction at a time in the backward); without the recomputation they are kept, which is
    what the check tells apart."""
    torch.manual_seed(3)
    enc = SchNetEncoder(hidden=24, n_filters=10, n_interactions=2, impl=impl)
    assert batch.num_edges() not in (batch.num_nodes(), 24)
    assert per_edge_filter_tensors_saved(enc, batch, 10) == []
    import graphmvp.models.schnet as schnet_module
    import graphmvp.models.schnet_fused as fused_module

    for module in (schnet_module, fused_module):
        monkeypatch.setattr(module, "recomputed", lambda block, *args: block(*args))
    assert len(per_edge_filter_tensors_saved(enc, batch, 10)) >= 2  # at least one per interaction
