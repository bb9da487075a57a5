"""load_pretrained / embed / resolve_init / load_encoder_file: the shipped checkpoint offline,
SMILES embeddings (invalid ones included), safe loading and mismatch reports."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from rdkit import Chem

import graphmvp
from graphmvp.checkpoints import load_manifest
from graphmvp.data.collate import batch_mol_graphs
from graphmvp.features import graph_features
from graphmvp.models import GIN, graph_readout
from graphmvp.pretrained import (
    CheckpointError,
    CheckpointMismatch,
    embed,
    featurize_smiles,
    load_encoder_file,
    load_pretrained,
    resolve_init,
    save_encoder_file,
)

SMILES = ["CCO", "C[C@H](N)C(=O)O", "c1ccc2ccccc2c1", "O=C(Nc1ccncc1)c1ccco1", "[Na+].[Cl-]"]
CONFIG = {"encoder": "gin", "num_layers": 3, "emb_dim": 32, "dropout": 0.0, "jk": "last",
          "num_atom_type": 120, "num_chirality": 3, "pooling": "mean", "hydrogens": "drop",
          "features": "hu-simple"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shipped_entry():
    entries = [e for e in load_manifest() if e.package_file is not None]
    assert entries, "the manifest lists no shipped checkpoint"
    return entries[0]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty cache, and any attempt to open a URL fails the test."""
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))

    def no_network(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def tiny(tmp_path, config=CONFIG, seed=0, **extra) -> Path:
    torch.manual_seed(seed)
    gin = GIN(num_layers=config["num_layers"], emb_dim=config["emb_dim"], num_chirality=config["num_chirality"])
    with torch.no_grad():  # non-trivial batch-norm statistics
        for bn in gin.batch_norms:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    return save_encoder_file(tmp_path / f"enc{seed}.pt", gin.state_dict(), config, **extra)


def manual_embedding(model, smiles, hydrogens, pooling="mean"):
    """One molecule alone, features straight from graphmvp.features, for comparison with embed."""
    mol = Chem.MolFromSmiles(smiles)
    if hydrogens == "keep":
        mol = Chem.AddHs(mol)
    g = batch_mol_graphs([graph_features(mol)])
    with torch.no_grad():
        return graph_readout(g, model(g), pooling)[0]


# ------------------------------------------------------------------------- shipped checkpoint


def test_shipped_checkpoint_loads_offline_and_embeds(offline):
    entry = shipped_entry()
    model, config = graphmvp.load_pretrained(entry.name)
    assert isinstance(model, GIN) and not model.training
    assert config == dict(entry.config) and model.graphmvp_config == config
    raw = torch.load(entry.package_path, weights_only=True)
    for k, v in model.state_dict().items():  # float16 release weights -> float32 parameters exactly
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
        assert torch.equal(v, raw["state_dict"][k].to(v.dtype)), k

    smiles = SMILES + ["not a smiles"]
    with pytest.raises(ValueError, match=r"1 of 6 SMILES cannot be embedded: #5 'not a smiles' \(RDKit cannot parse it\)"):
        graphmvp.embed(smiles, model)
    with pytest.warns(UserWarning, match="#5 'not a smiles'"):
        z = graphmvp.embed(smiles, model, on_invalid="nan")
    assert z.shape == (6, config["emb_dim"]) and z.dtype == torch.float32
    assert torch.isnan(z[5]).all() and torch.isfinite(z[:5]).all()
    for k, s in enumerate(SMILES):
        torch.testing.assert_close(z[k], manual_embedding(model, s, config["hydrogens"]), atol=1e-5, rtol=1e-5)
    # distinct molecules get distinct embeddings; the same molecule written twice the same one
    assert (z[0] - z[1]).abs().max() > 1e-3
    twice = graphmvp.embed(["OCC", "CCO"], (model, config))
    torch.testing.assert_close(twice[0], twice[1], atol=1e-6, rtol=0)
    by_name = graphmvp.embed(SMILES[:2], entry.name)
    torch.testing.assert_close(by_name, z[:2])


def test_resolve_init_forms(offline, tmp_path):
    entry = shipped_entry()
    assert resolve_init(entry.name) == entry.package_path
    enc = tiny(tmp_path)
    assert resolve_init(enc) == enc and resolve_init(str(enc)) == enc
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="has no model_2d.pt"):
        resolve_init(run)
    (run / "model_2d.pt").write_bytes(enc.read_bytes())
    assert resolve_init(run) == run / "model_2d.pt"
    model, config = load_pretrained(run)
    assert config == CONFIG
    with pytest.raises(ValueError, match=rf"'no-such-thing' is neither .* \(released: .*{entry.name}"):
        resolve_init("no-such-thing")


