"""``--graph-features chemprop``: chemprop's atom and bond descriptors beside Hu et al.'s features.

Values are checked by hand on small molecules; rows follow the graph's atoms and directed edges
through featurising, the cache and batching; the embedding's sums enter the GIN exactly where
documented (input embedding, every layer's edges, not the self loop); zero-initialised tables
leave a pretrained encoder's function unchanged; a saved model predicts with them; bad input and
mismatches are one-line errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from rdkit import Chem

from graphmvp.data.collate import batch_mol_graphs
from graphmvp.descriptors import ATOM_DESCRIPTORS, BOND_DESCRIPTORS, atom_descriptors, bond_descriptors
from graphmvp.features import downstream_graph
from graphmvp.finetune.config import FinetuneConfig
from graphmvp.finetune.data import RawTable, TableOptions, featurise_rows, load_dataset
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.model import FinetuneModel, descriptor_embedding
from graphmvp.finetune.predict import predict_molecules
from graphmvp.finetune.trainer import finetune, load_finetuned
from graphmvp.models import build_encoder
from graphmvp.models.descriptor_embedding import DescriptorEmbedding
from test_finetune_extra_features import data  # noqa: F401  (the fixture: SMILES with labels y = 10 + row)
from test_finetune_predict import SMILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------- values


def test_atom_descriptors_by_hand():
    # acetate: CH3 (4 neighbours with its Hs, sp3), C (3, sp2), =O (1, sp2), O- (charge -1)
    acetate = Chem.MolFromSmiles("CC(=O)[O-]")
    assert atom_descriptors(acetate).tolist() == [[4, 2, 3, 4, 0], [3, 2, 0, 2, 0], [1, 2, 0, 2, 0], [1, 1, 0, 2, 0]]
    assert atom_descriptors(Chem.MolFromSmiles("c1ccccc1")).tolist() == [[3, 2, 1, 2, 1]] * 6
    # the "more"/"other" indices: S with 6 neighbours (sp3d2), charge +3, NH3+ (charge +1, 3 H)
    assert atom_descriptors(Chem.MolFromSmiles("FS(F)(F)(F)(F)F"))[1].tolist() == [6, 2, 0, 6, 0]
    assert atom_descriptors(Chem.MolFromSmiles("[Fe+3]"))[0, 1] == 5
    assert atom_descriptors(Chem.MolFromSmiles("C[NH3+]"))[1, :3].tolist() == [4, 3, 3]
    assert list(ATOM_DESCRIPTORS) == ["degree", "formal_charge", "num_hs", "hybridization", "aromatic"]


def test_bond_descriptors_by_hand_on_directed_edges():
    # acetate: C-C (plain), C=O and C-O- (conjugated); each bond on edges 2b and 2b+1
    assert bond_descriptors(Chem.MolFromSmiles("CC(=O)[O-]")).tolist() == [[0, 0, 0]] * 2 + [[1, 0, 0]] * 4
    assert bond_descriptors(Chem.MolFromSmiles("c1ccccc1")).tolist() == [[1, 1, 0]] * 12
    trans = bond_descriptors(Chem.MolFromSmiles("C/C=C/C"))
    cis = bond_descriptors(Chem.MolFromSmiles("C/C=C\\C"))
    assert trans[2:4, 2].tolist() == [3, 3] and cis[2:4, 2].tolist() == [2, 2]  # STEREOE, STEREOZ
    assert list(BOND_DESCRIPTORS) == ["conjugated", "in_ring", "stereo"]


def test_rows_follow_the_graph_with_and_without_hydrogens():
    table = RawTable(["OC(=O)c1ccccc1", "bad(", "CCN"], np.zeros((3, 0), np.float32), [], None, "t")
    for hydrogens in ("drop", "keep"):
        rows = featurise_rows(table, hydrogens)
        assert [m.candidate_index for m in rows.kept] == [0, 2] and rows.skipped[0].candidate_index == 1
        for mol, atoms, bonds in zip(rows.kept, rows.atom_descriptors, rows.bond_descriptors):
            assert atoms.shape == (mol.num_atoms, 5) and bonds.shape == (mol.num_edges, 3)
        graph = downstream_graph(Chem.MolFromSmiles("CCN"), hydrogens)
        assert rows.kept[1].num_atoms == graph.num_atoms
        # the degree column counts the same neighbours the graph has, plus the implicit Hs
        deg = np.bincount(graph.edge_index[1], minlength=graph.num_atoms)
        hs = rows.atom_descriptors[1][:, 2]
        assert (rows.atom_descriptors[1][:, 0] == (deg + hs if hydrogens == "drop" else deg)).all()


# ------------------------------------------------------------------------- cache, batching


def test_cache_round_trip_and_batch_order(data, monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path))
    opts = TableOptions(smiles_col="smiles", label_cols=("y",), task_type="regression")
    fresh = load_dataset(data / "d.csv", opts)
    cached = load_dataset(data / "d.csv", opts)
    assert cached.store_path == fresh.store_path and cached.store_path.is_file()
    for a, b in ((fresh.descriptors.atom, cached.descriptors.atom), (fresh.descriptors.bond, cached.descriptors.bond)):
        assert np.array_equal(a, b)
    g, _ = cached.batch([3, 0, 7], descriptors=True)
    expect = [atom_descriptors(Chem.MolFromSmiles(SMILES[i])) for i in (3, 0, 7)]
    assert np.array_equal(g.ndata["atom_desc"].numpy(), np.concatenate(expect))
    expect = [bond_descriptors(Chem.MolFromSmiles(SMILES[i])) for i in (3, 0, 7)]
    assert np.array_equal(g.edata["bond_desc"].numpy(), np.concatenate(expect))
    assert "atom_desc" not in cached.batch([0])[0].ndata  # only when asked for

    # a cache written with other descriptors is not trusted: no descriptors, a one-line error when needed
    with h5py.File(cached.store_path, "a") as f:
        f["finetune"].attrs["descriptors"] = json.dumps({"version": -1})
    stale = load_dataset(data / "d.csv", opts)
    assert stale.descriptors is None
    with pytest.raises(FinetuneError, match="no atom/bond descriptors; featurise it again"):
        stale.batch([0], descriptors=True)


# --------------------------------------------------------------------------------- model


def _graph(smiles):
    g = batch_mol_graphs([downstream_graph(Chem.MolFromSmiles(s)) for s in smiles])
    g.ndata["atom_desc"] = torch.from_numpy(np.concatenate([atom_descriptors(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.int64))
    g.edata["bond_desc"] = torch.from_numpy(np.concatenate([bond_descriptors(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.int64))
    return g


def test_extra_terms_enter_the_input_and_the_edges_but_not_the_self_loop():
    torch.manual_seed(0)
    gin = build_encoder("gin", num_layers=2, emb_dim=8).eval()
    g = _graph(["CC(=O)O", "c1ccccc1O"])
    v, w = torch.randn(8), torch.randn(8)
    got = gin(g, node_extra=v.expand(g.num_nodes(), 8), edge_extra=[w.expand(g.num_edges(), 8), torch.zeros(g.num_edges(), 8)])
    with torch.no_grad():  # the same sums by editing the tables: every atom type row +v, bond rows 0-3 (not self loop 4) +w
        gin.x_embedding1.weight += v
        gin.gnns[0].edge_embedding1.weight[:4] += w
    assert torch.allclose(got, gin(g), atol=1e-5)
    with pytest.raises(ValueError, match="edge_extra has 1 tensors for 2 layers"):
        gin(g, edge_extra=[w.expand(g.num_edges(), 8)])


def test_zero_initialised_tables_leave_a_pretrained_encoder_unchanged_and_learn():
    torch.manual_seed(0)
    gin = build_encoder("gin", num_layers=2, emb_dim=8)
    g = _graph(["CC(=O)[O-]", "c1ccccc1O", "C/C=C/C"])
    plain = FinetuneModel(gin, 1, pooling="sum").eval()
    with_desc = FinetuneModel(gin, 1, pooling="sum", descriptors=descriptor_embedding("chemprop", gin, zero_init=True)).eval()
    with_desc.head.load_state_dict(plain.head.state_dict())
    assert torch.equal(plain(g), with_desc(g))
    assert set(with_desc.molecule_model.state_dict()) == set(gin.state_dict())  # the encoder's file still loads strictly
    with_desc.train()
    with_desc(g).sum().backward()
    tables = with_desc.descriptor_embedding
    assert tables.atom_tables[0].weight.grad.abs().sum() > 0 and tables.bond_tables[1][2].weight.grad.abs().sum() > 0
    random = descriptor_embedding("chemprop", gin, zero_init=False)
    assert random.atom_tables[0].weight.abs().sum() > 0 and len(random.bond_tables) == 2
    assert descriptor_embedding("hu", gin, zero_init=True) is None


def test_embedding_shapes_and_bad_input():
    emb = DescriptorEmbedding(ATOM_DESCRIPTORS, BOND_DESCRIPTORS, 4, 3)
    node, edges = emb(torch.zeros(5, 5, dtype=torch.long), torch.zeros(6, 3, dtype=torch.long))
    assert node.shape == (5, 4) and [e.shape for e in edges] == [(6, 4)] * 3
    with pytest.raises(ValueError, match=r"descriptors must have shape \[n, 5\]"):
        emb(torch.zeros(5, 2, dtype=torch.long), torch.zeros(6, 3, dtype=torch.long))
    gps = build_encoder("graphgps", num_layers=1, emb_dim=8, heads=2)
    with pytest.raises(FinetuneError, match="needs a GIN encoder"):
        descriptor_embedding("chemprop", gps, zero_init=False)
    with pytest.raises(FinetuneError, match="--graph-features chemprop needs a GIN encoder, not GraphGPS"):
        FinetuneModel(gps, 1, descriptors=emb)
    with pytest.raises(ValueError, match="needs g.ndata"):
        gin = build_encoder("gin", num_layers=1, emb_dim=8)
        FinetuneModel(gin, 1, descriptors=descriptor_embedding("chemprop", gin, False))(
            batch_mol_graphs([downstream_graph(Chem.MolFromSmiles("CCO"))]))


# --------------------------------------------------------------------- config, run, predict


def test_config_defaults_and_errors():
    for protocol in ("paper", "default"):
        c = FinetuneConfig(data_file="x.csv", smiles_col="s", label_cols="y", task_type="regression",
                           protocol=protocol).resolved()
        assert c.graph_features == "hu"
    with pytest.raises(FinetuneError, match="--graph-features 'rich': allowed: hu, chemprop"):
        FinetuneConfig(data_file="x.csv", smiles_col="s", label_cols="y", task_type="regression",
                       graph_features="rich").resolved()
    with pytest.raises(FinetuneError, match="molecule tasks, not to DTA"):
        FinetuneConfig(task="davis", graph_features="chemprop").resolved()


def test_run_records_and_predict_reproduces_the_test_metric(data, tmp_path):
    cfg = FinetuneConfig(data_file=str(data / "d.csv"), smiles_col="smiles", label_cols="y", task_type="regression",
                         split="random", epochs=2, num_layers=2, emb_dim=8, seeds=(0,), progress=False, threads=1,
                         use_cache=False, graph_features="chemprop", save_model=True, out=str(tmp_path / "run"))
    s = finetune(cfg)
    assert s["method"] == "no pretraining + chemprop atom/bond features + rdkit2d"  # regression: the default adds rdkit2d
    assert s["protocol"]["graph_features"] == "chemprop"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["graph_features"] == "chemprop"
    model, payload = load_finetuned(tmp_path / "run" / "seed_0" / "best_model.pt")
    assert payload["graph_features"]["kind"] == "chemprop" and model.descriptor_embedding is not None
    split = json.loads((tmp_path / "run" / "seed_0" / "split.json").read_text())
    rows = split["test_rows"]
    pred, _, skipped = predict_molecules([tmp_path / "run" / "seed_0" / "best_model.pt"], [SMILES[r] for r in rows])
    rmse = float(np.sqrt(np.mean((pred[0, :, 0] - np.array([10.0 + r for r in rows])) ** 2)))
    assert not skipped and rmse == pytest.approx(s["per_seed"][0]["test_at_best_valid"]["rmse"], rel=1e-4)

    payload["graph_features"]["version"] = 99
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(FinetuneError, match="atom/bond descriptors differ from this installation's"):
        load_finetuned(tmp_path / "m.pt")
