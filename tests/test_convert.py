"""graphmvp-convert: upstream-layout GIN state dicts (random weights) -> our DGL GIN, compared with
an independent dense plain-torch forward pass of the upstream layer equations, written here.

The reference (``upstream_forward``) featurises molecules itself from RDKit (Hu et al. simple
features), builds a dense adjacency with self loops and a dense [N, N, D] edge-embedding tensor,
and applies, per layer: ``a_i = sum_j A_ij (h_j + e_ji)`` over edges j -> i plus the self loop
(bond type 4, direction 0), ``MLP = Linear(D, 2D) - ReLU - Linear(2D, D)``, BatchNorm with running
statistics (eval), ReLU on all but the last layer; JK last; mean pooling per molecule; float64.
"""

from __future__ import annotations

import copy

import graphmvp  # noqa: F401  (before dgl)

import numpy as np
import pytest
import torch
from rdkit import Chem

from graphmvp.convert import ConversionError, convert_file, convert_state_dict, expected_keys, main
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.models import graph_readout
from graphmvp.pretrained import CheckpointError, embed, featurize_smiles, load_encoder_file

# chirality (R/S centres), aromatic rings (benzene, pyridine, fused, heteroaromatic 5-ring),
# bond directions (E/Z), charges, a salt (two fragments), triple bond, single heavy atom
SMILES = [
    "C[C@H](N)C(=O)O",
    "C[C@@H](O)c1ccccc1",
    "c1ccc2ccccc2c1",
    "Cc1ccncc1C#N",
    "O=C(N[C@@H]1CCC[C@H]1O)c1cc[nH]c1",
    "F/C=C/C=C\\Cl",
    "[Na+].[O-]C(=O)c1ccccc1",
    "C",
]

_CHIRAL = [Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW,
           Chem.ChiralType.CHI_TETRAHEDRAL_CCW, Chem.ChiralType.CHI_OTHER]
_BOND_TYPE = [Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC]
_BOND_DIR = [Chem.BondDir.NONE, Chem.BondDir.ENDUPRIGHT, Chem.BondDir.ENDDOWNRIGHT]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------- upstream side (here)