def test_pretrain_run_files_load(tmp_path):
    """The format written by graphmvp-pretrain (model_2d.pt with epoch/loss extras) loads."""
    pytest.importorskip("graphmvp.pretrain.model")
    from graphmvp.pretrain.model import ENCODER_FORMAT, FEATURES

    assert (ENCODER_FORMAT, FEATURES) == ("graphmvp-encoder-v1", "hu-simple")
    enc = tiny(tmp_path, epoch=3, loss=1.25)
    raw = torch.load(enc, weights_only=True)
    assert raw["epoch"] == 3 and raw["format"] == ENCODER_FORMAT
    model, config = load_encoder_file(enc, expect={"hydrogens": "drop", "emb_dim": 32})
    assert model.num_layers == 3


# ----------------------------------------------------------------------------------- embeddings


def test_embed_batches_and_hydrogens(tmp_path):
    model, config = load_encoder_file(tiny(tmp_path))
    many = SMILES * 7  # 35 molecules over several batches of 8
    z = embed(many, model, batch_size=8)
    z1 = embed(many, model, batch_size=64)
    torch.testing.assert_close(z, z1, atol=1e-5, rtol=1e-5)
    for k in range(len(SMILES)):
        torch.testing.assert_close(z[k], z[k + len(SMILES)], atol=1e-5, rtol=1e-5)
    # "keep": explicit hydrogens are atoms of the graph; the embedding changes accordingly
    assert featurize_smiles("CCO", "keep").num_atoms == 9 and featurize_smiles("CCO", "drop").num_atoms == 3
    keep = dict(config, hydrogens="keep")
    zk = embed(["CCO"], model, keep)[0]
    torch.testing.assert_close(zk, manual_embedding(model, "CCO", "keep"), atol=1e-5, rtol=1e-5)
    assert (zk - z[0]).abs().max() > 1e-4
    # sum pooling from the config
    zs = embed(["CCO"], model, dict(config, pooling="sum"))[0]
    torch.testing.assert_close(zs, manual_embedding(model, "CCO", "drop", "sum"), atol=1e-5, rtol=1e-5)
    # a training-mode model is evaluated in eval mode and left in training mode
    model.train()
    torch.testing.assert_close(embed(SMILES, model), z[: len(SMILES)], atol=1e-5, rtol=1e-5)
    assert model.training


def test_embed_invalid_inputs(tmp_path):
    model, config = load_encoder_file(tiny(tmp_path))
    bad = ["", "C1CC", "*CC", None, "CCO"]
    with pytest.raises(ValueError) as e:
        embed(bad, model)
    msg = str(e.value)
    assert "4 of 5 SMILES" in msg and "#0 ''" in msg and "no atoms" in msg and "#1 'C1CC'" in msg
    assert "#2 '*CC'" in msg and "atomic number 0" in msg and "#3 None" in msg
    with pytest.warns(UserWarning, match="4 of 5"):
        z = embed(bad, model, on_invalid="nan")
    assert torch.isnan(z[:4]).all() and torch.isfinite(z[4]).all()
    assert embed("CCO", model).shape == (1, 32)  # one string is one molecule, not characters
    with pytest.warns(UserWarning):
        assert embed(["xx"], model, on_invalid="nan").isnan().all()
    assert embed([], model).shape == (0, 32)
    with pytest.raises(ValueError, match="on_invalid='skip'; allowed: raise, nan"):
        embed(["C"], model, on_invalid="skip")
    with pytest.raises(ValueError, match="batch_size"):
        embed(["C"], model, batch_size=0)
    plain = GIN(num_layers=2, emb_dim=8)
    with pytest.raises(ValueError, match="needs the encoder's config"):
        embed(["C"], plain)
    with pytest.raises(ValueError, match="model must be a GIN"):
        embed(["C"], 42)


# --------------------------------------------------------------------------------- safe loading


def _side_effect(path):
    Path(path).write_text("code ran")
    return {}


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_side_effect, (str(self.marker),))


def test_unsafe_and_wrong_files(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "graphmvp-encoder-v1", "state_dict": Evil(marker), "config": CONFIG}, evil)
    with pytest.raises(CheckpointError, match="refused to load.*weights_only=True"):
        load_encoder_file(evil)
    assert not marker.exists(), "unpickling ran code"

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_encoder_file(junk)
    last = tmp_path / "last.pt"
    torch.save({"epoch": 3, "models": {}}, last)
    with pytest.raises(CheckpointError, match="expected format 'graphmvp-encoder-v1', found None.*model_2d.pt"):
        load_encoder_file(last)
    with pytest.raises(CheckpointError, match="no such file"):
        load_encoder_file(tmp_path / "absent.pt")


def _rewrite(path: Path, **config_changes) -> Path:
    raw = torch.load(path, weights_only=True)
    raw["config"] = dict(raw["config"], **config_changes)
    out = path.with_name("changed.pt")
    torch.save(raw, out)
    return out


def test_mismatches_are_reported_not_shape_errors(tmp_path):
    enc = tiny(tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"x_embedding1.weight is \[120, 32\]") as e:
        load_encoder_file(_rewrite(enc, emb_dim=300))
    assert "atom-type table" in str(e.value)
    with pytest.raises(CheckpointMismatch, match=r"num_layers=5 but the weights have layers \[0, 1, 2\]"):
        load_encoder_file(_rewrite(enc, num_layers=5))
    with pytest.raises(CheckpointMismatch, match=r"chirality table.*\[4, 32\].*x_embedding2.weight is \[3, 32\]"):
        load_encoder_file(_rewrite(enc, num_chirality=4))
    with pytest.raises(CheckpointMismatch, match="features='ogb'.*hu-simple"):
        load_encoder_file(_rewrite(enc, features="ogb"))
    with pytest.raises(CheckpointMismatch, match="hydrogens='some' is not supported"):
        load_encoder_file(_rewrite(enc, hydrogens="some"))
    with pytest.raises(CheckpointMismatch, match="jk='avg' is not supported.*pooling='attention'"):
        load_encoder_file(_rewrite(enc, jk="avg", pooling="attention"))
    with pytest.raises(CheckpointMismatch, match="config lacks hydrogens"):
        raw = torch.load(enc, weights_only=True)
        del raw["config"]["hydrogens"]
        torch.save(raw, tmp_path / "nohyd.pt")
        load_encoder_file(tmp_path / "nohyd.pt")
    with pytest.raises(CheckpointMismatch, match="hydrogens='drop' but 'keep' is required; emb_dim=32 but 300"):
        load_encoder_file(enc, expect={"hydrogens": "keep", "emb_dim": 300})
    raw = torch.load(enc, weights_only=True)
    raw["state_dict"]["extra.weight"] = torch.zeros(2)
    torch.save(raw, tmp_path / "extra.pt")
    with pytest.raises(CheckpointMismatch, match="unexpected weights: extra.weight"):
        load_encoder_file(tmp_path / "extra.pt")


def test_float16_release_files_round_trip(tmp_path):
    enc = tiny(tmp_path)
    model, config = load_encoder_file(enc)
    half = save_encoder_file(tmp_path / "half.pt", model.state_dict(), config, dtype=torch.float16)
    raw = torch.load(half, weights_only=True)
    assert raw["state_dict"]["x_embedding1.weight"].dtype == torch.float16
    assert raw["state_dict"]["batch_norms.0.num_batches_tracked"].dtype == torch.int64
    assert half.stat().st_size < 0.6 * enc.stat().st_size
    m16, _ = load_encoder_file(half)
    z, z16 = embed(SMILES, model), embed(SMILES, m16)
    assert (z - z16).abs().max() < 2e-2 * z.abs().max()


def test_import_graphmvp_stays_light():
    """`import graphmvp` does not import torch; graphmvp.load_pretrained / embed resolve lazily."""
    code = (
        "import sys, graphmvp\n"
        "assert 'torch' not in sys.modules, 'torch imported by import graphmvp'\n"
        "assert 'load_pretrained' in dir(graphmvp)\n"
        "from graphmvp.pretrained import load_pretrained, embed\n"
        "assert graphmvp.load_pretrained is load_pretrained and graphmvp.embed is embed\n"
        "try:\n    graphmvp.nonexistent\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "no attribute 'nonexistent'" in out.stdout