def upstream_state_dict(num_layers=5, d=300, chirality_rows=3, seed=0, prefix="", head=False):
    """An upstream-layout GIN state dict with random weights and non-trivial BatchNorm stats."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g)

    sd = {"x_embedding1.weight": rnd(120, d, scale=0.5), "x_embedding2.weight": rnd(chirality_rows, d, scale=0.5)}
    for i in range(num_layers):
        sd[f"gnns.{i}.mlp.0.weight"] = rnd(2 * d, d, scale=d ** -0.5)
        sd[f"gnns.{i}.mlp.0.bias"] = rnd(2 * d, scale=0.1)
        sd[f"gnns.{i}.mlp.2.weight"] = rnd(d, 2 * d, scale=(2 * d) ** -0.5)
        sd[f"gnns.{i}.mlp.2.bias"] = rnd(d, scale=0.1)
        sd[f"gnns.{i}.edge_embedding1.weight"] = rnd(6, d, scale=0.5)
        sd[f"gnns.{i}.edge_embedding2.weight"] = rnd(3, d, scale=0.5)
    for i in range(num_layers):
        sd[f"batch_norms.{i}.weight"] = 1.0 + rnd(d, scale=0.2)
        sd[f"batch_norms.{i}.bias"] = rnd(d, scale=0.2)
        sd[f"batch_norms.{i}.running_mean"] = rnd(d, scale=0.5)
        sd[f"batch_norms.{i}.running_var"] = 0.5 + torch.rand(d, generator=g)
        sd[f"batch_norms.{i}.num_batches_tracked"] = torch.tensor(1234)
    sd = {prefix + k: v for k, v in sd.items()}
    if head:
        sd["graph_pred_linear.weight"] = rnd(12, d)
        sd["graph_pred_linear.bias"] = rnd(12)
    return sd


def simple_features(mol):
    """Hu et al. simple features computed here: atoms [N, 2], edges j->i, bond features [E, 2]."""
    atoms = [(a.GetAtomicNum() - 1, _CHIRAL.index(a.GetChiralTag())) for a in mol.GetAtoms()]
    edges, feats = [], []
    for b in mol.GetBonds():
        f = (_BOND_TYPE.index(b.GetBondType()), _BOND_DIR.index(b.GetBondDir()))
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        edges += [(i, j), (j, i)]
        feats += [f, f]
    return atoms, edges, feats


def upstream_forward(smiles, sd, prefix="", hydrogens=False):
    """Dense float64 upstream GIN forward: (node embeddings [N, D], graph embedding [D])."""
    mol = Chem.MolFromSmiles(smiles)
    if hydrogens:
        mol = Chem.AddHs(mol)
    atoms, edges, feats = simple_features(mol)
    p = {k[len(prefix):]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    num_layers = 1 + max(int(k.split(".")[1]) for k in p if k.startswith("gnns."))
    n = len(atoms)
    atom_type = torch.tensor([a[0] for a in atoms])
    chirality = torch.tensor([a[1] for a in atoms])
    h = p["x_embedding1.weight"][atom_type] + p["x_embedding2.weight"][chirality]
    # dense adjacency A[i, j] = 1 for an edge j -> i; self loops added with bond (4, 0)
    adj = torch.zeros(n, n, dtype=torch.float64)
    btype = torch.zeros(n, n, dtype=torch.long)
    bdir = torch.zeros(n, n, dtype=torch.long)
    for (src, dst), (t, d) in zip(edges, feats):
        adj[dst, src] = 1.0
        btype[dst, src], bdir[dst, src] = t, d
    idx = torch.arange(n)
    adj[idx, idx] = 1.0
    btype[idx, idx], bdir[idx, idx] = 4, 0
    for layer in range(num_layers):
        q = f"gnns.{layer}."
        edge_emb = p[q + "edge_embedding1.weight"][btype] + p[q + "edge_embedding2.weight"][bdir]  # [N, N, D]
        messages = (h.unsqueeze(0) + edge_emb) * adj.unsqueeze(-1)  # message j -> i at [i, j]
        agg = messages.sum(dim=1)
        z = torch.relu(agg @ p[q + "mlp.0.weight"].T + p[q + "mlp.0.bias"]) @ p[q + "mlp.2.weight"].T + p[q + "mlp.2.bias"]
        b = f"batch_norms.{layer}."
        z = (z - p[b + "running_mean"]) / torch.sqrt(p[b + "running_var"] + 1e-5) * p[b + "weight"] + p[b + "bias"]
        h = torch.relu(z) if layer < num_layers - 1 else z
    return h, h.mean(dim=0)


def our_forward(model, smiles_list, hydrogens="drop"):
    """Node embeddings per molecule and graph embeddings [B, D] from the converted DGL model,
    on ONE batched graph of all molecules."""
    graphs = [featurize_smiles(s, hydrogens) for s in smiles_list]
    g = batch_mol_graphs(graphs)
    with torch.no_grad():
        h = model(g)
        pooled = graph_readout(g, h, "mean")
    sizes = [x.num_atoms for x in graphs]
    return list(torch.split(h, sizes)), pooled


def assert_matches_reference(model, sd, prefix="", hydrogens="drop", smiles=SMILES):
    """Node and graph embeddings equal the reference: to 1e-5 with the converted weights run in
    float64 (the conversion itself), and to 1e-4 in float32 (the model as users run it; float32
    rounding through 5 layers of width 300 alone reaches ~2e-5)."""
    for dtype, tol in ((torch.float64, 1e-5), (torch.float32, 1e-4)):
        nodes, pooled = our_forward(copy.deepcopy(model).to(dtype), smiles, hydrogens)
        for k, s in enumerate(smiles):
            ref_nodes, ref_graph = upstream_forward(s, sd, prefix, hydrogens == "keep")
            assert nodes[k].dtype == dtype and nodes[k].shape == ref_nodes.shape, s
            assert float(ref_nodes.abs().max()) > 0.1, "reference too small to be a meaningful comparison"
            msg = lambda m: f"{s} ({dtype}): {m}"  # noqa: E731
            torch.testing.assert_close(nodes[k].double(), ref_nodes, atol=tol, rtol=tol, msg=msg)
            torch.testing.assert_close(pooled[k].double(), ref_graph, atol=tol, rtol=tol, msg=msg)


# ---------------------------------------------------------------------------------------- tests


def test_reference_sees_chirality_aromaticity_and_directions():
    """The test molecules exercise what must be converted right: chirality tags 1 and 2, aromatic
    bonds, bond directions 1 and 2 (otherwise a wrong table row would go unnoticed)."""
    tags, types, dirs = set(), set(), set()
    for s in SMILES:
        atoms, _, feats = simple_features(Chem.MolFromSmiles(s))
        tags |= {a[1] for a in atoms}
        types |= {f[0] for f in feats}
        dirs |= {f[1] for f in feats}
    assert {1, 2} <= tags and {0, 1, 2, 3} <= types and {1, 2} <= dirs


def test_bare_state_dict_matches_upstream_forward():
    sd = upstream_state_dict()
    conv = convert_state_dict(sd, hydrogens="drop")
    assert conv.prefix == "" and conv.left_out == [] and conv.filled == []
    assert conv.config == {
        "encoder": "gin", "num_layers": 5, "emb_dim": 300, "dropout": 0.0, "jk": "last",
        "num_atom_type": 120, "num_chirality": 3, "pooling": "mean", "hydrogens": "drop", "features": "hu-simple",
    }
    assert list(conv.state_dict) == expected_keys(5)
    from graphmvp.models import GIN

    model = GIN(num_layers=5, emb_dim=300).eval()
    model.load_state_dict(conv.state_dict, strict=True)
    assert_matches_reference(model, sd)


def test_finetune_checkpoint_file_with_prefix_and_head(tmp_path, capsys):
    """A GraphMVP fine-tune checkpoint: GIN under 'molecule_model.' + graph_pred_linear, through the
    CLI; the head is listed as left out and recorded in the output file."""
    sd = upstream_state_dict(seed=1, prefix="molecule_model.", head=True)
    src, dest = tmp_path / "model_finetuned.pth", tmp_path / "ours.pt"
    torch.save(sd, src)
    assert main([str(src), str(dest), "--hydrogens", "drop"]) == 0
    out = capsys.readouterr().out
    assert "molecule_model." in out and "graph_pred_linear.weight" in out and "graph_pred_linear.bias" in out
    model, config = load_encoder_file(dest)
    assert config["hydrogens"] == "drop" and config["num_layers"] == 5
    raw = torch.load(dest, weights_only=True)
    assert raw["converted_from"]["prefix"] == "molecule_model."
    assert raw["converted_from"]["left_out"] == ["graph_pred_linear.bias", "graph_pred_linear.weight"]
    assert raw["converted_from"]["file"] == "model_finetuned.pth"
    assert assert_matches_reference(model, sd, prefix="molecule_model.") is None
    # the output exists now: refused without --force, replaced with it
    assert main([str(src), str(dest), "--hydrogens", "drop"]) == 2
    assert main([str(src), str(dest), "--hydrogens", "drop", "--force"]) == 0


def test_hydrogens_keep_and_embed_equal_upstream(tmp_path):
    """GraphMVP's pretraining_model.pth (graphs with explicit H): converted with --hydrogens keep,
    graphmvp.embed adds hydrogens and gives the upstream graph embedding."""
    sd = upstream_state_dict(num_layers=3, d=64, seed=2)
    src, dest = tmp_path / "pretraining_model.pth", tmp_path / "graphmvp.pt"
    torch.save(sd, src)
    convert_file(src, dest, hydrogens="keep")
    model, config = load_encoder_file(dest)
    smiles = SMILES[:5]
    z = embed(smiles, copy.deepcopy(model).double())
    for k, s in enumerate(smiles):
        _, ref = upstream_forward(s, sd, hydrogens=True)
        assert featurize_smiles(s, "keep").num_atoms == Chem.AddHs(Chem.MolFromSmiles(s)).GetNumAtoms()
        torch.testing.assert_close(z[k].double(), ref, atol=1e-5, rtol=1e-5)
    assert_matches_reference(model, sd, hydrogens="keep", smiles=smiles)


def test_wrapper_dict_and_pretrain_gnns_style(tmp_path):
    """A state dict wrapped in {'model': ...} is found one level down (or named with --key)."""
    sd = upstream_state_dict(num_layers=2, d=32, seed=3)
    src = tmp_path / "wrapped.pth"
    torch.save({"model": sd, "epoch": 7}, src)
    conv = convert_file(src, tmp_path / "a.pt", hydrogens="drop")
    assert conv.config["num_layers"] == 2 and conv.config["emb_dim"] == 32
    assert torch.load(tmp_path / "a.pt", weights_only=True)["converted_from"]["entry"] == "model"
    convert_file(src, tmp_path / "b.pt", hydrogens="drop", key="model")
    with pytest.raises(ConversionError, match="no entry 'weights'"):
        convert_file(src, tmp_path / "c.pt", hydrogens="drop", key="weights")
    model, _ = load_encoder_file(tmp_path / "b.pt")
    assert_matches_reference(model, sd)


def test_ogb_chirality_table_of_four_rows():
    """Checkpoints with a 4-row chirality table (the ogb version mismatch upstream users hit)."""
    sd = upstream_state_dict(num_layers=2, d=32, chirality_rows=4, seed=4)
    conv = convert_state_dict(sd, hydrogens="drop")
    assert conv.config["num_chirality"] == 4
    from graphmvp.models import GIN

    model = GIN(num_layers=2, emb_dim=32, num_chirality=4).eval()
    model.load_state_dict(conv.state_dict)
    assert_matches_reference(model, sd)


def test_missing_keys_are_listed_and_nothing_is_written(tmp_path, capsys):
    sd = upstream_state_dict(num_layers=2, d=16)
    del sd["gnns.1.edge_embedding2.weight"], sd["batch_norms.0.running_var"]
    with pytest.raises(ConversionError) as e:
        convert_state_dict(sd, hydrogens="drop")
    assert "2 key(s)" in str(e.value)
    assert "gnns.1.edge_embedding2.weight" in str(e.value) and "batch_norms.0.running_var" in str(e.value)
    src, dest = tmp_path / "broken.pth", tmp_path / "out.pt"
    torch.save(sd, src)
    assert main([str(src), str(dest), "--hydrogens", "drop"]) == 1
    err = capsys.readouterr().err
    assert "gnns.1.edge_embedding2.weight" in err and not dest.exists()


def test_unknown_keys_listed_and_strict():
    sd = upstream_state_dict(num_layers=2, d=16)
    sd["gnns.0.mlp.4.weight"] = torch.zeros(3)  # inside the GIN prefix but not in the layout
    sd["graph_pred_linear.weight"] = torch.zeros(1, 16)
    conv = convert_state_dict(sd, hydrogens="drop")
    assert conv.left_out == ["gnns.0.mlp.4.weight", "graph_pred_linear.weight"]
    assert "gnns.0.mlp.4.weight" in conv.report()
    with pytest.raises(ConversionError, match="strict.*gnns.0.mlp.4.weight"):
        convert_state_dict(sd, hydrogens="drop", strict=True)


def test_old_files_without_batch_counters_are_filled():
    sd = upstream_state_dict(num_layers=2, d=16)
    for i in range(2):
        del sd[f"batch_norms.{i}.num_batches_tracked"]
    conv = convert_state_dict(sd, hydrogens="drop")
    assert conv.filled == ["batch_norms.0.num_batches_tracked", "batch_norms.1.num_batches_tracked"]
    assert int(conv.state_dict["batch_norms.1.num_batches_tracked"]) == 0
    assert "filled" in conv.report()


def test_rejected_layouts():
    sd = upstream_state_dict(num_layers=2, d=16)
    bad = dict(sd)
    bad["gnns.0.mlp.2.weight"] = torch.zeros(16, 16)
    with pytest.raises(ConversionError, match=r"gnns.0.mlp.2.weight is \[16, 16\], expected \[16x32\]"):
        convert_state_dict(bad, hydrogens="drop")
    gcn = {k: v for k, v in sd.items() if not k.startswith("gnns.1.mlp")}
    gcn["gnns.1.linear.weight"] = torch.zeros(16, 16)
    with pytest.raises(ConversionError, match="layer 1 is not a GIN layer"):
        convert_state_dict(gcn, hydrogens="drop")
    with pytest.raises(ConversionError, match="OGB-feature GIN"):
        convert_state_dict({"atom_encoder.atom_embedding_list.0.weight": torch.zeros(119, 16)}, hydrogens="drop")
    two = {**{"a." + k: v for k, v in sd.items()}, **{"b." + k: v for k, v in sd.items()}}
    with pytest.raises(ConversionError, match="several GINs.*'a.'.*'b.'"):
        convert_state_dict(two, hydrogens="drop")
    assert convert_state_dict(two, hydrogens="drop", prefix="b.").left_out == sorted("a." + k for k in sd)
    with pytest.raises(ValueError, match="hydrogens='some'; allowed: keep, drop"):
        convert_state_dict(sd, hydrogens="some")
    with pytest.raises(ValueError, match="jk='mean'"):
        convert_state_dict(sd, hydrogens="drop", jk="mean")


def test_unsafe_or_already_converted_input(tmp_path):
    src = tmp_path / "pickle.pth"
    torch.save({"x": np.arange(3)}, src)  # a numpy object: refused by weights_only
    with pytest.raises(ConversionError, match="weights_only=True"):
        convert_file(src, tmp_path / "o.pt", hydrogens="drop")
    sd = upstream_state_dict(num_layers=1, d=8)
    torch.save(sd, tmp_path / "u.pth")
    convert_file(tmp_path / "u.pth", tmp_path / "ours.pt", hydrogens="drop")
    with pytest.raises(ConversionError, match="already a graphmvp encoder file"):
        convert_file(tmp_path / "ours.pt", tmp_path / "again.pt", hydrogens="drop")
    # and the loader refuses the bare upstream file with a pointer to the converter
    with pytest.raises(CheckpointError, match="graphmvp-convert"):
        load_encoder_file(tmp_path / "u.pth")
